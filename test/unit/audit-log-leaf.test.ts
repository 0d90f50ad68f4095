// The writer's fast paths must hash exactly what the reference forms hash: the
// JCS writer against a plain recursive JCS, and the leaf of an event read from
// Kafka against the leaf the verifier rebuilds from the stored row.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decisionRow, type DecisionRecord } from '../../schemas/clickhouse/rows.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { canonicalJson, type Json } from '../../schemas/audit-log/jcs.ts';
import { leafBytes } from '../../schemas/audit-log/leaf.ts';
import { decisionLeafOfRecord, leafOfEvent } from '../../schemas/audit-log/records.ts';
import { createCodec } from '../../schemas/codec.ts';
import { inlineHasher, threadHasher } from '../../services/audit-log/writer.ts';
import type { Logger } from '../../services/lib/log.ts';
import { decisionFixture } from '../fixtures/events.ts';

/** RFC 8785 as the definition reads: members sorted by UTF-16 code units, strings and numbers as ECMAScript serialises them. */
const reference = (v: Json): string => {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${(v as readonly Json[]).map(reference).join(',')}]`;
  const o = v as { readonly [k: string]: Json | undefined };
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${reference(o[k] as Json)}`).join(',')}}`;
};

describe('JCS fast path', () => {
  const cases: Json[] = [
    { b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } },
    { '10': 1, '9': 2, a: [1, { b: 'é\u2028\u0000', a: -0 }], '': true },
    { z: [{ '1': 'x', '0': 'y' }], y: { '€': 1, e: 2, E: 3, '\ud83d\ude00': 4, 'ﬀ': 5 } },
    [1e21, 1.5e-7, 333333333.3333333, -1, 0, 'x', null, false, []],
    { a: undefined, b: { c: undefined, d: 'e' } } as unknown as Json,
    'plain',
    42,
    // Already in order (returned as they are, not copied), beside members that are not.
    { a: [{ x: 1, y: [2, { p: 'q' }] }, { b: 1, a: 2 }], b: { c: { d: null } }, c: [[], {}] },
    { a: 1, b: undefined, c: [{ a: undefined, b: 2 }] } as unknown as Json,
    [{ a: 1 }, { b: 2, a: 1 }, 'x', [{ d: 1, c: 2 }]],
    { a: new Date(0), b: Object.assign(Object.create(null) as object, { z: 1, y: 2 }) } as unknown as Json,
  ];
  for (const c of cases) test(`matches the reference: ${reference(c).slice(0, 40)}`, () => assert.equal(canonicalJson(c), reference(c)));
  test('a shared sub-object in order is written where it appears, each time', () => {
    const shared = { a: 1, b: [1, 2] };
    assert.equal(canonicalJson({ x: shared, y: [shared, shared] }), reference({ x: shared, y: [shared, shared] }));
  });
  test('refuses non-finite numbers', () => {
    assert.throws(() => canonicalJson({ a: Number.NaN }), RangeError);
    assert.throws(() => canonicalJson({ '1': [Infinity] }), RangeError);
  });
});

describe("writer's leaf of a decision", () => {
  const at = { topic: 'trustfold.decisions.v1', partition: 2, offset: '77' };
  const variants: DecisionEvent[] = [
    decisionFixture as unknown as DecisionEvent,
    { type: 'decision', event_id: 'e-2', tenant_id: 't', occurred_at: '2026-06-09T14:03:11.123Z', session_id: 'S-1', chain: [{ kind: 'agent', id: 'A-1' }], request: { tool: 'git', action: 'read', resource: 'r' }, decision: { effect: 'allow', policy_id: 'P', reasons: [] } } as DecisionEvent,
  ];
  for (const e of variants) {
    test(`is the leaf the verifier rebuilds from the row (${e.event_id})`, () => {
      const row = { ...decisionRow(e, at), ingested_at: '2026-12-01 00:00:00.000' } as unknown as DecisionRecord;
      assert.deepEqual(Buffer.from(leafBytes(leafOfEvent(e, at))), Buffer.from(leafBytes(decisionLeafOfRecord(row))));
    });
  }
});

describe("writer's hashing thread", () => {
  test('hashes a batch exactly as inline, skipping what the sink would dead-letter', async () => {
    const codec = createCodec();
    const warnings: unknown[] = [];
    const thread = threadHasher(codec, { warn: (o: unknown) => void warnings.push(o) } as unknown as Pick<Logger, 'warn'>);
    const messages = [
      { offset: '5', value: codec.encodeEvent(decisionFixture as unknown as DecisionEvent) },
      { offset: '6', value: Buffer.from('not avro') },
      { offset: '7', value: null },
    ];
    try {
      const a = await thread.hash(false, 'trustfold.decisions.v1', 1, messages);
      const b = await inlineHasher(codec).hash(false, 'trustfold.decisions.v1', 1, messages);
      assert.equal(a.length, 1);
      assert.deepEqual(a.map((l) => ({ ...l, hash: Buffer.from(l.hash).toString('hex') })), b.map((l) => ({ ...l, hash: Buffer.from(l.hash).toString('hex') })));
      assert.deepEqual(warnings, [], 'the thread started and answered (no inline fallback)');
    } finally {
      await thread.close();
    }
  });
});
