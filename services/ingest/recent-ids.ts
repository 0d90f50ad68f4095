// A bounded map of the events this instance has seen acknowledged by Kafka,
// keyed by (tenant, event_id) and holding a digest of each one's content. It
// only saves a re-send from being produced twice by the *same* instance; the
// end-to-end guarantee is that every consumer is idempotent by event_id, so
// losing this map on restart, or a retry landing on another instance, is
// harmless. The tenant is part of the key so that one tenant reusing
// another's id cannot make the other's event report as a duplicate and never
// reach Kafka; the digest tells a true re-send from a different event under
// a known id, which is a conflict to report, not a duplicate to hide.
//
// The map holds no string per entry: at 100 000 entries a Map of string keys
// and digests is tens of megabytes the major GC marks over and over. Here a
// key is the first 128 bits of SHA-256(tenantIdKey(tenant, id)) and a digest
// its 256 bits, both in fixed-size typed arrays (their backing stores are
// not scanned by the GC): an open-addressing table of slot numbers over a
// doubly linked list of slots in least-recently-used order.
//
// Why 128 bits of SHA-256 stand for the pair: a false "duplicate" needs two
// different pairs with the same 128 bits. SHA-256 is a cryptographic hash,
// so nobody can craft such pairs faster than by trying (a 2^128 search for a
// given key, 2^64 for any two), and by chance the odds are at most
// n·m / 2^128 for n lookups against m cached keys — below 10^-20 after 10^12
// lookups against 100 000 entries. The same argument covers digests (256
// bits, or SHA-256 of a digest that is not itself one, see digestWords).

import { hash } from 'node:crypto';

/** `key`: tenantIdKey(tenant, id), when the caller has it already (one string, hashed once). */
export type RecentEntry = { tenant: string; id: string; digest: string; key?: string };

/** 32-bit words of a key: the first 128 bits of SHA-256(tenantIdKey(tenant, id)). */
export const KEY_WORDS = 4;
/** 32-bit words of a digest: 256 bits. */
export const DIGEST_WORDS = 8;

export type RecentIds = {
  /** The digest recorded for (tenant, id), or undefined. A hit moves the entry to the young end. `key`: tenantIdKey(tenant, id), if the caller has it. */
  digestOf(tenant: string, id: string, key?: string): string | undefined;
  addAll(entries: Iterable<RecentEntry>): void;
  /**
   * The slot of the key at `keys[k .. k + KEY_WORDS)`, or -1. A hit moves the
   * entry to the young end. The slot is good until the next add.
   */
  find(keys: Int32Array, k: number): number;
  /** Whether the slot's digest is the one at `digests[d .. d + DIGEST_WORDS)`. */
  sameDigest(slot: number, digests: Int32Array, d: number): boolean;
  /**
   * Records `count` entries, the i-th with its key at KEY_WORDS·i of `keys`
   * and its digest at DIGEST_WORDS·i of `digests`, in that order, as addAll
   * would. digestOf gives such a digest back as the base64url of its words.
   */
  addColumns(keys: Int32Array, digests: Int32Array, count: number): void;
  readonly size: number;
};

/** Collision-free: the length prefix says where the tenant ends, so no two pairs share a key. */
export const tenantIdKey = (tenant: string, id: string): string => `${tenant.length}:${tenant}:${id}`;

/** Writes the key of (tenant, id) at `into[at .. at + KEY_WORDS)`. `key`: tenantIdKey(tenant, id), if the caller has it. */
export const writeRecentKey = (tenant: string, id: string, into: Int32Array, at: number, key?: string): void => {
  const h = hash('sha256', key ?? tenantIdKey(tenant, id), 'buffer');
  for (let w = 0; w < KEY_WORDS; w++) into[at + w] = h.readInt32LE(4 * w);
};

/** Writes a raw 32-byte digest at `into[at .. at + DIGEST_WORDS)`. */
export const writeDigestBytes = (digest: Uint8Array, into: Int32Array, at: number): void => {
  const b = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
  for (let w = 0; w < DIGEST_WORDS; w++) into[at + w] = b.readInt32LE(4 * w);
};

const CANONICAL = /^[A-Za-z0-9_-]{43}$/;

/**
 * A digest string → its words; true when the string is the base64url form of
 * 32 bytes (what ingest computes), whose words are those bytes and which
 * digestOf gives back from them. Any other string is stood for by its own
 * SHA-256: two different strings get the same words only by a collision.
 */
export const writeDigestWords = (digest: string, into: Int32Array, at: number): boolean => {
  if (CANONICAL.test(digest)) {
    const b = Buffer.from(digest, 'base64url');
    if (b.length === 32 && b.toString('base64url') === digest) {
      writeDigestBytes(b, into, at);
      return true;
    }
  }
  writeDigestBytes(hash('sha256', digest, 'buffer'), into, at);
  return false;
};

const EMPTY = -1;

