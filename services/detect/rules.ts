// Detection rules as pure folds: (state, decision[, lookup]) → [state, detections].
// No Kafka, no clock: the decision's own time decides windows. For speed a
// rule updates the state it is given in place and returns it (copying a map
// of every session per decision made the detector O(sessions) per decision);
// a caller that must keep the old state clones it first (the role does, per
// batch). What a rule
// needs beyond the decision (a session's trust steps, a token's issuance) is
// an argument (RuleContext), which the role fills from the topics it reads. State is
// bounded (at most `maxSessions` sessions, least recently seen evicted) and
// plain data, so a role can snapshot and restore it like the projector's.
// The detect role (role.ts) runs them over the decisions topic and turns
// each detection into a signal (signal.ts).
import { actingAgentOf, type DecisionEvent } from '../../schemas/events.ts';
import { trustLagOf } from '../query/story.ts';

/** Moves `key` to the end of a least-recently-seen order, in place (indexOf, not a copy: this runs per decision). */
const touchOrder = (order: string[], key: string): string[] => {
  if (order[order.length - 1] === key) return order;
  const i = order.indexOf(key);
  if (i >= 0) order.splice(i, 1);
  order.push(key);
  return order;
};

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
  const order = touchOrder(s.order, key);
  const sessions = s.sessions;
  sessions[key] = { denies, fired: rearmed || fire };
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
export type TokenReplayState = { tokens: Record<string, { sessions: [session: string, firstEventId: string][]; expiredFired: string[]; agentFired: string[] }>; order: string[] };

/** What a `token_issued` signal said about a jti (the detect role reads the signals topic for it). */
export type IssuedToken = { agent_id: string; user_id: string; expires_at: string; event_id: string };

export const initialTokenReplay = (): TokenReplayState => ({ tokens: {}, order: [] });

/**
 * A `jti` used in a second session fires once for each session it reaches
 * after the first (naming the first session's decision and this one, so
 * both sessions are flagged: the first once, when the replay is first seen);
 * a token used after its `expires_at` (the decision's token record, or the
 * `token_issued` signal's, whichever is earlier) fires once per session; a
 * token used by an acting agent other than the one `token_issued` named
 * fires once per session. At most `maxTokens` tokens are remembered (least
 * recently seen evicted).
 */
export const tokenReplay = (cfg: TokenReplayConfig, s: TokenReplayState, d: DecisionEvent, issued?: IssuedToken): [TokenReplayState, Detection[]] => {
  const jti = d.token?.jti;
  if (jti === undefined) return [s, []];
  const key = `${d.tenant_id}\u0000${jti}`;
  const prev = s.tokens[key] ?? { sessions: [], expiredFired: [], agentFired: [] };
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
  // The decision's own token record, else what token_issued said: whichever expires first.
  const exps = [d.token?.expires_at, issued?.expires_at].filter((x): x is string => x !== undefined).sort();
  const exp = exps[0];
  if (exp !== undefined && Date.parse(d.occurred_at) > Date.parse(exp) && !expiredFired.includes(d.session_id)) {
    out.push(mk(d.session_id, [d.event_id], `token ${jti} used after it expired at ${exp}`));
    expiredFired = [...expiredFired, d.session_id].slice(-16);
  }
  let agentFired = prev.agentFired;
  const agent = actingAgentOf(d.chain)?.id;
  if (issued !== undefined && agent !== undefined && agent !== issued.agent_id && !agentFired.includes(d.session_id)) {
    out.push(mk(d.session_id, [d.event_id], `token ${jti} issued to agent ${issued.agent_id} (token_issued ${issued.event_id}) used by agent ${agent}`));
    agentFired = [...agentFired, d.session_id].slice(-16);
  }
  const order = touchOrder(s.order, key);
  const tokens = s.tokens;
  tokens[key] = { sessions, expiredFired, agentFired };
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
  const order = s.order;
  order.push(key);
  const fired = s.fired;
  fired[key] = true;
  while (order.length > cfg.maxSessions) {
    const evicted = order.shift();
    if (evicted !== undefined) delete fired[evicted];
  }
  const reason = `${tool}:${action} is outside task class ${cls ?? ''}`;
  return [{ fired, order }, [{ detector: 'trustfold/out-of-task', tenant_id: d.tenant_id, session_id: d.session_id, event_ids: [d.event_id], at: d.occurred_at, reason }]];
};

