// The live sessions list: the latest state of each session as the trust
// stream pushes them, and the filters and order the table shows them in.
import { TIER_ORDER, type SessionTrust, type Tier } from './types.ts';

export const sessionKey = (s: { tenant_id: string; session_id: string }): string => JSON.stringify([s.tenant_id, s.session_id]);

export type LiveStore = Map<string, SessionTrust>;

/**
 * Keeps `s` when it is newer than what the store has for its session (a
 * replayed or out-of-order push is ignored); true when the store changed.
 */
export const applyState = (store: LiveStore, s: SessionTrust): boolean => {
  const key = sessionKey(s);
  const had = store.get(key);
  if (had !== undefined && had.version >= s.version) return false;
  store.set(key, s);
  return true;
};

export type LiveFilter = { tier?: Tier | undefined; delegator?: string | undefined; agent?: string | undefined; session?: string | undefined; ended?: boolean | undefined };

const has = (value: string | undefined, wanted: string | undefined): boolean =>
  wanted === undefined || wanted === '' || (value ?? '').toLowerCase().includes(wanted.trim().toLowerCase());

export const matchesFilter = (s: SessionTrust, f: LiveFilter): boolean =>
  (f.tier === undefined || s.tier === f.tier) &&
  (f.ended === true || !s.ended) &&
  has(s.delegator, f.delegator) &&
  has(s.agent, f.agent) &&
  has(s.session_id, f.session);

const rank = (t: Tier): number => TIER_ORDER.indexOf(t);

export type LiveView = { rows: SessionTrust[]; matching: number; counts: Record<Tier, number> };

/**
 * The rows to draw: the first `limit` matches — worst tier first, then the
 * most recently changed, then by tenant and id (a stable order) — how many
 * match in all, and tier counts of the set before the tier filter.
 */
export const liveView = (store: Iterable<SessionTrust>, f: LiveFilter, limit: number): LiveView => {
  const counts = Object.fromEntries(TIER_ORDER.map((t) => [t, 0])) as Record<Tier, number>;
  const all: SessionTrust[] = [];
  const { tier, ...rest } = f;
  for (const s of store) {
    if (!matchesFilter(s, rest)) continue;
    counts[s.tier]++;
    if (tier === undefined || s.tier === tier) all.push(s);
  }
  // Keys computed once per session, not once per comparison: 10 000 rows re-sort while a snapshot streams in.
  const keyed = all.map((s) => ({ s, r: rank(s.tier), t: Date.parse(s.updated_at) }));
  keyed.sort((a, b) => b.r - a.r || b.t - a.t || a.s.tenant_id.localeCompare(b.s.tenant_id) || a.s.session_id.localeCompare(b.s.session_id));
  return { rows: keyed.slice(0, limit).map((k) => k.s), matching: all.length, counts };
};
