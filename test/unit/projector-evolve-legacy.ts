// The trust fold: events in, per-session trust states out. No Kafka, no clock,
// no I/O — time only ever arrives as an argument (an event's `occurred_at`, or
// `tick(world, now)`), so a replay agrees with the live run.
//
// Two layers:
//   - session level: `SessionState` values are immutable; every change makes a
//     new object with `version + 1` and `caused_by`;
//   - world level: the sessions plus the facts that fan out (a user's revoked
//     roles and consents, a tenant's active freezes) and the indexes that find
//     the sessions they reach. `evolve(world, event, config)` returns the next
//     world and the sessions that changed.
//
// The world is an *owned* accumulator: to stay O(1) per event at a million
// sessions, `evolve` and `tick` update its maps in place and return the same
// object (like a reduce with a Map accumulator). Callers never keep using an
// older world; `snapshotWorld` / `restoreWorld` give value semantics where
// tests and restarts need them.
import {
  TIERS,
  actingAgentOf,
  delegatorOf,
  type ActiveFreeze,
  type ChainLink,
  type DecisionEvent,
  type SessionTrust,
  type SignalEvent,
  type SignalOf,
  type Tier,
  type Token,
  type TrustCause,
  type TrustfoldEvent,
} from '../../schemas/events.ts';
import { tupleKey } from '../../schemas/keys.ts';

export type Severity = SignalOf<'injection_detected'>['severity'];

/** What each signal does to a tier; the defaults are the signal table of docs/design.md#events. */
export type TierMapping = {
  injection: Record<Severity, Tier>;
  roleRevoked: Tier;
  consentRevoked: Tier;
  sessionEnded: Tier;
};

export type FoldConfig = {
  tiers: TierMapping;
  /** Event ids remembered per session / per user for duplicate detection. */
  appliedPerSession: number;
  appliedPerUser: number;
  /**
   * Once a wall-clock `tick(now)` was given, an event's time advances the
   * fold's clock at most to `now + maxEventSkewMs`, so one producer with a
   * clock in the future cannot expire everyone's causes early.
   */
  maxEventSkewMs: number;
};

export const DEFAULT_TIER_MAPPING: TierMapping = {
  injection: { low: 'degraded', medium: 'degraded', high: 'restricted', critical: 'restricted' },
  roleRevoked: 'degraded',
  consentRevoked: 'revoked',
  sessionEnded: 'revoked',
};

export const DEFAULT_FOLD_CONFIG: FoldConfig = {
  tiers: DEFAULT_TIER_MAPPING,
  appliedPerSession: 32,
  appliedPerUser: 32,
  maxEventSkewMs: 60_000,
};

// ---------------------------------------------------------------------------
// State

/** One session's trust, plus the event ids already applied to it. */
export type SessionState = {
  readonly tenant_id: string;
  readonly session_id: string;
  readonly version: number;
  readonly delegator?: string;
  readonly agent?: string;
  readonly agent_version?: string;
  readonly consent_ref?: string;
  /** Active causes, in the order they were raised. */
  readonly causes: readonly TrustCause[];
  /** Active freezes listed on this session, by freeze_id. */
  readonly freezes: readonly ActiveFreeze[];
  readonly ended: boolean;
  readonly updated_at: string;
  readonly caused_by: string;
  /** Most recent event ids applied to this session (bounded; oldest first). */
  readonly applied: readonly string[];
};

type Stamp = { readonly event_id: string; readonly since: string };

/** Facts about one user that fan out to every live session they delegated. */
export type UserFacts = {
  readonly tenant_id: string;
  readonly user_id: string;
  /** role → the revocation in force. */
  readonly revokedRoles: ReadonlyMap<string, Stamp>;
  /** consent_ref (or '*' for all of the user's consents) → the revocation in force. */
  readonly consentRevocations: ReadonlyMap<string, Stamp>;
  readonly applied: readonly string[];
};

/** A freeze ever raised; kept after it is lifted so a late duplicate of the raise is recognised. */
export type FreezeRecord = {
  readonly tenant_id: string;
  readonly freeze: ActiveFreeze & { readonly event_id: string; readonly since: string };
  readonly status: 'active' | 'lifted' | 'expired';
  readonly applied: readonly string[];
};

type Expiry = { at: number; key: string; event_id: string; what: 'cause' | 'freeze' };