/** What the rules may look up beyond the decision, as the detect role has read it from the session-trust and signals topics. */
export type RuleContext = {
  /** The session's trust steps (version, updated_at), any order; undefined when none is known. */
  trustSteps(tenant: string, session: string): readonly TrustStepLite[] | undefined;
  /** The last `token_issued` seen for the jti. */
  issuedToken(tenant: string, jti: string): IssuedToken | undefined;
};

export type TrustStepLite = { version: number; updated_at: string };

/** A context that knows nothing (rules needing one then never fire). */
export const EMPTY_CONTEXT: RuleContext = { trustSteps: () => undefined, issuedToken: () => undefined };

export type StalePdpConfig = {
  /** Stale only when more than this many versions behind… */
  graceVersions: number;
  /** …and the first version the PDP had not seen had been in force for more than this (ms). */
  graceMs: number;
  /** Emit a signal for the session (else only the per-PDP counts). */
  signal: boolean;
  maxPdps: number;
  maxSessions: number;
};

export type PdpStats = { tenant_id: string; pdp_id: string; last_seen: string; decisions: number; stale: number; worst_lag_versions: number; worst_lag_ms: number };

/** Per (tenant, pdp_id): what `GET /v1/audit/pdps` lists, over the decisions folded; the (session, pdp) pairs already flagged (once each). */
export type StalePdpState = { pdps: Record<string, PdpStats>; order: string[]; flagged: Record<string, true>; flaggedOrder: string[] };

export const initialStalePdp = (): StalePdpState => ({ pdps: {}, order: [], flagged: {}, flaggedOrder: [] });

/**
 * A decision stamped with a trust version more than `graceVersions` behind
 * the one in force at its time, whose first unseen version had been in force
 * for more than `graceMs`, is stale. "In force" is the audit's definition
 * (trustLagOf, services/query/story.ts): the session's transition with the
 * highest version whose `updated_at` is at or before the decision's
 * `occurred_at`, over the steps the context holds. Counted per PDP; a signal
 * (when `signal`) once per (session, PDP). A decision naming no PDP or no
 * version, or a session whose steps are unknown, is counted, never stale.
 */
export const stalePdp = (cfg: StalePdpConfig, s: StalePdpState, d: DecisionEvent, steps: readonly TrustStepLite[] | undefined): [StalePdpState, Detection[]] => {
  const pdp = d.decision.pdp_id;
  if (pdp === undefined) return [s, []];
  const lag = trustLagOf(d, steps ?? []);
  const behind = lag.status === 'stale' ? lag.versions_behind : 0;
  const ms = lag.status === 'stale' ? lag.ms_behind : 0;
  const isStale = lag.status === 'stale' && behind > cfg.graceVersions && ms > cfg.graceMs;
  const key = `${d.tenant_id}\u0000${pdp}`;
  const prev = s.pdps[key] ?? { tenant_id: d.tenant_id, pdp_id: pdp, last_seen: d.occurred_at, decisions: 0, stale: 0, worst_lag_versions: 0, worst_lag_ms: 0 };
  const pdps = s.pdps;
  pdps[key] = {
    ...prev,
    last_seen: d.occurred_at > prev.last_seen ? d.occurred_at : prev.last_seen,
    decisions: prev.decisions + 1,
    stale: prev.stale + (isStale ? 1 : 0),
    worst_lag_versions: isStale ? Math.max(prev.worst_lag_versions, behind) : prev.worst_lag_versions,
    worst_lag_ms: isStale ? Math.max(prev.worst_lag_ms, ms) : prev.worst_lag_ms,
  };
  const order = touchOrder(s.order, key);
  while (order.length > cfg.maxPdps) {
    const evicted = order.shift();
    if (evicted !== undefined) delete pdps[evicted];
  }
  const flagKey = `${d.tenant_id}\u0000${d.session_id}\u0000${pdp}`;
  if (!isStale || !cfg.signal || s.flagged[flagKey] === true || lag.status !== 'stale') return [{ pdps, order, flagged: s.flagged, flaggedOrder: s.flaggedOrder }, []];
  const flagged = s.flagged;
  flagged[flagKey] = true;
  const flaggedOrder = s.flaggedOrder;
  flaggedOrder.push(flagKey);
  while (flaggedOrder.length > cfg.maxSessions) {
    const evicted = flaggedOrder.shift();
    if (evicted !== undefined) delete flagged[evicted];
  }
  const reason = `PDP ${pdp} decided on trust v${lag.pdp_version} while v${lag.in_force_version} was in force (${behind} version${behind === 1 ? '' : 's'} and ${ms} ms behind)`;
  return [{ pdps, order, flagged, flaggedOrder }, [{ detector: 'trustfold/stale-pdp', tenant_id: d.tenant_id, session_id: d.session_id, event_ids: [d.event_id], at: d.occurred_at, reason }]];
};