/** Least-recently-used: a hit or a re-add moves an entry to the young end; beyond `capacity` the oldest goes. */
export const createRecentIds = (capacity: number): RecentIds => {
  const cap = Math.max(0, Math.floor(capacity));
  const keys = new Int32Array(cap * KEY_WORDS);
  const digests = new Int32Array(cap * DIGEST_WORDS);
  // The LRU list: `older`/`younger` per slot; `oldest`, `youngest` its ends.
  const older = new Int32Array(cap);
  const younger = new Int32Array(cap);
  let oldest = EMPTY;
  let youngest = EMPTY;
  let size = 0;
  // Linear probing over a power-of-two table at most half full, with
  // deletion by backward shift (no tombstones). A key's words are SHA-256
  // output, so its first word is as good a hash as any.
  let bits = 1;
  while (1 << bits < 2 * cap) bits++;
  const mask = (1 << bits) - 1;
  const table = new Int32Array(mask + 1).fill(EMPTY);
  // Digest strings that are not base64url of 32 bytes (tests, markers), by slot, so digestOf can give them back.
  const others = new Map<number, string>();

  const home = (firstWord: number): number => firstWord & mask;
  const sameKey = (slot: number, from: Int32Array, k: number): boolean => {
    const s = slot * KEY_WORDS;
    return keys[s] === from[k] && keys[s + 1] === from[k + 1] && keys[s + 2] === from[k + 2] && keys[s + 3] === from[k + 3];
  };
  /** The table position holding the key, or -1. */
  const position = (from: Int32Array, k: number): number => {
    for (let p = home(from[k] ?? 0); ; p = (p + 1) & mask) {
      const slot = table[p] ?? EMPTY;
      if (slot === EMPTY) return -1;
      if (sameKey(slot, from, k)) return p;
    }
  };
  const unlink = (slot: number): void => {
    const o = older[slot] ?? EMPTY;
    const y = younger[slot] ?? EMPTY;
    if (o === EMPTY) oldest = y;
    else younger[o] = y;
    if (y === EMPTY) youngest = o;
    else older[y] = o;
  };
  const linkYoungest = (slot: number): void => {
    older[slot] = youngest;
    younger[slot] = EMPTY;
    if (youngest === EMPTY) oldest = slot;
    else younger[youngest] = slot;
    youngest = slot;
  };
  const touch = (slot: number): void => {
    if (slot === youngest) return;
    unlink(slot);
    linkYoungest(slot);
  };
  /** Empties table position `p`, shifting back the entries of its probe run that would no longer be found. */
  const removeAt = (p: number): void => {
    let hole = p;
    for (let q = (p + 1) & mask; ; q = (q + 1) & mask) {
      const slot = table[q] ?? EMPTY;
      if (slot === EMPTY) break;
      const h = home(keys[slot * KEY_WORDS] ?? 0);
      // `slot` may fill the hole unless its home lies cyclically in (hole, q].
      if (((q - h) & mask) >= ((q - hole) & mask)) {
        table[hole] = slot;
        hole = q;
      }
    }
    table[hole] = EMPTY;
  };
  // Word by word: a subarray per copy would be a heap object per entry.
  const setDigest = (slot: number, from: Int32Array, d: number): void => {
    const s = slot * DIGEST_WORDS;
    for (let w = 0; w < DIGEST_WORDS; w++) digests[s + w] = from[d + w] ?? 0;
  };
  /** Records one entry; a known key takes the new digest and moves to the young end. Returns its slot. */
  const put = (fromKeys: Int32Array, k: number, fromDigests: Int32Array, d: number): number => {
    const at = position(fromKeys, k);
    if (at !== -1) {
      const slot = table[at] ?? EMPTY;
      setDigest(slot, fromDigests, d);
      if (others.size > 0) others.delete(slot);
      touch(slot);
      return slot;
    }
    let slot: number;
    if (size < cap) slot = size++;
    else {
      // Full: the oldest entry's slot is reused.
      slot = oldest;
      removeAt(position(keys, slot * KEY_WORDS));
      unlink(slot);
      if (others.size > 0) others.delete(slot);
    }
    const s = slot * KEY_WORDS;
    for (let w = 0; w < KEY_WORDS; w++) keys[s + w] = fromKeys[k + w] ?? 0;
    setDigest(slot, fromDigests, d);
    let p = home(fromKeys[k] ?? 0);
    while (table[p] !== EMPTY) p = (p + 1) & mask;
    table[p] = slot;
    linkYoungest(slot);
    return slot;
  };

  const find = (from: Int32Array, k: number): number => {
    if (size === 0) return -1;
    const p = position(from, k);
    if (p === -1) return -1;
    const slot = table[p] ?? EMPTY;
    touch(slot);
    return slot;
  };
  const sameDigest = (slot: number, from: Int32Array, d: number): boolean => {
    const s = slot * DIGEST_WORDS;
    for (let w = 0; w < DIGEST_WORDS; w++) if (digests[s + w] !== from[d + w]) return false;
    return true;
  };

  const oneKey = new Int32Array(KEY_WORDS);
  const oneDigest = new Int32Array(DIGEST_WORDS);
  return {
    find,
    sameDigest,
    addColumns: (fromKeys, fromDigests, count) => {
      if (cap === 0) return;
      for (let i = 0; i < count; i++) put(fromKeys, KEY_WORDS * i, fromDigests, DIGEST_WORDS * i);
    },
    digestOf: (tenant, id, known) => {
      if (size === 0) return undefined;
      writeRecentKey(tenant, id, oneKey, 0, known);
      const slot = find(oneKey, 0);
      if (slot === -1) return undefined;
      const other = others.get(slot);
      if (other !== undefined) return other;
      const b = Buffer.allocUnsafe(DIGEST_WORDS * 4);
      for (let w = 0; w < DIGEST_WORDS; w++) b.writeInt32LE(digests[slot * DIGEST_WORDS + w] ?? 0, 4 * w);
      return b.toString('base64url');
    },
    addAll: (batch) => {
      if (cap === 0) return;
      for (const e of batch) {
        writeRecentKey(e.tenant, e.id, oneKey, 0, e.key);
        const canonical = writeDigestWords(e.digest, oneDigest, 0);
        const slot = put(oneKey, 0, oneDigest, 0);
        if (!canonical) others.set(slot, e.digest);
      }
    },
    get size() {
      return size;
    },
  };
};
