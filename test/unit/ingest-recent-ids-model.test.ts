// The recent-id cache of fixed-size typed arrays held to the string-keyed
// Map it replaced: on random sequences of adds and lookups both give the
// same digests, sizes and evictions (least recently used first, a hit or a
// re-add refreshes, capacity bounds the size), and dedupeEvents gives the
// same verdicts over either. Keys that share their first word (the table's
// hash) exercise the probing and its deletions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { dedupeEvents, type Dedupable } from '../../services/ingest/admit.ts';
import { createRecentIds, DIGEST_WORDS, KEY_WORDS, tenantIdKey, type RecentEntry } from '../../services/ingest/recent-ids.ts';

/** The previous cache: an insertion-ordered Map as an LRU, whole batch in, then the excess out from the old end. */
const createModel = (capacity: number) => {
  const entries = new Map<string, string>();
  return {
    digestOf: (tenant: string, id: string): string | undefined => {
      const key = tenantIdKey(tenant, id);
      const digest = entries.get(key);
      if (digest === undefined) return undefined;
      entries.delete(key);
      entries.set(key, digest);
      return digest;
    },
    addAll: (batch: readonly RecentEntry[]): void => {
      if (capacity <= 0) return;
      for (const e of batch) {
        const key = tenantIdKey(e.tenant, e.id);
        entries.delete(key);
        entries.set(key, e.digest);
      }
      let excess = entries.size - capacity;
      for (const oldest of entries.keys()) {
        if (excess-- <= 0) break;
        entries.delete(oldest);
      }
    },
    get size() {
      return entries.size;
    },
    keys: () => [...entries.keys()],
  };
};

/** The previous dedupeEvents over the previous cache. */
const modelDedupe = (events: readonly Dedupable[], recent: ReturnType<typeof createModel>) => {
  const kept: number[] = [];
  const conflicts: number[] = [];
  let inReq = 0;
  let inRecent = 0;
  const inRequest = new Map<string, string>();
  for (const c of events) {
    const key = tenantIdKey(c.tenant, c.id);
    const seen = inRequest.get(key) ?? recent.digestOf(c.tenant, c.id);
    if (seen !== undefined) {
      if (seen !== c.digest) conflicts.push(c.index);
      else if (inRequest.has(key)) inReq++;
      else inRecent++;
      continue;
    }
    inRequest.set(key, c.digest);
    kept.push(c.index);
  }
  return { kept, conflicts, inReq, inRecent };
};

const sha = (s: string): string => createHash('sha256').update(s).digest('base64url');
// Digests as ingest makes them (base64url of 32 bytes) and others (markers, test strings).
// `tricky`: 43 base64url characters that are not the form of any 32 bytes (its last one carries stray bits).
const tricky = sha('a').slice(0, 42) + 'B';
const digestArb = fc.constantFrom(sha('a'), sha('b'), sha('c'), 'd1', 'd2', '-', '', tricky);
// Tenants and ids that would collide without the length prefix.
const tenantArb = fc.constantFrom('acme', 'globex', 'a","cme', 'a:1', 'a');
const idArb = fc.constantFrom('x', 'y', 'z', '1:a', 'cme', '', 'w', 'v');
const entryArb = fc.record({ tenant: tenantArb, id: idArb, digest: digestArb });
const opArb = fc.oneof(
  fc.record({ add: fc.array(entryArb, { maxLength: 12 }) }),
  fc.record({ look: fc.record({ tenant: tenantArb, id: idArb }) }),
  fc.record({ dedupe: fc.array(entryArb, { maxLength: 10 }) }),
);

