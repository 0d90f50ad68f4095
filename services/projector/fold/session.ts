// Pure functions of one session: its tier, its public view, committing a
// draft as the next version, and the facts a chain or token carries.
import {
  TIERS,
  actingAgentOf,
  delegatorOf,
  type ActiveFreeze,
  type ChainLink,
  type SessionTrust,
  type Tier,
  type Token,
  type TrustCause,
  type TrustfoldEvent,
} from '../../../schemas/events.ts';
import type { TierMapping } from './config.ts';
import type { Draft, Facts, FreezeRecord, SessionState, Stamp, UserFacts } from './state.ts';

const tierRank = (t: Tier): number => TIERS.indexOf(t);
export const maxTier = (tiers: Iterable<Tier>): Tier => {
  let best: Tier = 'trusted';
  for (const t of tiers) if (tierRank(t) > tierRank(best)) best = t;
  return best;
};

export const tierOf = (s: Pick<SessionState, 'causes'>): Tier => maxTier(s.causes.map((c) => c.tier));

/** Appends an id to a bounded memory of applied ids (oldest dropped first). */
export const remember = (applied: readonly string[], eventId: string, bound: number): readonly string[] => {
  const next = [...applied, eventId];
  return next.length > bound ? next.slice(next.length - bound) : next;
};

export const msOf = (iso: string): number => Date.parse(iso);

export const stampOf = (e: TrustfoldEvent): Stamp => ({ event_id: e.event_id, since: e.occurred_at });

/** The public view PDPs receive (docs/design.md#trust-state). */
export const viewOf = (s: SessionState): SessionTrust => {
  const revokedRoles = s.causes.filter((c) => c.kind === 'role_revoked').map((c) => c.ref);
  return {
    session_id: s.session_id,
    tenant_id: s.tenant_id,
    version: s.version,
    tier: tierOf(s),
    ...(s.delegator !== undefined && { delegator: s.delegator }),
    ...(s.agent !== undefined && { agent: s.agent }),
    ...(s.agent_version !== undefined && { agent_version: s.agent_version }),
    ...(s.consent_ref !== undefined && { consent_ref: s.consent_ref }),
    causes: s.causes.map((c) => ({ ...c })),
    revoked_roles: [...new Set(revokedRoles)].sort(),
    consent_revoked: s.causes.some((c) => c.kind === 'consent_revoked'),
    freezes: s.freezes.map((f) => ({ ...f, scope: { ...f.scope } })),
    ended: s.ended,
    updated_at: s.updated_at,
    caused_by: s.caused_by,
  };
};

const sameCauses = (a: readonly TrustCause[], b: readonly TrustCause[]): boolean =>
  a.length === b.length && a.every((c, i) => c.event_id === b[i]?.event_id && c.kind === b[i]?.kind && c.ref === b[i]?.ref);
const sameFreezes = (a: readonly ActiveFreeze[], b: readonly ActiveFreeze[]): boolean =>
  a.length === b.length && a.every((f, i) => f.freeze_id === b[i]?.freeze_id && f.event_id === b[i]?.event_id);

/** Commits a draft as the next version when anything visible changed; otherwise only the dedup memory moves. */
export const commit = (s: SessionState, d: Draft, stamp: Stamp, applied: readonly string[]): { state: SessionState; changed: boolean } => {
  const changed =
    s.version === 0 ||
    d.delegator !== s.delegator ||
    d.agent !== s.agent ||
    d.agent_version !== s.agent_version ||
    d.consent_ref !== s.consent_ref ||
    d.ended !== s.ended ||
    !sameCauses(d.causes, s.causes) ||
    !sameFreezes(d.freezes, s.freezes);
  if (!changed) return { state: applied === s.applied ? s : { ...s, applied }, changed: false };
  const state: SessionState = {
    tenant_id: s.tenant_id,
    session_id: s.session_id,
    version: s.version + 1,
    ...(d.delegator !== undefined && { delegator: d.delegator }),
    ...(d.agent !== undefined && { agent: d.agent }),
    ...(d.agent_version !== undefined && { agent_version: d.agent_version }),
    ...(d.consent_ref !== undefined && { consent_ref: d.consent_ref }),
    causes: d.causes,
    freezes: d.freezes,
    ended: d.ended,
    updated_at: stamp.since,
    caused_by: stamp.event_id,
    applied,
  };
  return { state, changed: true };
};

