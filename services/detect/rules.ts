// Detection rules as pure folds: (state, decision) → [state, detections].
// No Kafka, no clock: the decision's own time decides windows. State is
// bounded (at most `maxSessions` sessions, least recently seen evicted) and
// plain data, so a role can snapshot and restore it like the projector's.
// The detect role (role.ts) runs them over the decisions topic and turns
// each detection into a signal (signal.ts).
import type { DecisionEvent } from '../../schemas/events.ts';

export type Detection = {
  /** `trustfold/<rule>`: the detector name a signal would carry. */
  detector: string;
  tenant_id: string;
  session_id: string;
  /** The decisions that caused it, oldest first. */
  event_ids: string[];
  at: string;
  /** One sentence for the signal's `detail`. */
  reason?: string;
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
  const reason = `${denies.length} denies within ${cfg.windowMs} ms (more than ${cfg.threshold})`;
  const out: Detection[] = fire ? [{ detector: 'trustfold/deny-storm', tenant_id: d.tenant_id, session_id: d.session_id, event_ids: denies.map(([, id]) => id), at: d.occurred_at, reason }] : [];
  return [{ sessions, order }, out];
};

export type TokenReplayConfig = { maxTokens: number };

/** Per (tenant, jti): the sessions it was seen in (first first) and whether use-after-expiry already fired per session. */
export type TokenReplayState = { tokens: Record<string, { sessions: [session: string, firstEventId: string][]; expiredFired: string[] }>; order: string[] };

export const initialTokenReplay = (): TokenReplayState => ({ tokens: {}, order: [] });

/**
 * A `jti` used in a second session fires once for each session it reaches
 * after the first (naming the first session's decision and this one, so
 * both sessions are flagged: the first once, when the replay is first seen);
 * a token used after its `expires_at` fires once per session. At most
 * `maxTokens` tokens are remembered (least recently seen evicted).
 */
export const tokenReplay = (cfg: TokenReplayConfig, s: TokenReplayState, d: DecisionEvent): [TokenReplayState, Detection[]] => {
  const jti = d.token?.jti;
  if (jti === undefined) return [s, []];
  const key = `${d.tenant_id}\u0000${jti}`;
  const prev = s.tokens[key] ?? { sessions: [], expiredFired: [] };
  const out: Detection[] = [];
  const mk = (session_id: string, event_ids: string[], reason: string): Detection => ({ detector: 'trustfold/token-replay', tenant_id: d.tenant_id, session_id, event_ids, at: d.occurred_at, reason });
  let sessions = prev.sessions;
  if (!sessions.some(([sid]) => sid === d.session_id)) {
    const first = sessions[0];
    if (first !== undefined) {
      const why = `token ${jti} of session ${first[0]} used in session ${d.session_id}`;
      if (sessions.length === 1) out.push(mk(first[0], [first[1], d.event_id], why));
      out.push(mk(d.session_id, [first[1], d.event_id], why));
    }
    sessions = [...sessions, [d.session_id, d.event_id]].slice(0, 16) as [string, string][];
  }
  let expiredFired = prev.expiredFired;
  const exp = d.token?.expires_at;
  if (exp !== undefined && Date.parse(d.occurred_at) > Date.parse(exp) && !expiredFired.includes(d.session_id)) {
    out.push(mk(d.session_id, [d.event_id], `token ${jti} used after it expired at ${exp}`));
    expiredFired = [...expiredFired, d.session_id].slice(-16);
  }
  const order = [...s.order.filter((k) => k !== key), key];
  const tokens = { ...s.tokens, [key]: { sessions, expiredFired } };
  while (order.length > cfg.maxTokens) {
    const evicted = order.shift();
    if (evicted !== undefined) delete tokens[evicted];
  }
  return [{ tokens, order }, out];
};

/** task_class → the `tool:action` pairs (or `tool:*`) a session of that class may call. Task classes not listed are not judged. */
export type OutOfTaskConfig = { allowed: Readonly<Record<string, readonly string[]>>; maxSessions: number };

/** Per session: whether it already fired (once per session). */
export type OutOfTaskState = { fired: Record<string, true>; order: string[] };

export const initialOutOfTask = (): OutOfTaskState => ({ fired: {}, order: [] });

/** A call outside the set configured for its `intent.task_class` fires once per session; denied calls count too (the attempt is the signal). */
export const outOfTask = (cfg: OutOfTaskConfig, s: OutOfTaskState, d: DecisionEvent): [OutOfTaskState, Detection[]] => {
  const cls = d.intent?.task_class;
  const allowed = cls === undefined ? undefined : cfg.allowed[cls];
  if (allowed === undefined) return [s, []];
  const { tool, action } = d.request;
  if (allowed.includes(`${tool}:${action}`) || allowed.includes(`${tool}:*`)) return [s, []];
  const key = `${d.tenant_id}\u0000${d.session_id}`;
  if (s.fired[key] === true) return [s, []];
  const order = [...s.order, key];
  const fired: Record<string, true> = { ...s.fired, [key]: true };
  while (order.length > cfg.maxSessions) {
    const evicted = order.shift();
    if (evicted !== undefined) delete fired[evicted];
  }
  const reason = `${tool}:${action} is outside task class ${cls ?? ''}`;
  return [{ fired, order }, [{ detector: 'trustfold/out-of-task', tenant_id: d.tenant_id, session_id: d.session_id, event_ids: [d.event_id], at: d.occurred_at, reason }]];
};

