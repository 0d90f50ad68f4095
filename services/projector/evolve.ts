// The trust fold: events in, per-session trust states out — the signal table
// of docs/design.md ("The fold"), one named handler per event kind, in the
// order of that table. No Kafka, no clock, no I/O: time only ever arrives as
// an argument (an event's `occurred_at`, or `tick(world, now)`), so a replay
// agrees with the live run.
//
// Two layers (fold/):
//   - session level (fold/session.ts): `SessionState` values are immutable;
//     every change makes a new object with `version + 1` and `caused_by`;
//   - world level (fold/state.ts, fold/world.ts): the sessions plus the facts
//     that fan out (a user's revoked roles and consents, a tenant's freezes)
//     and the indexes that find the sessions they reach; the world is an owned
//     accumulator, updated in place. Expiry is fold/time.ts over the heap of
//     fold/heap.ts; snapshots and restore are fold/snapshot.ts.
import type { DecisionEvent, SignalEvent, SignalOf, TrustCause, TrustfoldEvent } from '../../schemas/events.ts';
import { DEFAULT_FOLD_CONFIG, type FoldConfig } from './fold/config.ts';
import { draftOf, factsFromChain, isLive, msOf, remember, stampOf } from './fold/session.ts';
import { freezeKeyOf, sessionKeyOf, userKeyOf, type Draft, type FreezeRecord, type SessionState, type Stamp, type Transition, type UserFacts, type World } from './fold/state.ts';
import { advance } from './fold/time.ts';
import { addCause, adoptFacts, apply, contextOf, fillFacts, finish, putFreeze, refreshTenantFreezes, scheduleFreezeExpiry, sessionOf, unexpired, type Ctx } from './fold/world.ts';

export { DEFAULT_FOLD_CONFIG, DEFAULT_TIER_MAPPING, type FoldConfig, type Severity, type TierMapping } from './fold/config.ts';
export { freezeKeyOf, initialWorld, sessionKeyOf, userKeyOf, type FreezeRecord, type SessionState, type Transition, type UserFacts, type World } from './fold/state.ts';
export { freezeListedOn, maxTier, tierOf, viewOf } from './fold/session.ts';
export { restoreFreeze, restoreSession, restoreUser, restoreWorld, snapshotWorld, userRecord, type Snapshot } from './fold/snapshot.ts';

// ---------------------------------------------------------------------------
// Signals addressed to one session

type SessionEvent = TrustfoldEvent & { session_id: string };
type Change = (s: SessionState, d: Draft) => Draft;

/** Applies `change` to the event's session, unless it has ended (final); `applied` is the session's next id memory. */
const changeSession = (c: Ctx, e: SessionEvent, change: Change, applied: (s: SessionState) => readonly string[]): void => {
  const { key, s } = sessionOf(c.w, e.tenant_id, e.session_id);
  if (s.ended) return; // final
  // A session seen for the first time gets the tenant's freezes before the event applies.
  const d = s.version === 0 ? fillFacts(c, s, draftOf(s), {}) : draftOf(s);
  apply(c, key, s, change(s, d), stampOf(e), applied(s));
};

/** A signal whose id the session remembers, so a duplicate is recognised. */
const onSessionSignal = (c: Ctx, e: SessionEvent, change: Change): void =>
  changeSession(c, e, change, (s) => remember(s.applied, e.event_id, c.cfg.appliedPerSession));

/** Facts suggested by a decision or a token: idempotent by construction (gaps are filled once), so their ids are not kept. */
const onSuggestedFacts = (c: Ctx, e: SessionEvent, change: Change): void => changeSession(c, e, change, (s) => s.applied);

const onSessionStarted = (c: Ctx, e: SignalOf<'session_started'>): void =>
  onSessionSignal(c, e, (s, d) => adoptFacts(c, s, d, factsFromChain(e.chain, e.token)));

