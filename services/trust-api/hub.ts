// Trust changes numbered for the SSE stream. Each change a view accepts gets
// the next sequence number of this process; the id a client sees is
// `<epoch>-<seq>`, the epoch being random per process start. The last
// `capacity` changes are kept in a ring, so a client that reconnects with
// `Last-Event-ID` inside the ring gets exactly what it missed; one from another
// process or from too long ago gets a fresh snapshot of the current states
// instead (`resumed: false`) — correct, only not incremental.
import { randomBytes } from 'node:crypto';
import type { SessionTrust } from '../../schemas/events.ts';

export type HubEntry = { seq: number; id: string; state: SessionTrust };

export type TrustHub = {
  readonly epoch: string;
  /** Numbers and stores one change; listeners get it synchronously. */
  publish(state: SessionTrust): HubEntry;
  /** The entries after `lastEventId`, or undefined when it cannot be resumed from this ring. */
  since(lastEventId: string): HubEntry[] | undefined;
  /** The id of the newest entry (or `<epoch>-0`). */
  headId(): string;
  listen(fn: (e: HubEntry) => void): () => void;
};

export const createTrustHub = (capacity = 10_000, epoch = randomBytes(4).toString('hex')): TrustHub => {
  const ring: (HubEntry | undefined)[] = new Array<HubEntry | undefined>(capacity);
  let seq = 0;
  const listeners = new Set<(e: HubEntry) => void>();
  const idOf = (n: number): string => `${epoch}-${n}`;
  return {
    epoch,
    publish(state) {
      seq++;
      const entry: HubEntry = { seq, id: idOf(seq), state };
      ring[seq % capacity] = entry;
      for (const l of listeners) l(entry);
      return entry;
    },
    since(lastEventId) {
      const m = /^([0-9a-f]+)-(\d+)$/.exec(lastEventId.trim());
      if (m === null || m[1] !== epoch) return undefined;
      const from = Number(m[2]);
      if (!Number.isSafeInteger(from) || from > seq) return undefined;
      const oldest = Math.max(1, seq - capacity + 1);
      if (from + 1 < oldest) return undefined; // fell out of the ring
      const out: HubEntry[] = [];
      for (let n = from + 1; n <= seq; n++) {
        const e = ring[n % capacity];
        if (e !== undefined && e.seq === n) out.push(e);
      }
      return out;
    },
    headId: () => idOf(seq),
    listen(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
};
