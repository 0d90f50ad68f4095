// Detection rules as pure folds: (state, decision) → [state, detections].
// No Kafka, no clock: the decision's own time decides windows. State is
// bounded (at most `maxSessions` sessions, least recently seen evicted) and
// plain data, so a role can snapshot and restore it like the projector's.
// Not yet wired to a consumer role or to ingest admission (see the report of
// issue 14): these are the rules only.
import type { DecisionEvent } from '../../schemas/events.ts';

export type Detection = {
  /** `trustfold/<rule>`: the detector name a signal would carry. */
  detector: string;
  tenant_id: string;
  session_id: string;
  /** The decisions that caused it, oldest first. */
  event_ids: string[];
  at: string;
};

export type DenyStormConfig = { threshold: number; windowMs: number; maxSessions: number };

/** Per session: the recent denies inside the window (time, id), oldest first, and whether it already fired for this burst. */
export type DenyStormState = { sessions: Record<string, { denies: [at: string, id: string][]; fired: boolean }>; order: string[] };

export const initialDenyStorm = (): DenyStormState => ({ sessions: {}, order: [] });

/** More than `threshold` denies within `windowMs` in one session fires once per burst (re-arms when the window empties). */
export const denyStorm = (cfg: DenyStormConfig, s: DenyStormState, d: DecisionEvent): [DenyStormState, Detection[]] => {
  const key = `${d.tenant_id}\u0000${d.session_id}`;
  const now = Date.parse(d.occurred_at);
  const prev = s.sessions[key] ?? { denies: [], fired: false };
  const kept = prev.denies.filter(([at]) => now - Date.parse(at) < cfg.windowMs);
  const denies: [string, string][] = d.decision.effect === 'deny' ? [...kept, [d.occurred_at, d.event_id]] : kept;
  const rearmed = kept.length === 0 ? false : prev.fired;
  const fire = !rearmed && denies.length > cfg.threshold;
  const order = [...s.order.filter((k) => k !== key), key];
  const sessions = { ...s.sessions, [key]: { denies, fired: rearmed || fire } };
  while (order.length > cfg.maxSessions) {
    const evicted = order.shift();
    if (evicted !== undefined) delete sessions[evicted];
  }
  const out: Detection[] = fire ? [{ detector: 'trustfold/deny-storm', tenant_id: d.tenant_id, session_id: d.session_id, event_ids: denies.map(([, id]) => id), at: d.occurred_at }] : [];
  return [{ sessions, order }, out];
};