export type World = {
  /** The fold's clock (ms since epoch); advanced by event time and `tick`. */
  clock: number;
  /** Last wall time given to `tick`, if any: event time may run ahead of it by the allowed skew only. */
  wall: number | null;
  readonly sessions: Map<string, SessionState>;
  readonly users: Map<string, UserFacts>;
  readonly freezes: Map<string, FreezeRecord>;
  /** user key → keys of that user's live sessions. */
  readonly sessionsByUser: Map<string, Set<string>>;
  /** tenant → keys of its live sessions. */
  readonly sessionsByTenant: Map<string, Set<string>>;
  /** Min-heap of pending expiries (lazily invalidated). */
  readonly expiries: Expiry[];
};

export const initialWorld = (): World => ({
  clock: 0,
  wall: null,
  sessions: new Map(),
  users: new Map(),
  freezes: new Map(),
  sessionsByUser: new Map(),
  sessionsByTenant: new Map(),
  expiries: [],
});

/**
 * `changed`: every new session version, in order (what PDPs must see).
 * `touched`: keys of every record written, visible or not (a session whose
 * dedup memory moved, a user's facts, a freeze) — what a changelog persists.
 */
export type Transition = { world: World; changed: SessionTrust[]; touched: string[] };

export const sessionKeyOf = (tenantId: string, sessionId: string): string => tupleKey(tenantId, 'session', sessionId);
export const userKeyOf = (tenantId: string, userId: string): string => tupleKey(tenantId, 'user', userId);
export const freezeKeyOf = (tenantId: string, freezeId: string): string => tupleKey(tenantId, 'freeze', freezeId);

// ---------------------------------------------------------------------------
// Pure helpers on one session

const tierRank = (t: Tier): number => TIERS.indexOf(t);
export const maxTier = (tiers: Iterable<Tier>): Tier => {
  let best: Tier = 'trusted';
  for (const t of tiers) if (tierRank(t) > tierRank(best)) best = t;
  return best;
};

export const tierOf = (s: Pick<SessionState, 'causes'>): Tier => maxTier(s.causes.map((c) => c.tier));

const remember = (applied: readonly string[], eventId: string, bound: number): readonly string[] => {
  const next = [...applied, eventId];
  return next.length > bound ? next.slice(next.length - bound) : next;
};

const msOf = (iso: string): number => Date.parse(iso);

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

type Facts = Pick<SessionState, 'delegator' | 'agent' | 'agent_version' | 'consent_ref'>;
type Draft = Facts & { causes: readonly TrustCause[]; freezes: readonly ActiveFreeze[]; ended: boolean };

