// World plumbing: storing a session's next state with its indexes and expiries
// in step, the step context every handler writes through, and the rules that
// apply the fanned-out facts (a delegator's revocations, a tenant's freezes)
// to one session.
import type { ActiveFreeze, TrustCause } from '../../../schemas/events.ts';
import type { FoldConfig } from './config.ts';
import { heapPush } from './heap.ts';
import { commit, draftOf, emptySession, freezeListedOn, hasCause, inheritedCauses, isLive, msOf, preferFacts, publicFreeze, sortFreezes, viewOf } from './session.ts';
import { sessionKeyOf, userKeyOf, type Draft, type Facts, type FreezeRecord, type SessionState, type Stamp, type Transition, type World } from './state.ts';

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
export const putSession = (w: World, key: string, prev: SessionState | undefined, next: SessionState): void => {
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

/** Schedules the release of an active freeze at its `expires_at`. */
export const scheduleFreezeExpiry = (w: World, key: string, eventId: string, expiresAt: string): void =>
  heapPush(w.expiries, { at: msOf(expiresAt), key, event_id: eventId, what: 'freeze' });

/** Stores a freeze record and keeps the tenant's index of active freezes in step. */
export const putFreeze = (w: World, key: string, record: FreezeRecord): void => {
  w.freezes.set(key, record);
  if (record.status === 'active') indexAdd(w.activeFreezesByTenant, record.tenant_id, key);
  else indexRemove(w.activeFreezesByTenant, record.tenant_id, key);
};

/** The tenant's active freezes listed on a session with these facts, by freeze_id. */
export const tenantFreezes = (w: World, tenantId: string, s: Facts): ActiveFreeze[] => {
  const out: ActiveFreeze[] = [];
  for (const key of w.activeFreezesByTenant.get(tenantId) ?? []) {
    const r = w.freezes.get(key);
    if (r !== undefined && freezeListedOn(r.freeze.scope, s)) out.push(publicFreeze(r));
  }
  return sortFreezes(out);
};

type Step = { key: string; state: SessionState };

/** One `evolve` or `tick` in progress: the world, the versions produced and the records written. */
export type Ctx = { w: World; cfg: FoldConfig; out: Step[]; touched: Set<string> };

export const contextOf = (w: World, cfg: FoldConfig): Ctx => ({ w, cfg, out: [], touched: new Set() });

/** Several steps may touch one session (expiries + the event); each version is reported. */
export const finish = (c: Ctx): Transition => ({ world: c.w, changed: c.out.map((x) => viewOf(x.state)), touched: [...c.touched] });

/** Commits a session's draft, recording the key as touched and a visible change as a new version. */
export const apply = (c: Ctx, key: string, prev: SessionState, d: Draft, stamp: Stamp, applied: readonly string[]): void => {
  const r = commit(prev, d, stamp, applied);
  if (r.state === prev) return;
  putSession(c.w, key, prev, r.state);
  c.touched.add(key);
  if (r.changed) c.out.push({ key, state: r.state });
};

/** Only causes that are still in force at `clock` are added. */
export const unexpired = (w: World, expiresAt: string | undefined): boolean => expiresAt === undefined || msOf(expiresAt) > w.clock;

/**
 * A draft with the facts `next`. Whenever a fact changed (or the session is
 * new), the delegator's revocations and the tenant's freezes are applied anew.
 */
const settleFacts = (c: Ctx, s: SessionState, d: Draft, facts: Facts): Draft => {
  const next: Draft = { ...facts, causes: d.causes, freezes: d.freezes, ended: d.ended };
  const factsChanged = s.version === 0 || next.delegator !== d.delegator || next.agent !== d.agent || next.consent_ref !== d.consent_ref;
  if (!factsChanged) return next;
  const user = next.delegator === undefined ? undefined : c.w.users.get(userKeyOf(s.tenant_id, next.delegator));
  let causes = next.causes;
  if (next.delegator !== d.delegator || next.consent_ref !== d.consent_ref || s.version === 0) {
    // A new delegator or consent: drop inherited causes that no longer apply, add those that do.
    const wanted = inheritedCauses(next, user, c.cfg.tiers);
    const fromUser = (x: TrustCause): boolean => x.kind === 'role_revoked' || x.kind === 'consent_revoked';
    const kept = causes.filter((x) => !fromUser(x) || wanted.some((y) => y.kind === x.kind && y.ref === x.ref));
    causes = [...kept, ...wanted.filter((x) => !hasCause(kept, x.kind, x.ref))];
  }
  return { ...next, causes, freezes: tenantFreezes(c.w, s.tenant_id, next) };
};

/** Authoritative facts (`session_started`): they replace what a decision suggested. */
export const adoptFacts = (c: Ctx, s: SessionState, d: Draft, learned: Facts): Draft => settleFacts(c, s, d, preferFacts(learned, d));

/** Suggested facts (a decision, a `token_issued`): they only fill gaps. */
export const fillFacts = (c: Ctx, s: SessionState, d: Draft, learned: Facts): Draft => settleFacts(c, s, d, preferFacts(d, learned));

/** Adds a cause unless it has expired or is already there; a newer raise of the same (kind, ref) replaces the older one. */
export const addCause = (c: Ctx, d: Draft, cause: TrustCause): Draft => {
  if (!unexpired(c.w, cause.expires_at)) return d;
  if (d.causes.some((x) => x.event_id === cause.event_id && x.kind === cause.kind && x.ref === cause.ref)) return d;
  return { ...d, causes: [...d.causes.filter((x) => !(x.kind === cause.kind && x.ref === cause.ref)), cause] };
};

export const sessionOf = (w: World, tenantId: string, sessionId: string): { key: string; s: SessionState } => {
  const key = sessionKeyOf(tenantId, sessionId);
  return { key, s: w.sessions.get(key) ?? emptySession(tenantId, sessionId) };
};

/** Lists the tenant's active freezes anew on each of its live sessions, in key order. */
export const refreshTenantFreezes = (c: Ctx, tenantId: string, stamp: Stamp): void => {
  const keys = [...(c.w.sessionsByTenant.get(tenantId) ?? [])].sort();
  for (const key of keys) {
    const s = c.w.sessions.get(key);
    if (s === undefined || !isLive(s)) continue;
    const d = draftOf(s);
    apply(c, key, s, { ...d, freezes: tenantFreezes(c.w, tenantId, s) }, stamp, s.applied);
  }
};
