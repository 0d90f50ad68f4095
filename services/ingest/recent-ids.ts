// A bounded set of event ids this instance has seen acknowledged by Kafka.
// It only saves a re-send from being produced twice by the *same* instance;
// the end-to-end guarantee is that every consumer is idempotent by event_id
// (the projector's fold and the audit sink both dedupe), so losing this set on
// restart, or a retry landing on another instance, is harmless.

export type RecentIds = {
  has(id: string): boolean;
  addAll(ids: Iterable<string>): void;
  readonly size: number;
};

/** Insertion-ordered Map as an LRU: a hit moves the id to the young end. */
export const createRecentIds = (capacity: number): RecentIds => {
  const ids = new Map<string, true>();
  return {
    has: (id) => {
      if (!ids.has(id)) return false;
      ids.delete(id);
      ids.set(id, true);
      return true;
    },
    addAll: (batch) => {
      if (capacity <= 0) return;
      for (const id of batch) {
        ids.delete(id);
        ids.set(id, true);
      }
      // One pass from the old end (deleting while iterating a Map is safe),
      // not a fresh iterator per evicted id.
      let excess = ids.size - capacity;
      if (excess > 0) {
        for (const oldest of ids.keys()) {
          ids.delete(oldest);
          if (--excess === 0) break;
        }
      }
    },
    get size() {
      return ids.size;
    },
  };
};