export type ToolChangedConfig = { maxSessions: number; maxToolsPerSession: number };

/**
 * A PDP that watches its upstreams' listings and raised its own signal for a
 * change (the MCP gateway, services/gate: `injection_detected` from
 * `trustfold-gate/tool-schema-changed`) puts this reason, then the signal id,
 * on the session's first decision under the new digest. The rule then records
 * the new digest without firing: one rug pull, one signal. A PDP whose signal
 * could not be stored does not mark the decision, and the rule fires.
 */
export const TOOL_CHANGE_REPORTED = 'tool-schema-change-reported: ';

/** Per session: each tool's last digest and the decision that first showed it; the (tool, digest) pairs already reported. */
export type ToolChangedState = { sessions: Record<string, { tools: Record<string, { digest: string; event_id: string }>; fired: string[] }>; order: string[] };

export const initialToolChanged = (): ToolChangedState => ({ sessions: {}, order: [] });

/**
 * A session that already called a tool under one `provenance.tool_schema_digest`
 * and now calls it under another fires, once per (session, tool, new digest),
 * naming the decision that first showed the previous digest and this one.
 * Any PDP that stamps the digest is covered (the MCP gateway does). At most
 * `maxSessions` sessions (least recently seen evicted) and
 * `maxToolsPerSession` tools per session (the oldest forgotten).
 */
export const toolChanged = (cfg: ToolChangedConfig, s: ToolChangedState, d: DecisionEvent): [ToolChangedState, Detection[]] => {
  const digest = d.provenance?.tool_schema_digest;
  if (digest === undefined || digest === '') return [s, []];
  const key = `${d.tenant_id}\u0000${d.session_id}`;
  const tool = d.request.tool;
  const prev = s.sessions[key] ?? { tools: {}, fired: [] };
  const known = prev.tools[tool];
  const out: Detection[] = [];
  let fired = prev.fired;
  let tools = prev.tools;
  if (known === undefined || known.digest !== digest) {
    const pair = `${tool}\u0000${digest}`;
    const reported = d.decision.reasons.some((r) => r.startsWith(TOOL_CHANGE_REPORTED));
    if (known !== undefined && reported && !fired.includes(pair)) fired = [...fired, pair].slice(-cfg.maxToolsPerSession);
    else if (known !== undefined && !fired.includes(pair)) {
      out.push({
        detector: 'trustfold/tool-description-changed',
        tenant_id: d.tenant_id,
        session_id: d.session_id,
        event_ids: [known.event_id, d.event_id],
        at: d.occurred_at,
        reason: `tool ${tool} called under schema digest ${digest}, after ${known.digest} earlier in the session`,
      });
      fired = [...fired, pair].slice(-cfg.maxToolsPerSession);
    }
    const { [tool]: _old, ...rest } = tools;
    tools = { ...rest, [tool]: { digest, event_id: d.event_id } };
    const names = Object.keys(tools);
    if (names.length > cfg.maxToolsPerSession) {
      const first = names[0];
      if (first !== undefined) {
        const { [first]: _dropped, ...kept } = tools;
        tools = kept;
      }
    }
  }
  const order = touchOrder(s.order, key);
  const sessions = s.sessions;
  sessions[key] = { tools, fired };
  while (order.length > cfg.maxSessions) {
    const evicted = order.shift();
    if (evicted !== undefined) delete sessions[evicted];
  }
  return [{ sessions, order }, out];
};

