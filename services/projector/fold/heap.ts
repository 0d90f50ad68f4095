// The min-heap of pending expiries, ordered by time, then key, then event id:
// a total order, so equal instants release in the same order on every run.
import type { Expiry } from './state.ts';

const before = (a: Expiry, b: Expiry): boolean =>
  a.at !== b.at ? a.at < b.at : a.key !== b.key ? a.key < b.key : a.event_id < b.event_id;

export const heapPush = (h: Expiry[], x: Expiry): void => {
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

export const heapPop = (h: Expiry[]): Expiry | undefined => {
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
