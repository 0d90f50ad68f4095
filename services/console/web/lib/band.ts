// The tier of a session as a band over time, its decisions as marks on it,
// and the change freezes over it as spans (raised → lifted or expired): pure
// geometry from the audit timeline, in [0, 1] of the chart's width.
import type { Effect, Tier } from './types.ts';

/** A freeze as a trust state carries it (the parts a span needs). */
export type StateFreeze = { freeze_id: string; reason?: string; since?: string; expires_at?: string };
/** `freezes`: the freezes in force in that state, when the timeline carries the state. */
export type Transition = { at: number; tier: Tier; version: number; freezes?: readonly StateFreeze[] };
export type DecisionPoint = { at: number; effect: Effect; eventId: string; label: string };
export type SignalPoint = { at: number; kind: string; label: string };

/** A stretch of time under one tier; `tier: null` before the first known state. */
export type Segment = { from: number; to: number; tier: Tier | null; x0: number; x1: number };
export type Mark = DecisionPoint & { x: number; tier: Tier | null };
export type Tick = SignalPoint & { x: number };
/** A moment the tier changed: what the eye looks for first. */
export type Change = { at: number; x: number; from: Tier | null; to: Tier };

/**
 * A freeze over time on this session: from when it was raised (its `since`,
 * else the first state that had it) to the first state without it (`lifted`),
 * its expiry when that came first (`expired`), or the chart's end (`in_force`).
 * `lane`: overlapping spans take different rows.
 */
export type FreezeSpan = { freezeId: string; reason: string; from: number; to: number; end: 'lifted' | 'expired' | 'in_force'; x0: number; x1: number; lane: number };

export type Band = { start: number; end: number; segments: Segment[]; marks: Mark[]; ticks: Tick[]; changes: Change[]; freezes: FreezeSpan[] };

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
  if (times.length === 0) return { start: 0, end: 0, segments: [], marks: [], ticks: [], changes: [], freezes: [] };
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
    freezes: lanes(freezeSpans(transitions, end)).map((f) => ({ ...f, x0: Math.max(0, x(f.from)), x1: Math.min(1, x(f.to)) })),
  };
};

const timeOf = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t;
};

type OpenSpan = { freezeId: string; reason: string; from: number; expiresAt: number | undefined };
type Span = Omit<FreezeSpan, 'x0' | 'x1' | 'lane'>;

/** The spans of the freezes the states carry, in version order, up to `end`. Transitions without `freezes` say nothing about them. */
export const freezeSpans = (transitions: readonly Transition[], end: number): Span[] => {
  const sorted = [...transitions].sort((a, b) => a.version - b.version);
  const open = new Map<string, OpenSpan>();
  const out: Span[] = [];
  const close = (o: OpenSpan, at: number, how: 'lifted' | 'in_force'): void => {
    if (o.expiresAt !== undefined && o.expiresAt <= at) out.push({ freezeId: o.freezeId, reason: o.reason, from: o.from, to: Math.max(o.from, o.expiresAt), end: 'expired' });
    else out.push({ freezeId: o.freezeId, reason: o.reason, from: o.from, to: Math.max(o.from, at), end: how });
  };
  for (const t of sorted) {
    if (t.freezes === undefined) continue;
    const now = new Set(t.freezes.map((f) => f.freeze_id));
    for (const [id, o] of open) {
      if (now.has(id)) continue;
      close(o, t.at, 'lifted');
      open.delete(id);
    }
    for (const f of t.freezes) {
      if (open.has(f.freeze_id)) continue;
      const since = timeOf(f.since);
      open.set(f.freeze_id, { freezeId: f.freeze_id, reason: f.reason ?? '', from: since !== undefined && since < t.at ? since : t.at, expiresAt: timeOf(f.expires_at) });
    }
  }
  for (const o of open.values()) close(o, end, 'in_force');
  return out.sort((a, b) => a.from - b.from || a.freezeId.localeCompare(b.freezeId));
};

/** Each span on the lowest lane free at its start. */
const lanes = (spans: readonly Span[]): (Span & { lane: number })[] => {
  const busyUntil: number[] = [];
  return spans.map((s) => {
    let lane = busyUntil.findIndex((until) => until <= s.from);
    if (lane < 0) lane = busyUntil.length;
    busyUntil[lane] = s.to;
    return { ...s, lane };
  });
};

/** The audit timeline's entries, as the band takes them. */
export type TimelineEntry =
  | { kind: 'decision'; at: string; event_id: string; decision: { request: { action: string; resource: string; tool?: string }; decision: { effect: Effect } } }
  | { kind: 'signal'; at: string; event_id: string; signal: { kind: string } & Record<string, unknown> }
  | { kind: 'trust'; at: string; version: number; tier: Tier; trust?: { freezes: readonly StateFreeze[] } };

/** Freezes are drawn as spans from the states, not as signal ticks. */
const FREEZE_SIGNALS: ReadonlySet<string> = new Set(['change_freeze_raised', 'change_freeze_lifted']);

export const bandInputOf = (entries: readonly TimelineEntry[], until?: number): BandInput => {
  const transitions: Transition[] = [];
  const decisions: DecisionPoint[] = [];
  const signals: SignalPoint[] = [];
  for (const e of entries) {
    const at = Date.parse(e.at);
    if (Number.isNaN(at)) continue;
    switch (e.kind) {
      case 'trust':
        transitions.push({ at, tier: e.tier, version: e.version, ...(e.trust !== undefined ? { freezes: e.trust.freezes } : {}) });
        break;
      case 'decision':
        decisions.push({ at, effect: e.decision.decision.effect, eventId: e.event_id, label: `${e.decision.request.action} ${e.decision.request.resource}` });
        break;
      case 'signal':
        if (FREEZE_SIGNALS.has(e.signal.kind)) break;
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