export const RULES = ['deny-storm', 'token-replay', 'out-of-task', 'stale-pdp', 'tool-description-changed'] as const;
export type RuleName = (typeof RULES)[number];

/** Which rules run, with their settings; a rule left out is off. */
export type RulesConfig = { denyStorm?: DenyStormConfig; tokenReplay?: TokenReplayConfig; outOfTask?: OutOfTaskConfig; stalePdp?: StalePdpConfig; toolChanged?: ToolChangedConfig };

export type RulesState = { denyStorm: DenyStormState; tokenReplay: TokenReplayState; outOfTask: OutOfTaskState; stalePdp: StalePdpState; toolChanged: ToolChangedState };

export const initialRules = (): RulesState => ({
  denyStorm: initialDenyStorm(),
  tokenReplay: initialTokenReplay(),
  outOfTask: initialOutOfTask(),
  stalePdp: initialStalePdp(),
  toolChanged: initialToolChanged(),
});

/** Whether any enabled rule looks things up in the context (the role then keeps the trust and signals readers). */
export const needsContext = (cfg: RulesConfig): { trust: boolean; tokens: boolean } => ({ trust: cfg.stalePdp !== undefined, tokens: cfg.tokenReplay !== undefined });

/**
 * Every enabled rule over one decision, in a fixed order (deny-storm,
 * token-replay, out-of-task, stale-pdp, tool-description-changed), so replays
 * emit the same detections in the same order.
 */
export const detectAll = (cfg: RulesConfig, s: RulesState, d: DecisionEvent, ctx: RuleContext = EMPTY_CONTEXT): [RulesState, Detection[]] => {
  const out: Detection[] = [];
  let { denyStorm: ds, tokenReplay: tr, outOfTask: ot, stalePdp: sp, toolChanged: tc } = s;
  if (cfg.denyStorm !== undefined) {
    const [n, o] = denyStorm(cfg.denyStorm, ds, d);
    ds = n;
    out.push(...o);
  }
  if (cfg.tokenReplay !== undefined) {
    const jti = d.token?.jti;
    const [n, o] = tokenReplay(cfg.tokenReplay, tr, d, jti !== undefined ? ctx.issuedToken(d.tenant_id, jti) : undefined);
    tr = n;
    out.push(...o);
  }
  if (cfg.outOfTask !== undefined) {
    const [n, o] = outOfTask(cfg.outOfTask, ot, d);
    ot = n;
    out.push(...o);
  }
  if (cfg.stalePdp !== undefined) {
    const [n, o] = stalePdp(cfg.stalePdp, sp, d, ctx.trustSteps(d.tenant_id, d.session_id));
    sp = n;
    out.push(...o);
  }
  if (cfg.toolChanged !== undefined) {
    const [n, o] = toolChanged(cfg.toolChanged, tc, d);
    tc = n;
    out.push(...o);
  }
  return [{ denyStorm: ds, tokenReplay: tr, outOfTask: ot, stalePdp: sp, toolChanged: tc }, out];
};

/** The rule's short name from its detector (`trustfold/deny-storm` → `deny-storm`). */
export const ruleOf = (detector: string): string => detector.replace(/^trustfold\//, '');
