// The tier of a session as a band over time, and its decisions as marks on
// it: pure geometry from the audit timeline, in [0, 1] of the chart's width.
import type { Effect, Tier } from './types.ts';

export type Transition = { at: number; tier: Tier; version: number };
export type DecisionPoint = { at: number; effect: Effect; eventId: string; label: string };
export type SignalPoint = { at: number; kind: string; label: string };

/** A stretch of time under one tier; `tier: null` before the first known state. */
export type Segment = { from: number; to: number; tier: Tier | null; x0: number; x1: number };
export type Mark = DecisionPoint & { x: number; tier: Tier | null };
export type Tick = SignalPoint & { x: number };
/** A moment the tier changed: what the eye looks for first. */
export type Change = { at: number; x: number; from: Tier | null; to: Tier };

export type Band = { start: number; end: number; segments: Segment[]; marks: Mark[]; ticks: Tick[]; changes: Change[] };

export type BandInput = {
  transitions: readonly Transition[];
  decisions: readonly DecisionPoint[];
  signals?: readonly SignalPoint[];
  /** Where the chart ends when later than the last entry (the session is still live: now). */
  until?: number;
};

/** Padding when every entry is at one instant, so the band still has a width. */
const MIN_SPAN_MS = 10_000;
const END_PAD = 0.03;

export const computeBand = (input: BandInput): Band => {
  const transitions = [...input.transitions].sort((a, b) => a.at - b.at || a.version - b.version);
  const decisions = [...input.decisions].sort((a, b) => a.at - b.at);
  const signals = [...(input.signals ?? [])].sort((a, b) => a.at - b.at);
  const times = [...transitions, ...decisions, ...signals].map((e) => e.at);
  if (times.length === 0) return { start: 0, end: 0, segments: [], marks: [], ticks: [], changes: [] };
  const start = Math.min(...times);
  let end = Math.max(...times, input.until ?? Number.NEGATIVE_INFINITY);
  if (end - start < MIN_SPAN_MS) {
    // A short session starts at the left edge: time before it is no part of it.
    end = start + MIN_SPAN_MS;
  } else if (input.until === undefined) {
    // Room after the last entry, so a tier reached at the very end still shows (a live band runs to now anyway).
    end += (end - start) * END_PAD;
  }
  const x = (t: number): number => (t - start) / (end - start);

  const segments: Segment[] = [];
  const changes: Change[] = [];
  let cursor = start;
  let tier: Tier | null = null;
  for (const t of transitions) {
    if (t.tier === tier) continue;
    if (t.at > cursor) segments.push({ from: cursor, to: t.at, tier, x0: x(cursor), x1: x(t.at) });
    changes.push({ at: t.at, x: x(t.at), from: tier, to: t.tier });
    cursor = Math.max(cursor, t.at);
    tier = t.tier;
  }
  if (end > cursor) segments.push({ from: cursor, to: end, tier, x0: x(cursor), x1: 1 });

  const tierAt = (at: number): Tier | null => {
    let found: Tier | null = null;
    for (const t of transitions) {
      if (t.at > at) break;
      found = t.tier;
    }
    return found;
  };
  return {
    start,
    end,
    segments,
    marks: decisions.map((d) => ({ ...d, x: x(d.at), tier: tierAt(d.at) })),
    ticks: signals.map((s) => ({ ...s, x: x(s.at) })),
    changes,
  };
};

/** The audit timeline's entries, as the band takes them. */
export type TimelineEntry =
  | { kind: 'decision'; at: string; event_id: string; decision: { request: { action: string; resource: string; tool?: string }; decision: { effect: Effect } } }
  | { kind: 'signal'; at: string; event_id: string; signal: { kind: string } & Record<string, unknown> }
  | { kind: 'trust'; at: string; version: number; tier: Tier };

export const bandInputOf = (entries: readonly TimelineEntry[], until?: number): BandInput => {
  const transitions: Transition[] = [];
  const decisions: DecisionPoint[] = [];
  const signals: SignalPoint[] = [];
  for (const e of entries) {
    const at = Date.parse(e.at);
    if (Number.isNaN(at)) continue;
    switch (e.kind) {
      case 'trust':
        transitions.push({ at, tier: e.tier, version: e.version });
        break;
      case 'decision':
        decisions.push({ at, effect: e.decision.decision.effect, eventId: e.event_id, label: `${e.decision.request.action} ${e.decision.request.resource}` });
        break;
      case 'signal':
        signals.push({ at, kind: e.signal.kind, label: signalLabel(e.signal) });
        break;
    }
  }
  return { transitions, decisions, signals, ...(until !== undefined ? { until } : {}) };
};

/** A signal in a few words: its kind and the id a responder searches for. */
export const signalLabel = (s: { kind: string } & Record<string, unknown>): string => {
  const ref = ['signal_id', 'freeze_id', 'role', 'jti', 'user_id'].map((k) => s[k]).find((v): v is string => typeof v === 'string');
  return ref === undefined ? s.kind : `${s.kind} ${ref}`;
};