const onSessionEnded = (c: Ctx, e: SignalOf<'session_ended'>): void =>
  onSessionSignal(c, e, (_s, d) => ({
    ...d,
    ended: true,
    causes: [...d.causes, { kind: 'session_ended', ref: e.session_id, event_id: e.event_id, since: e.occurred_at, tier: c.cfg.tiers.sessionEnded }],
  }));

const onInjectionDetected = (c: Ctx, e: SignalOf<'injection_detected'>): void =>
  onSessionSignal(c, e, (_s, d) =>
    addCause(c, d, {
      kind: 'injection_detected',
      ref: e.signal_id,
      event_id: e.event_id,
      since: e.occurred_at,
      tier: c.cfg.tiers.injection[e.severity],
      ...(e.expires_at !== undefined && { expires_at: e.expires_at }),
    }),
  );

/**
 * The SOC's word replaces every cause raised before it (by event time),
 * fanned-out ones included; causes raised after it, even if they arrived
 * first, stand, and a later trust_set outranks it. So a late copy of an old
 * reset (a retried send, a replay) cannot wipe newer signals. Freezes are not
 * causes and stay.
 */
const onTrustSet = (c: Ctx, e: SignalOf<'trust_set'>): void =>
  onSessionSignal(c, e, (_s, d) => {
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

// ---------------------------------------------------------------------------
// Roles and consent: a user's facts, fanned out to the user's live sessions

type UserSignal = SignalOf<'role_revoked' | 'role_granted' | 'consent_revoked' | 'consent_granted'>;
type Revocations = { roles: Map<string, Stamp>; consents: Map<string, Stamp> };

/**
 * Updates the user's facts with `learn`, then gives each live session of the
 * user (in key order) the causes `change` returns.
 */
const fanOutToUser = (
  c: Ctx,
  e: UserSignal,
  learn: (r: Revocations, stamp: Stamp) => void,
  change: (s: SessionState, d: Draft) => readonly TrustCause[],
): void => {
  const ukey = userKeyOf(e.tenant_id, e.user_id);
  const prev: UserFacts = c.w.users.get(ukey) ?? { tenant_id: e.tenant_id, user_id: e.user_id, revokedRoles: new Map(), consentRevocations: new Map(), applied: [] };
  const r: Revocations = { roles: new Map(prev.revokedRoles), consents: new Map(prev.consentRevocations) };
  const stamp = stampOf(e);
  learn(r, stamp);
  c.touched.add(ukey);
  c.w.users.set(ukey, { ...prev, revokedRoles: r.roles, consentRevocations: r.consents, applied: remember(prev.applied, e.event_id, c.cfg.appliedPerUser) });
  const keys = [...(c.w.sessionsByUser.get(ukey) ?? [])].sort();
  for (const key of keys) {
    const s = c.w.sessions.get(key);
    if (s === undefined || !isLive(s)) continue;
    const d = draftOf(s);
    apply(c, key, s, { ...d, causes: change(s, d) }, stamp, s.applied);
  }
};

const onRoleRevoked = (c: Ctx, e: SignalOf<'role_revoked'>): void =>
  fanOutToUser(
    c,
    e,
    (r, stamp) => void r.roles.set(e.role, stamp),
    (_s, d) => addCause(c, d, { kind: 'role_revoked', ref: e.role, event_id: e.event_id, since: e.occurred_at, tier: c.cfg.tiers.roleRevoked }).causes,
  );

/** A grant lifts a revocation made before it only: a late copy of an old grant cannot undo a newer revocation. */
const onRoleGranted = (c: Ctx, e: SignalOf<'role_granted'>): void =>
  fanOutToUser(
    c,
    e,
    (r) => {
      if ((r.roles.get(e.role)?.since ?? '') <= e.occurred_at) r.roles.delete(e.role);
    },
    (_s, d) => d.causes.filter((x) => !(x.kind === 'role_revoked' && x.ref === e.role && x.since <= e.occurred_at)),
  );

/** A revocation with a ref reaches the sessions whose token carries it; without one ('*'), all of the user's. */
const onConsentRevoked = (c: Ctx, e: SignalOf<'consent_revoked'>): void => {
  const ref = e.consent_ref ?? '*';
  fanOutToUser(
    c,
    e,
    (r, stamp) => void r.consents.set(ref, stamp),
    (s, d) =>
      ref === '*' || ref === s.consent_ref
        ? addCause(c, d, { kind: 'consent_revoked', ref, event_id: e.event_id, since: e.occurred_at, tier: c.cfg.tiers.consentRevoked }).causes
        : d.causes,
  );
};

/** Granting one consent lifts that revocation; granting without a ref lifts them all (made before it). */
const onConsentGranted = (c: Ctx, e: SignalOf<'consent_granted'>): void =>
  fanOutToUser(
    c,
    e,
    (r) => {
      for (const [ref, st] of r.consents) if ((e.consent_ref === undefined || ref === e.consent_ref) && st.since <= e.occurred_at) r.consents.delete(ref);
    },
    (_s, d) => d.causes.filter((x) => !(x.kind === 'consent_revoked' && (e.consent_ref === undefined || x.ref === e.consent_ref) && x.since <= e.occurred_at)),
  );

// ---------------------------------------------------------------------------
// Freezes: a tenant's facts, listed on its live sessions

const onFreezeRaised = (c: Ctx, e: SignalOf<'change_freeze_raised'>): void => {
  const fkey = freezeKeyOf(e.tenant_id, e.freeze_id);
  const prev = c.w.freezes.get(fkey);
  c.touched.add(fkey);
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
  putFreeze(c.w, fkey, { tenant_id: e.tenant_id, freeze, status: 'active', applied: remember(prev?.applied ?? [], e.event_id, c.cfg.appliedPerFreeze) });
  if (e.expires_at !== undefined) scheduleFreezeExpiry(c.w, fkey, e.event_id, e.expires_at);
  refreshTenantFreezes(c, e.tenant_id, stampOf(e));
};

const onFreezeLifted = (c: Ctx, e: SignalOf<'change_freeze_lifted'>): void => {
  const fkey = freezeKeyOf(e.tenant_id, e.freeze_id);
  const prev = c.w.freezes.get(fkey);
  c.touched.add(fkey);
  if (prev === undefined || prev.status !== 'active') {
    // A lift of a freeze that is not active is still remembered (an unknown
    // one as a lifted placeholder), so its duplicate cannot lift a later raise.
    const freeze: FreezeRecord['freeze'] = prev?.freeze ?? { freeze_id: e.freeze_id, scope: {}, reason: '', event_id: e.event_id, since: e.occurred_at };
    putFreeze(c.w, fkey, { tenant_id: e.tenant_id, freeze, status: prev?.status ?? 'lifted', applied: remember(prev?.applied ?? [], e.event_id, c.cfg.appliedPerFreeze) });
    return;
  }
  putFreeze(c.w, fkey, { ...prev, status: 'lifted', applied: remember(prev.applied, e.event_id, c.cfg.appliedPerFreeze) });
  refreshTenantFreezes(c, e.tenant_id, stampOf(e));
};

// ---------------------------------------------------------------------------
// Tokens and decisions: facts suggested, never authoritative

const onTokenIssued = (c: Ctx, e: SignalOf<'token_issued'>): void => {
  if (e.session_id === undefined) return;
  const learned = { delegator: e.user_id, agent: e.agent_id, ...(e.consent_ref !== undefined && { consent_ref: e.consent_ref }) };
  onSuggestedFacts(c, { ...e, session_id: e.session_id }, (s, d) => fillFacts(c, s, d, learned));
};

const onDecision = (c: Ctx, e: DecisionEvent): void => onSuggestedFacts(c, e, (s, d) => fillFacts(c, s, d, factsFromChain(e.chain, e.token)));

// ---------------------------------------------------------------------------
// The table

const onSignal = (c: Ctx, e: SignalEvent): void => {
  switch (e.kind) {
    case 'session_started':
      return onSessionStarted(c, e);
    case 'session_ended':
      return onSessionEnded(c, e);
    case 'injection_detected':
      return onInjectionDetected(c, e);
    case 'trust_set':
      return onTrustSet(c, e);
    case 'role_revoked':
      return onRoleRevoked(c, e);
    case 'role_granted':
      return onRoleGranted(c, e);
    case 'consent_revoked':
      return onConsentRevoked(c, e);
    case 'consent_granted':
      return onConsentGranted(c, e);
    case 'change_freeze_raised':
      return onFreezeRaised(c, e);
    case 'change_freeze_lifted':
      return onFreezeLifted(c, e);
    case 'step_up_requested':
    case 'step_up_resolved':
      return; // audit only
    case 'token_issued':
      return onTokenIssued(c, e);
    default: {
      const unreachable: never = e;
      return unreachable;
    }
  }
};

// ---------------------------------------------------------------------------
// Duplicates: each scope (session, user, freeze) remembers the ids applied to it

/** The ids already applied to the scope an event addresses, if it has one. */
const appliedIn = (w: World, e: TrustfoldEvent): readonly string[] | undefined => {
  if (e.type === 'decision') return w.sessions.get(sessionKeyOf(e.tenant_id, e.session_id))?.applied;
  switch (e.kind) {
    case 'role_revoked':
    case 'role_granted':
    case 'consent_revoked':
    case 'consent_granted':
      return w.users.get(userKeyOf(e.tenant_id, e.user_id))?.applied;
    case 'change_freeze_raised':
    case 'change_freeze_lifted':
      return w.freezes.get(freezeKeyOf(e.tenant_id, e.freeze_id))?.applied;
    case 'token_issued':
      return e.session_id === undefined ? undefined : w.sessions.get(sessionKeyOf(e.tenant_id, e.session_id))?.applied;
    default:
      return w.sessions.get(sessionKeyOf(e.tenant_id, e.session_id))?.applied;
  }
};

/** Decisions and `token_issued` only suggest facts (idempotent by construction): their ids are not remembered. */
const remembered = (e: TrustfoldEvent): boolean => e.type === 'signal' && e.kind !== 'token_issued';

/** Whether this event id was already applied to the scope it addresses. */
export const isDuplicate = (w: World, e: TrustfoldEvent): boolean => remembered(e) && (appliedIn(w, e)?.includes(e.event_id) ?? false);

// ---------------------------------------------------------------------------
// Entry points

/** Advances the clock to `now` and releases what expired. */
export const tick = (world: World, now: number, cfg: FoldConfig = DEFAULT_FOLD_CONFIG): Transition => {
  const c = contextOf(world, cfg);
  if (world.wall === null || now > world.wall) world.wall = now;
  advance(c, now);
  return finish(c);
};

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

/**
 * Folds one event: first the clock moves to the event's time (bounded skew),
 * releasing what expired, then the event applies. A duplicate returns the
 * world untouched — not even its clock moves. A decision or `token_issued`
 * whose id its session already applied (ids shared across kinds) moves the
 * clock and changes nothing else.
 * `appendedAt`: when the broker appended the event's record (ISO time); see `clampLoosening`.
 */
export const evolve = (world: World, input: TrustfoldEvent, cfg: FoldConfig = DEFAULT_FOLD_CONFIG, appendedAt?: string): Transition => {
  const event = clampLoosening(input, appendedAt);
  const seen = appliedIn(world, event)?.includes(event.event_id) ?? false;
  if (seen && remembered(event)) return { world, changed: [], touched: [] };
  const c = contextOf(world, cfg);
  const t = msOf(event.occurred_at);
  advance(c, world.wall === null ? t : Math.min(t, world.wall + cfg.maxEventSkewMs));
  if (!seen) {
    if (event.type === 'decision') onDecision(c, event);
    else onSignal(c, event);
  }
  return finish(c);
};

/** Folds many events; `changed` lists every version produced, in order. */
export const evolveAll = (world: World, events: Iterable<TrustfoldEvent>, cfg: FoldConfig = DEFAULT_FOLD_CONFIG): Transition => {
  const changed: Transition['changed'] = [];
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