/** Commits a draft as the next version when anything visible changed; otherwise only the dedup memory moves. */
const commit = (s: SessionState, d: Draft, stamp: Stamp, applied: readonly string[]): { state: SessionState; changed: boolean } => {
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

const draftOf = (s: SessionState): Draft => ({
  ...(s.delegator !== undefined && { delegator: s.delegator }),
  ...(s.agent !== undefined && { agent: s.agent }),
  ...(s.agent_version !== undefined && { agent_version: s.agent_version }),
  ...(s.consent_ref !== undefined && { consent_ref: s.consent_ref }),
  causes: s.causes,
  freezes: s.freezes,
  ended: s.ended,
});

const emptySession = (tenantId: string, sessionId: string): SessionState => ({
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
const isLive = (s: SessionState): boolean => !s.ended;

/**
 * Whether a freeze is listed on a session. Only the agent is a property of a
 * session; resource and actions belong to each call, so the PDP matches those
 * per call (services/pdp-client `freezeMatchesCall`). A freeze scoped to an
 * agent is listed while the session's agent is still unknown — listing too
 * much costs a per-call check, listing too little lets a frozen call through.
 */
export const freezeListedOn = (scope: ActiveFreeze['scope'], s: Pick<SessionState, 'agent'>): boolean =>
  scope.agent_id === undefined || s.agent === undefined || scope.agent_id === s.agent;

const sortFreezes = (fs: readonly ActiveFreeze[]): ActiveFreeze[] =>
  [...fs].sort((a, b) => (a.freeze_id < b.freeze_id ? -1 : a.freeze_id > b.freeze_id ? 1 : 0));

const publicFreeze = (r: FreezeRecord): ActiveFreeze => r.freeze;

/** Role and consent revocations of the session's delegator that apply to it now. */
const inheritedCauses = (s: Facts, user: UserFacts | undefined, tiers: TierMapping): TrustCause[] => {
  if (user === undefined) return [];
  const out: TrustCause[] = [];
  for (const [role, st] of user.revokedRoles) out.push({ kind: 'role_revoked', ref: role, event_id: st.event_id, since: st.since, tier: tiers.roleRevoked });
  for (const [ref, st] of user.consentRevocations) {
    if (ref === '*' || ref === s.consent_ref) out.push({ kind: 'consent_revoked', ref, event_id: st.event_id, since: st.since, tier: tiers.consentRevoked });
  }
  return out;
};

const hasCause = (causes: readonly TrustCause[], kind: string, ref: string): boolean => causes.some((c) => c.kind === kind && c.ref === ref);

// ---------------------------------------------------------------------------
// Expiry heap (ordered by time, then key, then event id: a total order, so
// equal instants release in the same order on every run).

const before = (a: Expiry, b: Expiry): boolean =>
  a.at !== b.at ? a.at < b.at : a.key !== b.key ? a.key < b.key : a.event_id < b.event_id;

const heapPush = (h: Expiry[], x: Expiry): void => {
  h.push(x);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    const parent = h[p] as Expiry;
    if (!before(x, parent)) break;
    h[i] = parent;
    i = p;
  }
  h[i] = x;
};

const heapPop = (h: Expiry[]): Expiry | undefined => {
  const top = h[0];
  const last = h.pop();
  if (top === undefined || last === undefined || h.length === 0) return top;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    let best = last;
    const lv = h[l];
    const rv = h[r];
    if (lv !== undefined && before(lv, best)) {
      m = l;
      best = lv;
    }
    if (rv !== undefined && before(rv, best)) m = r;
    if (m === i) break;
    h[i] = h[m] as Expiry;
    i = m;
  }
  h[i] = last;
  return top;
};

// ---------------------------------------------------------------------------
// World plumbing

const indexAdd = (idx: Map<string, Set<string>>, k: string, v: string): void => {
  let set = idx.get(k);
  if (set === undefined) idx.set(k, (set = new Set()));
  set.add(v);
};
const indexRemove = (idx: Map<string, Set<string>>, k: string, v: string): void => {
  const set = idx.get(k);
  if (set === undefined) return;
  set.delete(v);
  if (set.size === 0) idx.delete(k);
};

/** Stores a session's new state and keeps the indexes and expiry heap in step. */
const put = (w: World, key: string, prev: SessionState | undefined, next: SessionState): void => {
  w.sessions.set(key, next);
  const wasLive = prev !== undefined && prev.version > 0 && isLive(prev);
  const nowLive = isLive(next);
  if (wasLive && prev.delegator !== undefined && (!nowLive || prev.delegator !== next.delegator)) {
    indexRemove(w.sessionsByUser, userKeyOf(prev.tenant_id, prev.delegator), key);
  }
  if (nowLive && next.delegator !== undefined) indexAdd(w.sessionsByUser, userKeyOf(next.tenant_id, next.delegator), key);
  if (nowLive) indexAdd(w.sessionsByTenant, next.tenant_id, key);
  else indexRemove(w.sessionsByTenant, next.tenant_id, key);
  const known = new Set(prev?.causes.map((c) => c.event_id));
  for (const c of next.causes) {
    if (c.expires_at !== undefined && !known.has(c.event_id)) heapPush(w.expiries, { at: msOf(c.expires_at), key, event_id: c.event_id, what: 'cause' });
  }
};

type Step = { key: string; state: SessionState };

const apply = (c: Ctx, key: string, prev: SessionState, d: Draft, stamp: Stamp, applied: readonly string[]): void => {
  const r = commit(prev, d, stamp, applied);
  if (r.state === prev) return;
  put(c.w, key, prev, r.state);
  c.touched.add(key);
  if (r.changed) c.out.push({ key, state: r.state });
};

/** Only causes that are still in force at `clock` are added. */
const unexpired = (w: World, expiresAt: string | undefined): boolean => expiresAt === undefined || msOf(expiresAt) > w.clock;

const tenantFreezes = (w: World, tenantId: string, s: Facts): ActiveFreeze[] => {
  const out: ActiveFreeze[] = [];
  for (const r of w.freezes.values()) {
    if (r.tenant_id === tenantId && r.status === 'active' && freezeListedOn(r.freeze.scope, s)) out.push(publicFreeze(r));
  }
  return sortFreezes(out);
};

/**
 * Learns delegator/agent/consent facts. `authoritative` facts (session_started)
 * replace what a decision suggested; others only fill gaps. Whenever a fact is
 * learned, the delegator's revocations and the tenant's freezes are applied.
 */
const learnFacts = (w: World, s: SessionState, d: Draft, learned: Facts, authoritative: boolean, cfg: FoldConfig): Draft => {
  const pick = <K extends keyof Facts>(k: K): Facts[K] => (authoritative ? (learned[k] ?? d[k]) : (d[k] ?? learned[k]));
  const del = pick('delegator');
  const ag = pick('agent');
  const agv = pick('agent_version');
  const cr = pick('consent_ref');
  const next: Draft = {
    ...(del !== undefined && { delegator: del }),
    ...(ag !== undefined && { agent: ag }),
    ...(agv !== undefined && { agent_version: agv }),
    ...(cr !== undefined && { consent_ref: cr }),
    causes: d.causes,
    freezes: d.freezes,
    ended: d.ended,
  };
  const factsChanged = s.version === 0 || next.delegator !== d.delegator || next.agent !== d.agent || next.consent_ref !== d.consent_ref;
  if (!factsChanged) return next;
  const user = next.delegator === undefined ? undefined : w.users.get(userKeyOf(s.tenant_id, next.delegator));
  let causes = next.causes;
  if (next.delegator !== d.delegator || next.consent_ref !== d.consent_ref || s.version === 0) {
    // A new delegator or consent: drop inherited causes that no longer apply, add those that do.
    const wanted = inheritedCauses(next, user, cfg.tiers);
    const fromUser = (c: TrustCause): boolean => c.kind === 'role_revoked' || c.kind === 'consent_revoked';
    const kept = causes.filter((c) => !fromUser(c) || wanted.some((x) => x.kind === c.kind && x.ref === c.ref));
    causes = [...kept, ...wanted.filter((x) => !hasCause(kept, x.kind, x.ref))];
  }
  return { ...next, causes, freezes: tenantFreezes(w, s.tenant_id, next) };
};

const factsFromChain = (chain: readonly ChainLink[], token: Token | undefined): Facts => {
  const h = delegatorOf(chain);
  const a = actingAgentOf(chain);
  return {
    ...(h !== undefined && { delegator: h.id }),
    ...(a !== undefined && { agent: a.id }),
    ...(a?.version !== undefined && { agent_version: a.version }),
    ...(token?.consent_ref !== undefined && { consent_ref: token.consent_ref }),
  };
};

const stampOf = (e: TrustfoldEvent): Stamp => ({ event_id: e.event_id, since: e.occurred_at });

// ---------------------------------------------------------------------------
// Per-kind handlers. Each returns the sessions it changed, in a fixed order.

type Ctx = { w: World; cfg: FoldConfig; out: Step[]; touched: Set<string> };

const sessionOf = (w: World, tenantId: string, sessionId: string): { key: string; s: SessionState } => {
  const key = sessionKeyOf(tenantId, sessionId);
  return { key, s: w.sessions.get(key) ?? emptySession(tenantId, sessionId) };
};

/** Signals addressed to one session; `change` maps its draft to the next draft. */
const onSession = (c: Ctx, e: TrustfoldEvent & { session_id: string }, change: (s: SessionState, d: Draft) => Draft, record = true): void => {
  const { key, s } = sessionOf(c.w, e.tenant_id, e.session_id);
  if (s.applied.includes(e.event_id)) return; // duplicate
  if (s.ended) return; // final
  const applied = record ? remember(s.applied, e.event_id, c.cfg.appliedPerSession) : s.applied;
  // A session seen for the first time gets the tenant's freezes before the event applies.
  const d = s.version === 0 ? learnFacts(c.w, s, draftOf(s), {}, false, c.cfg) : draftOf(s);
  apply(c, key, s, change(s, d), stampOf(e), applied);
};

const addCause = (c: Ctx, d: Draft, cause: TrustCause): Draft => {
  if (!unexpired(c.w, cause.expires_at)) return d;
  if (d.causes.some((x) => x.event_id === cause.event_id && x.kind === cause.kind && x.ref === cause.ref)) return d;
  // A newer raise of the same (kind, ref) replaces the older one.
  return { ...d, causes: [...d.causes.filter((x) => !(x.kind === cause.kind && x.ref === cause.ref)), cause] };
};

const onDecision = (c: Ctx, e: DecisionEvent): void => {
  // Decisions teach session facts only; they are idempotent by construction
  // (gaps are filled once), so their ids are not kept in the dedup memory.
  onSession(c, e, (s, d) => learnFacts(c.w, s, d, factsFromChain(e.chain, e.token), false, c.cfg), false);
};

const onUserSignal = (
  c: Ctx,
  e: SignalOf<'role_revoked' | 'role_granted' | 'consent_revoked' | 'consent_granted'>,
): void => {
  const ukey = userKeyOf(e.tenant_id, e.user_id);
  const prev: UserFacts = c.w.users.get(ukey) ?? {
    tenant_id: e.tenant_id,
    user_id: e.user_id,
    revokedRoles: new Map(),
    consentRevocations: new Map(),
    applied: [],
  };
  if (prev.applied.includes(e.event_id)) return;
  const roles = new Map(prev.revokedRoles);
  const consents = new Map(prev.consentRevocations);
  const stamp = stampOf(e);
  switch (e.kind) {
    case 'role_revoked':
      roles.set(e.role, stamp);
      break;
    case 'role_granted':
      // A grant lifts a revocation made before it only: a late copy of an old grant cannot undo a newer revocation.
      if ((roles.get(e.role)?.since ?? '') <= e.occurred_at) roles.delete(e.role);
      break;
    case 'consent_revoked':
      consents.set(e.consent_ref ?? '*', stamp);
      break;
    case 'consent_granted':
      // Granting one consent lifts that revocation; granting without a ref lifts them all.
      for (const [ref, st] of consents) if ((e.consent_ref === undefined || ref === e.consent_ref) && st.since <= e.occurred_at) consents.delete(ref);
      break;
  }
  c.touched.add(ukey);
  c.w.users.set(ukey, {
    ...prev,
    revokedRoles: roles,
    consentRevocations: consents,
    applied: remember(prev.applied, e.event_id, c.cfg.appliedPerUser),
  });
  const keys = [...(c.w.sessionsByUser.get(ukey) ?? [])].sort();
  for (const key of keys) {
    const s = c.w.sessions.get(key);
    if (s === undefined || !isLive(s)) continue;
    const d = draftOf(s);
    let causes = d.causes;
    switch (e.kind) {
      case 'role_revoked':
        causes = addCause(c, d, { kind: 'role_revoked', ref: e.role, event_id: e.event_id, since: e.occurred_at, tier: c.cfg.tiers.roleRevoked }).causes;
        break;
      case 'role_granted':
        causes = causes.filter((x) => !(x.kind === 'role_revoked' && x.ref === e.role && x.since <= e.occurred_at));
        break;
      case 'consent_revoked': {
        const ref = e.consent_ref ?? '*';
        if (ref === '*' || ref === s.consent_ref) {
          causes = addCause(c, d, { kind: 'consent_revoked', ref, event_id: e.event_id, since: e.occurred_at, tier: c.cfg.tiers.consentRevoked }).causes;
        }
        break;
      }
      case 'consent_granted':
        causes = causes.filter((x) => !(x.kind === 'consent_revoked' && (e.consent_ref === undefined || x.ref === e.consent_ref) && x.since <= e.occurred_at));
        break;
    }
    apply(c, key, s, { ...d, causes }, stamp, s.applied);
  }
};

const refreshTenantFreezes = (c: Ctx, tenantId: string, stamp: Stamp): void => {
  const keys = [...(c.w.sessionsByTenant.get(tenantId) ?? [])].sort();
  for (const key of keys) {
    const s = c.w.sessions.get(key);
    if (s === undefined || !isLive(s)) continue;
    const d = draftOf(s);
    apply(c, key, s, { ...d, freezes: tenantFreezes(c.w, tenantId, s) }, stamp, s.applied);
  }
};

const onFreeze = (c: Ctx, e: SignalOf<'change_freeze_raised' | 'change_freeze_lifted'>): void => {
  const fkey = freezeKeyOf(e.tenant_id, e.freeze_id);
  const prev = c.w.freezes.get(fkey);
  if (prev?.applied.includes(e.event_id)) return;
  c.touched.add(fkey);
  if (e.kind === 'change_freeze_raised') {
    if (!unexpired(c.w, e.expires_at)) return;
    const freeze: FreezeRecord['freeze'] = {
      freeze_id: e.freeze_id,
      scope: { ...e.scope },
      reason: e.reason,
      raised_by: e.raised_by,
      ...(e.ticket !== undefined && { ticket: e.ticket }),
      event_id: e.event_id,
      since: e.occurred_at,
      ...(e.expires_at !== undefined && { expires_at: e.expires_at }),
    };
    c.w.freezes.set(fkey, { tenant_id: e.tenant_id, freeze, status: 'active', applied: remember(prev?.applied ?? [], e.event_id, 8) });
    if (e.expires_at !== undefined) heapPush(c.w.expiries, { at: msOf(e.expires_at), key: fkey, event_id: e.event_id, what: 'freeze' });
  } else {
    if (prev === undefined || prev.status !== 'active') {
      // A lift of a freeze that is not active is still remembered (an unknown
      // one as a lifted placeholder), so its duplicate cannot lift a later raise.
      const freeze: FreezeRecord['freeze'] = prev?.freeze ?? { freeze_id: e.freeze_id, scope: {}, reason: '', event_id: e.event_id, since: e.occurred_at };
      c.w.freezes.set(fkey, { tenant_id: e.tenant_id, freeze, status: prev?.status ?? 'lifted', applied: remember(prev?.applied ?? [], e.event_id, 8) });
      return;
    }
    c.w.freezes.set(fkey, { ...prev, status: 'lifted', applied: remember(prev.applied, e.event_id, 8) });
  }
  refreshTenantFreezes(c, e.tenant_id, stampOf(e));
};

const onSignal = (c: Ctx, e: SignalEvent): void => {
  const tiers = c.cfg.tiers;
  switch (e.kind) {
    case 'session_started':
      return onSession(c, e, (s, d) => learnFacts(c.w, s, d, factsFromChain(e.chain, e.token), true, c.cfg));
    case 'session_ended':
      return onSession(c, e, (_s, d) => ({
        ...d,
        ended: true,
        causes: [...d.causes, { kind: 'session_ended', ref: e.session_id, event_id: e.event_id, since: e.occurred_at, tier: tiers.sessionEnded }],
      }));
    case 'injection_detected':
      return onSession(c, e, (_s, d) =>
        addCause(c, d, {
          kind: 'injection_detected',
          ref: e.signal_id,
          event_id: e.event_id,
          since: e.occurred_at,
          tier: tiers.injection[e.severity],
          ...(e.expires_at !== undefined && { expires_at: e.expires_at }),
        }),
      );
    case 'trust_set':
      // The SOC's word replaces every cause raised before it (by event time),
      // fanned-out ones included; causes raised after it, even if they arrived
      // first, stand, and a later trust_set outranks it. So a late copy of an
      // old reset (a retried send, a replay) cannot wipe newer signals.
      // Freezes are not causes and stay.
      return onSession(c, e, (_s, d) => {
        if (d.causes.some((x) => x.kind === 'trust_set' && x.since > e.occurred_at)) return d;
        const later = d.causes.filter((x) => x.since > e.occurred_at);
        const cause: TrustCause = {
          kind: 'trust_set',
          ref: e.set_by,
          event_id: e.event_id,
          since: e.occurred_at,
          tier: e.tier,
          ...(e.expires_at !== undefined && { expires_at: e.expires_at }),
        };
        return { ...d, causes: unexpired(c.w, e.expires_at) ? [cause, ...later] : later };
      });
    case 'role_revoked':
    case 'role_granted':
    case 'consent_revoked':
    case 'consent_granted':
      return onUserSignal(c, e);
    case 'change_freeze_raised':
    case 'change_freeze_lifted':
      return onFreeze(c, e);
    case 'token_issued':
      if (e.session_id === undefined) return;
      return onSession(
        c,
        { ...e, session_id: e.session_id },
        (s, d) =>
          learnFacts(
            c.w,
            s,
            d,
            { delegator: e.user_id, agent: e.agent_id, ...(e.consent_ref !== undefined && { consent_ref: e.consent_ref }) },
            false,
            c.cfg,
          ),
        false,
      );
    case 'step_up_requested':
    case 'step_up_resolved':
      return; // audit only
    default: {
      const unreachable: never = e;
      return unreachable;
    }
  }
};

// ---------------------------------------------------------------------------
// Time

/** Releases every cause and freeze whose `expires_at` ≤ `until`, in time order. */
const release = (c: Ctx, until: number): void => {
  const h = c.w.expiries;
  for (;;) {
    const top = h[0];
    if (top === undefined || top.at > until) return;
    heapPop(h);
    const stamp: Stamp = { event_id: top.event_id, since: new Date(top.at).toISOString() };
    if (top.what === 'freeze') {
      const r = c.w.freezes.get(top.key);
      if (r === undefined || r.status !== 'active' || r.freeze.event_id !== top.event_id) continue;
      c.w.freezes.set(top.key, { ...r, status: 'expired' });
      c.touched.add(top.key);
      refreshTenantFreezes(c, r.tenant_id, stamp);
      continue;
    }
    const s = c.w.sessions.get(top.key);
    if (s === undefined || s.ended) continue;
    const causes = s.causes.filter((x) => !(x.event_id === top.event_id && x.expires_at !== undefined && msOf(x.expires_at) <= until));
    if (causes.length === s.causes.length) continue;
    // The transition is stamped with the expiry instant and the event that
    // raised the expired cause, so event-time and wall-time ticks agree.
    apply(c, top.key, s, { ...draftOf(s), causes }, stamp, s.applied);
  }
};

const advance = (c: Ctx, now: number): void => {
  if (now <= c.w.clock) return;
  c.w.clock = now;
  release(c, now);
};

const finish = (c: Ctx): Transition => {
  // Several steps may touch one session (expiries + the event); each version is reported.
  return { world: c.w, changed: c.out.map((x) => viewOf(x.state)), touched: [...c.touched] };
};

/** Advances the clock to `now` and releases what expired. */
export const tick = (world: World, now: number, cfg: FoldConfig = DEFAULT_FOLD_CONFIG): Transition => {
  const c: Ctx = { w: world, cfg, out: [], touched: new Set() };
  if (world.wall === null || now > world.wall) world.wall = now;
  advance(c, now);
  return finish(c);
};

/** Whether this event id was already applied to the scope it addresses. */
export const isDuplicate = (w: World, e: TrustfoldEvent): boolean => {
  if (e.type === 'decision') return false; // idempotent by construction
  switch (e.kind) {
    case 'role_revoked':
    case 'role_granted':
    case 'consent_revoked':
    case 'consent_granted':
      return w.users.get(userKeyOf(e.tenant_id, e.user_id))?.applied.includes(e.event_id) ?? false;
    case 'change_freeze_raised':
    case 'change_freeze_lifted':
      return w.freezes.get(freezeKeyOf(e.tenant_id, e.freeze_id))?.applied.includes(e.event_id) ?? false;
    case 'token_issued':
      return false;
    default:
      return w.sessions.get(sessionKeyOf(e.tenant_id, e.session_id))?.applied.includes(e.event_id) ?? false;
  }
};

/**
 * Folds one event: first the clock moves to the event's time (bounded skew),
 * releasing what expired, then the event applies. A duplicate returns the
 * world untouched — not even its clock moves.
 */
/** Signals that loosen trust: they act by event time, so that time may not come from the client alone. */
const LOOSENING: ReadonlySet<string> = new Set(['trust_set', 'role_granted', 'consent_granted', 'change_freeze_lifted']);

/**
 * A loosening signal is dated no later than the broker appended it
 * (`appendedAt`, the record's log-append time): a `trust_set` or a grant
 * dated ahead of its arrival would otherwise outrank (or lift) causes raised
 * after it really arrived — one `trust_set` dated 2099 would pin a session at
 * its tier. Restricting signals keep their own time: dating them ahead only
 * makes them harder to outrank (fail closed). The record's time is part of the
 * log, so a replay clamps exactly as the live run did.
 */
export const clampLoosening = (event: TrustfoldEvent, appendedAt: string | undefined): TrustfoldEvent => {
  if (appendedAt === undefined || event.type !== 'signal' || !LOOSENING.has(event.kind)) return event;
  return msOf(appendedAt) < msOf(event.occurred_at) ? { ...event, occurred_at: appendedAt } : event;
};

/** `appendedAt`: when the broker appended the event's record (ISO time); see `clampLoosening`. */
export const evolve = (world: World, input: TrustfoldEvent, cfg: FoldConfig = DEFAULT_FOLD_CONFIG, appendedAt?: string): Transition => {
  const event = clampLoosening(input, appendedAt);
  if (isDuplicate(world, event)) return { world, changed: [], touched: [] };
  const c: Ctx = { w: world, cfg, out: [], touched: new Set() };
  const t = msOf(event.occurred_at);
  advance(c, world.wall === null ? t : Math.min(t, world.wall + cfg.maxEventSkewMs));
  if (event.type === 'decision') onDecision(c, event);
  else onSignal(c, event);
  return finish(c);
};

/** Folds many events; `changed` lists every version produced, in order. */
export const evolveAll = (world: World, events: Iterable<TrustfoldEvent>, cfg: FoldConfig = DEFAULT_FOLD_CONFIG): Transition => {
  const changed: SessionTrust[] = [];
  const touched = new Set<string>();
  let w = world;
  for (const e of events) {
    const t = evolve(w, e, cfg);
    w = t.world;
    changed.push(...t.changed);
    for (const k of t.touched) touched.add(k);
  }
  return { world: w, changed, touched: [...touched] };
};

// ---------------------------------------------------------------------------
// Snapshots: the world as plain records (the projector's changelog), and back.

export type Snapshot = {
  clock: number;
  wall: number | null;
  sessions: SessionState[];
  users: { tenant_id: string; user_id: string; revokedRoles: [string, Stamp][]; consentRevocations: [string, Stamp][]; applied: string[] }[];
  freezes: FreezeRecord[];
};

// Revocations keep the order they were made in (not sorted): a session that
// starts later inherits them in that order, so a restored world must list them
// exactly as the live one did or its new sessions would differ from a replay.
export const userRecord = (u: UserFacts): Snapshot['users'][number] => ({
  tenant_id: u.tenant_id,
  user_id: u.user_id,
  revokedRoles: [...u.revokedRoles],
  consentRevocations: [...u.consentRevocations],
  applied: [...u.applied],
});

const byKey = <T>(m: Map<string, T>): T[] => [...m.keys()].sort().map((k) => m.get(k) as T);

/** A deterministic, JSON-safe copy of the world (keys sorted). */
export const snapshotWorld = (w: World): Snapshot => ({
  clock: w.clock,
  wall: w.wall,
  sessions: byKey(w.sessions).filter((s) => s.version > 0),
  users: byKey(w.users).map(userRecord),
  freezes: byKey(w.freezes),
});

/** Restores records into a fresh world (or onto one being restored); indexes and expiries are rebuilt. */
export const restoreWorld = (snap: Snapshot): World => {
  const w = initialWorld();
  w.clock = snap.clock;
  w.wall = snap.wall;
  for (const u of snap.users) restoreUser(w, u);
  for (const f of snap.freezes) restoreFreeze(w, f);
  for (const s of snap.sessions) restoreSession(w, s);
  return w;
};

export const restoreSession = (w: World, s: SessionState): void => {
  const key = sessionKeyOf(s.tenant_id, s.session_id);
  const prev = w.sessions.get(key);
  if (prev !== undefined && prev.version >= s.version) return; // never regress
  put(w, key, prev, s);
};

export const restoreUser = (w: World, u: Snapshot['users'][number]): void => {
  w.users.set(userKeyOf(u.tenant_id, u.user_id), {
    tenant_id: u.tenant_id,
    user_id: u.user_id,
    revokedRoles: new Map(u.revokedRoles),
    consentRevocations: new Map(u.consentRevocations),
    applied: [...u.applied],
  });
};

export const restoreFreeze = (w: World, f: FreezeRecord): void => {
  const key = freezeKeyOf(f.tenant_id, f.freeze.freeze_id);
  w.freezes.set(key, f);
  if (f.status === 'active' && f.freeze.expires_at !== undefined) {
    heapPush(w.expiries, { at: msOf(f.freeze.expires_at), key, event_id: f.freeze.event_id, what: 'freeze' });
  }
};