describe('recent ids: typed arrays against the Map they replaced', () => {
  test('the same digests, sizes and evictions on random sequences', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1, max: 12 }), fc.array(opArb, { maxLength: 60 }), (capacity, ops) => {
        const model = createModel(capacity);
        const real = createRecentIds(capacity);
        for (const op of ops) {
          if ('add' in op) {
            model.addAll(op.add);
            // Half the time with the caller's key string, as the inline path gives it.
            real.addAll(op.add.map((e, i) => (i % 2 === 0 ? { ...e, key: tenantIdKey(e.tenant, e.id) } : e)));
          } else if ('look' in op) {
            assert.equal(real.digestOf(op.look.tenant, op.look.id), model.digestOf(op.look.tenant, op.look.id));
          } else {
            const events = op.dedupe.map((e, index) => ({ ...e, index }));
            const want = modelDedupe(events, model);
            const got = dedupeEvents(events, real);
            assert.deepEqual(got.kept.map((c) => c.index), want.kept);
            assert.deepEqual(got.rejected.map((r) => r.index), want.conflicts);
            assert.deepEqual([got.duplicatesInRequest, got.duplicatesRecent], [want.inReq, want.inRecent]);
            // What the route adds after the ack: the kept events, from the columns (whose digests
            // digestOf gives back in base64url, so as strings only when they are base64url of 32 bytes).
            model.addAll(got.kept);
            if (got.kept.every((c) => c.digest.length === 43 && c.digest !== tricky)) real.addColumns(got.keys, got.digests, got.kept.length);
            else real.addAll(got.kept);
          }
          assert.equal(real.size, model.size);
          assert.ok(real.size <= Math.max(0, capacity));
        }
        // Every entry the model holds, oldest first, is there with its digest; nothing else is.
        for (const key of model.keys()) {
          const [tenantLength = '', rest = ''] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
          const tenant = rest.slice(0, Number(tenantLength));
          const id = rest.slice(Number(tenantLength) + 1);
          assert.equal(real.digestOf(tenant, id), model.digestOf(tenant, id));
        }
        assert.equal(real.size, model.size);
      }),
      { numRuns: 600 },
    );
  });

  test('keys sharing their table hash: probing, eviction and deletion keep every entry findable', () => {
    // Keys given as words directly; the first word (the hash) from a tiny set so probe runs overlap and wrap.
    const keyArb = fc.tuple(fc.constantFrom(0, 1, 7, 8, 16, -1), fc.integer({ min: 0, max: 5 }));
    const colOp = fc.oneof(
      fc.record({ put: fc.array(fc.tuple(keyArb, fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 6 }) }),
      fc.record({ find: keyArb }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.array(colOp, { maxLength: 80 }), (capacity, ops) => {
        const name = ([a, b]: [number, number]) => `${a}/${b}`;
        const model = createModel(capacity);
        const real = createRecentIds(capacity);
        const keyWords = ([a, b]: [number, number]) => Int32Array.of(a, b, b * 3, -b);
        for (const op of ops) {
          if ('put' in op) {
            const keys = new Int32Array(KEY_WORDS * op.put.length);
            const digests = new Int32Array(DIGEST_WORDS * op.put.length);
            op.put.forEach(([k, d], i) => {
              keys.set(keyWords(k), KEY_WORDS * i);
              digests[DIGEST_WORDS * i + 5] = d;
            });
            model.addAll(op.put.map(([k, d]) => ({ tenant: '', id: name(k), digest: String(d) })));
            real.addColumns(keys, digests, op.put.length);
          } else {
            const want = model.digestOf('', name(op.find));
            const slot = real.find(keyWords(op.find), 0);
            assert.equal(slot === -1, want === undefined);
            if (want !== undefined) {
              const d = new Int32Array(DIGEST_WORDS);
              d[5] = Number(want);
              assert.ok(real.sameDigest(slot, d, 0));
              d[5] = Number(want) + 1;
              assert.ok(!real.sameDigest(slot, d, 0));
            }
          }
          assert.equal(real.size, model.size);
        }
        for (const key of model.keys()) {
          const [a = 0, b = 0] = key.slice('0::'.length).split('/').map(Number);
          assert.notEqual(real.find(keyWords([a, b]), 0), -1, key);
        }
      }),
      { numRuns: 400 },
    );
  });

  test('at 100 000 entries: the oldest go first and the rest stay', () => {
    const capacity = 100_000;
    const real = createRecentIds(capacity);
    const model = createModel(capacity);
    const batch = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ tenant: 'acme', id: `e${from + i}`, digest: sha(`${from + i}`) }));
    for (let at = 0; at < 130_000; at += 500) {
      const b = batch(at, 500);
      real.addAll(b);
      model.addAll(b);
    }
    assert.equal(real.size, capacity);
    assert.equal(real.digestOf('acme', 'e29999'), undefined);
    assert.equal(real.digestOf('acme', 'e30000'), sha('30000'));
    assert.equal(real.digestOf('acme', 'e129999'), sha('129999'));
    assert.equal(real.digestOf('globex', 'e129999'), undefined);
  });
});
