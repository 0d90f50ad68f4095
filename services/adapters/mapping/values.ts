// Value extraction: reading a path of an engine's record, and turning what is
// there into a trustfold field (an id, a text, a list, a time, an effect, …)
// within the contract's limits — or `undefined`, so the next path is tried.
import { LIMITS, TIERS, type Effect, type Tier } from '../../../schemas/events.ts';
import type { Paths } from './conventions.ts';

// Conventions are a few dozen paths read for every decision: split each once.
const splitPaths = new Map<string, readonly string[]>();
const keysOf = (path: string): readonly string[] => {
  let keys = splitPaths.get(path);
  if (keys === undefined) {
    keys = path.split('.');
    if (splitPaths.size < 10_000) splitPaths.set(path, keys);
  }
  return keys;
};

export const valueAt = (root: unknown, path: string): unknown => {
  let cur: unknown = root;
  if (path === '' || path === '.') return cur;
  for (const key of keysOf(path)) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    if (!Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
};

export const clip = (s: string, max: number): string => (s.length > max ? s.slice(0, max) : s);

export const scalarText = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim();
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
};

export const first = <T>(root: unknown, paths: Paths, as: (v: unknown) => T | undefined): T | undefined => {
  for (const p of paths) {
    const v = as(valueAt(root, p));
    if (v !== undefined) return v;
  }
  return undefined;
};

export const asId = (v: unknown): string | undefined => {
  const s = scalarText(v);
  return s === undefined ? undefined : clip(s, LIMITS.id);
};
export const asText = (v: unknown): string | undefined => {
  const s = scalarText(v);
  return s === undefined ? undefined : clip(s, LIMITS.text);
};
export const asList = (v: unknown): string[] | undefined => {
  const items = Array.isArray(v) ? v.map(scalarText) : typeof v === 'string' ? v.split(/[\s,]+/) : undefined;
  if (items === undefined) return undefined;
  const out = items.filter((x): x is string => x !== undefined && x !== '').map((x) => clip(x, LIMITS.id));
  return out.length === 0 ? undefined : out.slice(0, LIMITS.list);
};
/**
 * An epoch number as milliseconds: below 1e11 it is a JWT NumericDate in
 * seconds (1e11 s is the year 5138; 1e11 ms is March 1973), otherwise already
 * milliseconds.
 */
const epochMs = (n: number): number => (n < 1e11 ? n * 1000 : n);

/** RFC 3339 text, or a JWT NumericDate (seconds), or epoch milliseconds — as a number or as digits. */
export const asTime = (v: unknown): string | undefined => {
  let ms: number;
  if (typeof v === 'number' && Number.isFinite(v)) ms = epochMs(v);
  else if (typeof v === 'string' && v.trim() !== '') ms = /^\d+(\.\d+)?$/.test(v.trim()) ? epochMs(Number(v)) : Date.parse(v);
  else return undefined;
  if (!Number.isFinite(ms)) return undefined;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1970 || d.getUTCFullYear() > 9999 ? undefined : d.toISOString();
};
export const asInt = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
};
export const asTier = (v: unknown): Tier | undefined => {
  const s = scalarText(v)?.toLowerCase();
  return (TIERS as readonly string[]).includes(s ?? '') ? (s as Tier) : undefined;
};

const ALLOW = new Set(['allow', 'allowed', 'permit', 'true', 'effect_allow']);
const DENY = new Set(['deny', 'denied', 'forbid', 'false', 'effect_deny', 'effect_no_match']);
const STEP_UP = new Set(['step_up', 'stepup', 'step-up', 'challenge']);
export const asEffect = (v: unknown): Effect | undefined => {
  if (typeof v === 'boolean') return v ? 'allow' : 'deny';
  if (typeof v !== 'string') return undefined;
  const s = v.trim().toLowerCase();
  if (ALLOW.has(s)) return 'allow';
  if (DENY.has(s)) return 'deny';
  if (STEP_UP.has(s)) return 'step_up';
  return undefined;
};

export const reasonsFrom = (v: unknown): string[] => {
  if (typeof v === 'string') return v.trim() === '' ? [] : [clip(v, LIMITS.text)];
  if (Array.isArray(v)) return v.flatMap((x) => reasonsFrom(typeof x === 'object' && x !== null ? (valueAt(x, 'msg') ?? valueAt(x, 'reason')) : x));
  // OPA sets of messages arrive as arrays; an object map of messages as its values.
  if (v !== null && typeof v === 'object') return Object.values(v).flatMap((x) => (typeof x === 'string' ? reasonsFrom(x) : []));
  return [];
};
