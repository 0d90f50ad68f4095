// A bounded map of the events this instance has seen acknowledged by Kafka,
// keyed by (tenant, event_id) and holding a digest of each one's content. It
// only saves a re-send from being produced twice by the *same* instance; the
// end-to-end guarantee is that every consumer is idempotent by event_id, so
// losing this map on restart, or a retry landing on another instance, is
// harmless. The tenant is part of the key so that one tenant reusing
// another's id cannot make the other's event report as a duplicate and never
// reach Kafka; the digest tells a true re-send from a different event under
// a known id, which is a conflict to report, not a duplicate to hide.

/** `key`: tenantIdKey(tenant, id), when the caller has it already (one string, hashed once). */
export type RecentEntry = { tenant: string; id: string; digest: string; key?: string };

export type RecentIds = {
  /** The digest recorded for (tenant, id), or undefined. A hit moves the entry to the young end. `key`: tenantIdKey(tenant, id), if the caller has it. */
  digestOf(tenant: string, id: string, key?: string): string | undefined;
  addAll(entries: Iterable<RecentEntry>): void;
  readonly size: number;
};

/** Collision-free: the length prefix says where the tenant ends, so no two pairs share a key. */
export const tenantIdKey = (tenant: string, id: string): string => `${tenant.length}:${tenant}:${id}`;

/** Insertion-ordered Map as an LRU. */
export const createRecentIds = (capacity: number): RecentIds => {
  const entries = new Map<string, string>();
  return {
    digestOf: (tenant, id, known) => {
      const key = known ?? tenantIdKey(tenant, id);
      const digest = entries.get(key);
      if (digest === undefined) return undefined;
      entries.delete(key);
      entries.set(key, digest);
      return digest;
    },
    addAll: (batch) => {
      if (capacity <= 0) return;
      for (const e of batch) {
        const key = e.key ?? tenantIdKey(e.tenant, e.id);
        // A new key is one set; a known one moves to the young end.
        const size = entries.size;
        entries.set(key, e.digest);
        if (entries.size === size) {
          entries.delete(key);
          entries.set(key, e.digest);
        }
      }
      // One pass from the old end (deleting while iterating a Map is safe),
      // not a fresh iterator per evicted entry.
      let excess = entries.size - capacity;
      if (excess > 0) {
        for (const oldest of entries.keys()) {
          entries.delete(oldest);
          if (--excess === 0) break;
        }
      }
    },
    get size() {
      return entries.size;
    },
  };
};