export const draftOf = (s: SessionState): Draft => ({
  ...(s.delegator !== undefined && { delegator: s.delegator }),
  ...(s.agent !== undefined && { agent: s.agent }),
  ...(s.agent_version !== undefined && { agent_version: s.agent_version }),
  ...(s.consent_ref !== undefined && { consent_ref: s.consent_ref }),
  causes: s.causes,
  freezes: s.freezes,
  ended: s.ended,
});

export const emptySession = (tenantId: string, sessionId: string): SessionState => ({
  tenant_id: tenantId,
  session_id: sessionId,
  version: 0,
  causes: [],
  freezes: [],
  ended: false,
  updated_at: new Date(0).toISOString(),
  caused_by: '00000000-0000-0000-0000-000000000000',
  applied: [],
});

/**
 * A session is "live" once it exists and until it ends; fan-out reaches live
 * sessions only. An ended session is final: later events leave it unchanged.
 */
export const isLive = (s: SessionState): boolean => !s.ended;

/**
 * Whether a freeze is listed on a session. Only the agent is a property of a
 * session; resource and actions belong to each call, so the PDP matches those
 * per call (services/pdp-client `freezeMatchesCall`). A freeze scoped to an
 * agent is listed while the session's agent is still unknown — listing too
 * much costs a per-call check, listing too little lets a frozen call through.
 */
export const freezeListedOn = (scope: ActiveFreeze['scope'], s: Pick<SessionState, 'agent'>): boolean =>
  scope.agent_id === undefined || s.agent === undefined || scope.agent_id === s.agent;

export const sortFreezes = (fs: readonly ActiveFreeze[]): ActiveFreeze[] =>
  [...fs].sort((a, b) => (a.freeze_id < b.freeze_id ? -1 : a.freeze_id > b.freeze_id ? 1 : 0));

export const publicFreeze = (r: FreezeRecord): ActiveFreeze => r.freeze;

/** Role and consent revocations of the session's delegator that apply to it now. */
export const inheritedCauses = (s: Facts, user: UserFacts | undefined, tiers: TierMapping): TrustCause[] => {
  if (user === undefined) return [];
  const out: TrustCause[] = [];
  for (const [role, st] of user.revokedRoles) out.push({ kind: 'role_revoked', ref: role, event_id: st.event_id, since: st.since, tier: tiers.roleRevoked });
  for (const [ref, st] of user.consentRevocations) {
    if (ref === '*' || ref === s.consent_ref) out.push({ kind: 'consent_revoked', ref, event_id: st.event_id, since: st.since, tier: tiers.consentRevoked });
  }
  return out;
};

export const hasCause = (causes: readonly TrustCause[], kind: string, ref: string): boolean => causes.some((c) => c.kind === kind && c.ref === ref);

/** The delegator (first human), the acting agent (last agent) and its version, and the token's consent ref. */
export const factsFromChain = (chain: readonly ChainLink[], token: Token | undefined): Facts => {
  const h = delegatorOf(chain);
  const a = actingAgentOf(chain);
  return {
    ...(h !== undefined && { delegator: h.id }),
    ...(a !== undefined && { agent: a.id }),
    ...(a?.version !== undefined && { agent_version: a.version }),
    ...(token?.consent_ref !== undefined && { consent_ref: token.consent_ref }),
  };
};

/** Each fact from `first`, or from `second` where `first` does not know it. */
export const preferFacts = (first: Facts, second: Facts): Facts => {
  const del = first.delegator ?? second.delegator;
  const ag = first.agent ?? second.agent;
  const agv = first.agent_version ?? second.agent_version;
  const cr = first.consent_ref ?? second.consent_ref;
  return {
    ...(del !== undefined && { delegator: del }),
    ...(ag !== undefined && { agent: ag }),
    ...(agv !== undefined && { agent_version: agv }),
    ...(cr !== undefined && { consent_ref: cr }),
  };
};