export const RULES = ['deny-storm', 'token-replay', 'out-of-task'] as const;
export type RuleName = (typeof RULES)[number];

/** Which rules run, with their settings; a rule left out is off. */
export type RulesConfig = { denyStorm?: DenyStormConfig; tokenReplay?: TokenReplayConfig; outOfTask?: OutOfTaskConfig };

export type RulesState = { denyStorm: DenyStormState; tokenReplay: TokenReplayState; outOfTask: OutOfTaskState };

export const initialRules = (): RulesState => ({ denyStorm: initialDenyStorm(), tokenReplay: initialTokenReplay(), outOfTask: initialOutOfTask() });

/** Every enabled rule over one decision, in a fixed order (deny-storm, token-replay, out-of-task), so replays emit the same detections in the same order. */
export const detectAll = (cfg: RulesConfig, s: RulesState, d: DecisionEvent): [RulesState, Detection[]] => {
  const out: Detection[] = [];
  let { denyStorm: ds, tokenReplay: tr, outOfTask: ot } = s;
  if (cfg.denyStorm !== undefined) {
    const [n, o] = denyStorm(cfg.denyStorm, ds, d);
    ds = n;
    out.push(...o);
  }
  if (cfg.tokenReplay !== undefined) {
    const [n, o] = tokenReplay(cfg.tokenReplay, tr, d);
    tr = n;
    out.push(...o);
  }
  if (cfg.outOfTask !== undefined) {
    const [n, o] = outOfTask(cfg.outOfTask, ot, d);
    ot = n;
    out.push(...o);
  }
  return [{ denyStorm: ds, tokenReplay: tr, outOfTask: ot }, out];
};

/** The rule's short name from its detector (`trustfold/deny-storm` → `deny-storm`). */
export const ruleOf = (detector: string): string => detector.replace(/^trustfold\//, '');

export type StalePdpConfig = { graceVersions: number; maxPdps: number };

/** Per (tenant, pdp_id): what `GET /v1/audit/pdps` would list; and the sessions already flagged (once per session). */
export type StalePdpState = {
  pdps: Record<string, { last_seen: string; decisions: number; stale: number; worst_lag: number }>;
  flagged: Record<string, true>;
  order: string[];
};

export const initialStalePdp = (): StalePdpState => ({ pdps: {}, flagged: {}, order: [] });

/**
 * A decision stamped with a trust version more than `graceVersions` behind
 * the one in force at its time fires once per session. The version in force
 * is an argument (a lookup the caller makes, e.g. from the session-trust
 * topic): the rule stays pure. Not wired into `detectAll` or the role yet.
 */
export const stalePdp = (cfg: StalePdpConfig, s: StalePdpState, d: DecisionEvent, inForce: number | undefined): [StalePdpState, Detection[]] => {
  const pdp = d.decision.pdp_id;
  const used = d.decision.trust_version;
  if (pdp === undefined) return [s, []];
  const lag = used !== undefined && inForce !== undefined ? inForce - used : 0;
  const isStale = lag > cfg.graceVersions;
  const key = `${d.tenant_id}\u0000${pdp}`;
  const prev = s.pdps[key] ?? { last_seen: d.occurred_at, decisions: 0, stale: 0, worst_lag: 0 };
  const pdps = { ...s.pdps, [key]: { last_seen: d.occurred_at > prev.last_seen ? d.occurred_at : prev.last_seen, decisions: prev.decisions + 1, stale: prev.stale + (isStale ? 1 : 0), worst_lag: Math.max(prev.worst_lag, lag) } };
  const order = [...s.order.filter((k) => k !== key), key];
  while (order.length > cfg.maxPdps) {
    const evicted = order.shift();
    if (evicted !== undefined) delete pdps[evicted];
  }
  const sessionKey = `${d.tenant_id}\u0000${d.session_id}`;
  if (!isStale || s.flagged[sessionKey] === true) return [{ pdps, flagged: s.flagged, order }, []];
  const reason = `PDP ${pdp} decided on trust v${used ?? 0} while v${inForce ?? 0} was in force (${lag} versions behind)`;
  return [{ pdps, flagged: { ...s.flagged, [sessionKey]: true }, order }, [{ detector: 'trustfold/stale-pdp', tenant_id: d.tenant_id, session_id: d.session_id, event_ids: [d.event_id], at: d.occurred_at, reason }]];
};
