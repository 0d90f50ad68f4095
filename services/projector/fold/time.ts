// Time in the fold: the clock moves only by an event's time or a tick's `now`,
// releasing every cause and freeze whose `expires_at` has passed.
import { heapPop } from './heap.ts';
import { draftOf, msOf } from './session.ts';
import type { Stamp } from './state.ts';
import { apply, putFreeze, refreshTenantFreezes, type Ctx } from './world.ts';

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
      putFreeze(c.w, top.key, { ...r, status: 'expired' });
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

/** Moves the clock forward to `now` (never back) and releases what expired. */
export const advance = (c: Ctx, now: number): void => {
  if (now <= c.w.clock) return;
  c.w.clock = now;
  release(c, now);
};
