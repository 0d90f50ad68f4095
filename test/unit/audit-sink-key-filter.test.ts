// The write-once filter's Bloom filter, pure: an added key is always found (a
// miss would store a second copy of a record), the false-positive rate stays
// near what the layers are sized for as keys outgrow the first layer, and
// the seed changes which keys collide.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createKeyFilter } from '../../services/audit-sink/write-once-filter.ts';

test('every key added is found, whatever the keys and however many layers they fill', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.string(), fc.constantFrom('event' as const, 'trust' as const), fc.string()), { maxLength: 300 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (keys, seed) => {
      const f = createKeyFilter({ firstLayerKeys: 16, seed: [seed, seed ^ 0x5555] });
      for (const [t, n, k] of keys) f.add(t, n, k);
      for (const [t, n, k] of keys) assert.equal(f.mightContain(t, n, k), true, `lost ${t}/${n}/${k}`);
      assert.equal(f.keys(), keys.length);
    }),
    { numRuns: 200 },
  );
});

test('tenant, namespace and key are one identity: the same key under another tenant or namespace is another key', () => {
  const f = createKeyFilter({ firstLayerKeys: 1024, seed: [1, 2] });
  f.add('acme', 'event', 'E-1');
  assert.equal(f.mightContain('acme', 'event', 'E-1'), true);
  assert.equal(f.mightContain('globex', 'event', 'E-1'), false);
  assert.equal(f.mightContain('acme', 'trust', 'E-1'), false);
  // The separator cannot be forged by moving characters between the parts.
  f.add('a', 'event', 'b\u0000c');
  assert.equal(f.mightContain('a\u0000b', 'event', 'c'), false);
});

test('false positives stay near 0.01 % per layer as the filter grows past its first layer', () => {
  const f = createKeyFilter({ firstLayerKeys: 20_000, seed: [7, 11] });
  const uuid = (i: number, salt: string): string => `${salt}${i.toString(16).padStart(8, '0')}-9e1b-7c3a-8d4e-5f6a7b8c9d0e`;
  for (let i = 0; i < 100_000; i++) f.add('bench', 'event', uuid(i, 'a'));
  let positives = 0;
  const probes = 200_000;
  for (let i = 0; i < probes; i++) if (f.mightContain('bench', 'event', uuid(i, 'b'))) positives++;
  // 100k keys fill layers of 20k, 40k and 80k: three layers tested, ≤ 0.03 % in theory (6 of 200k probes).
  const rate = positives / probes;
  assert.ok(rate < 0.0006, `false-positive rate ${rate}`);
  // 19.2 bits a key at 0.01 %, each layer rounded up to a power of two: at most twice that.
  assert.ok(f.bytes() <= 2 * 2.4 * 140_000, `filter of ${f.bytes()} bytes for 100k keys (layers for 140k)`);
});

test('two seeds disagree on which absent keys collide', () => {
  const a = createKeyFilter({ firstLayerKeys: 1_000, falsePositive: 0.02, seed: [1, 2] });
  const b = createKeyFilter({ firstLayerKeys: 1_000, falsePositive: 0.02, seed: [3, 4] });
  for (let i = 0; i < 1_000; i++) {
    a.add('t', 'event', `k${i}`);
    b.add('t', 'event', `k${i}`);
  }
  const hits = (f: typeof a): number[] => Array.from({ length: 50_000 }, (_, i) => i).filter((i) => f.mightContain('t', 'event', `x${i}`));
  const ha = hits(a);
  const hb = new Set(hits(b));
  assert.ok(ha.length > 0, 'no false positive at all in 50k probes of a 1k filter: the test would prove nothing');
  assert.ok(ha.filter((i) => hb.has(i)).length < ha.length / 2, 'the seeds collide on the same keys');
});
