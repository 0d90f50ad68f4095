// Bounds on an event's own time, checked at every entry (HTTP ingest, the OPA
// decision-log route, the Cerbos adapter). A client picks `occurred_at`, so
// unbounded it can date a signal in 2099 and outrank everything sent later,
// or spread one batch over a century of monthly audit partitions. Pure: the
// clock is an argument.
import type { FieldError } from '../../schemas/result.ts';

export type EventTimeBounds = {
  /** How far ahead of this clock an event may be (clock skew between hosts). */
  maxFutureSkewMs: number;
  /** How old an event may be; the audit is not a backfill path unless an operator widens this. */
  maxAgeMs: number;
};

export const DEFAULT_EVENT_TIME_BOUNDS: EventTimeBounds = { maxFutureSkewMs: 60_000, maxAgeMs: 30 * 86_400_000 };

const human = (ms: number): string =>
  ms >= 86_400_000 ? `${Math.round(ms / 86_400_000)} d` : ms >= 3_600_000 ? `${Math.round(ms / 3_600_000)} h` : `${Math.round(ms / 1000)} s`;

/** Undefined when `occurredAt` (an ISO time that already passed the schema) is inside the bounds at `nowMs`, else why not. */
export const eventTimeError = (occurredAt: string, nowMs: number, bounds: EventTimeBounds): FieldError | undefined => {
  const at = Date.parse(occurredAt);
  if (at - nowMs > bounds.maxFutureSkewMs) {
    return {
      path: 'occurred_at',
      message: `${occurredAt} is ${human(at - nowMs)} ahead of the server clock; at most ${bounds.maxFutureSkewMs} ms is accepted (TRUSTFOLD_MAX_FUTURE_SKEW_MS)`,
    };
  }
  if (nowMs - at > bounds.maxAgeMs) {
    return {
      path: 'occurred_at',
      message: `${occurredAt} is ${human(nowMs - at)} old; events older than ${human(bounds.maxAgeMs)} are refused (TRUSTFOLD_MAX_EVENT_AGE_MS, an operator may widen it for a backfill)`,
    };
  }
  return undefined;
};
