// The fast Avro writer of the ingest edge against avsc through the codec:
// over every fixture and thousands of mutations of them (each field removed,
// replaced by values of other types, lengths and alphabets, timestamps in
// every form), whatever the fast writer encodes it encodes to the codec's
// very bytes, and it declines whatever the codec refuses. The preparing
// function gives the same records, digests and refusals with it as without.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import avro from 'avsc';
import type { Schema as AvscSchema } from 'avsc';
import fc from 'fast-check';
import { createCodec } from '../../schemas/codec.ts';
import { EVENT_SCHEMAS } from '../../schemas/avro.ts';
import { eventSchema } from '../../schemas/events.ts';
import { compileAvroWriter, createFastEventEncoder, timestampMillis } from '../../services/ingest/fast-avro.ts';
import { eventEncoder, prepareBody, type PrepareInput } from '../../services/ingest/prepare.ts';
import { DEFAULT_EVENT_TIME_BOUNDS } from '../../services/lib/event-time.ts';
import type { Caller } from '../../services/lib/auth.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';
import { paths, setAt } from '../helpers/json-paths.ts';

const codec = createCodec();
const fast = createFastEventEncoder(codec);

const REPLACEMENTS: unknown[] = [
  undefined,
  null,
  '',
  'x',
  'x'.repeat(21),
  'x'.repeat(22),
  'x'.repeat(63),
  'x'.repeat(64),
  'x'.repeat(65),
  'x'.repeat(4096),
  'é',
  'é'.repeat(21),
  'é'.repeat(40),
  '€'.repeat(21),
  '€'.repeat(22),
  'ascii then ünïcödé and 漢字 past twenty-one characters',
  '😀',
  'x😀y'.repeat(10),
  '\ud800',
  'lone \udc00 low',
  '\u0000\u007f\u0080\u07ff\u0800\uffff',
  0,
  -1,
  1.5,
  2 ** 30,
  2 ** 31,
  -(2 ** 31),
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  Infinity,
  Number.NaN,
  true,
  false,
  [],
  ['x'],
  [1],
  {},
  '2026-06-09T14:03:11.000Z',
  '2026-06-09T14:03:11Z',
  '2026-06-09T14:03:11.5+02:00',
  '2024-02-29T00:00:00.000Z',
  '2026-02-29T00:00:00.000Z',
  '0099-06-09T14:03:11.000Z',
  '+010000-01-01T00:00:00.000Z',
  '2026-06-09T24:00:00.000Z',
  'not a time',
  '01976D2A-9E1B-7C3A-8D4E-5F6A7B8C9D0E',
  'deny',
  'human',
  'blocked',
  'trusted',
  'critical',
];

const mutants = (base: unknown): unknown[] => {
  const out: unknown[] = [base];
  for (const p of paths(base)) {
    out.push(setAt(base, p, undefined, true));
    for (const r of REPLACEMENTS) out.push(setAt(base, p, r));
  }
  for (const p of paths(base)) {
    let node = base;
    for (const k of p) node = (node as Record<string | number, unknown>)[k];
    if (Array.isArray(node)) {
      out.push(setAt(base, p, []));
      out.push(setAt(base, p, Array.from({ length: 70 }, () => node[0])));
    }
  }
  out.push(JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(base).slice(1)}`));
  return out;
};

/** The codec's bytes, or undefined when it refuses the value. */
const codecBytes = (v: unknown): Buffer | undefined => {
  try {
    return codec.encodeEvent(v as never);
  } catch {
    return undefined;
  }
};

/** Same bytes as the codec, or a decline; never bytes where the codec refuses. */
const agree = (v: unknown): 'encoded' | 'declined' => {
  const mine = fast(v as never);
  const theirs = codecBytes(v);
  if (mine === undefined) return 'declined';
  assert.ok(theirs !== undefined, `fast writer encoded what the codec refuses: ${JSON.stringify(v)}`);
  assert.ok(mine.equals(theirs), `bytes differ for ${JSON.stringify(v)}`);
  return 'encoded';
};

const fixtures: [string, object][] = [['decision', decisionFixture], ...Object.entries(signalFixtures)];
const withEmitter = (f: object): object => ({ ...structuredClone(f), emitted_by: 'gw-1' });

describe('createFastEventEncoder', () => {
  test('every event schema of the contract compiles', () => {
    for (const [key, schema] of Object.entries(EVENT_SCHEMAS)) {
      assert.equal(typeof compileAvroWriter(createCodecType(schema)), 'function', key);
    }
  });

  for (const [name, fixture] of fixtures) {
    test(`${name}: the validated fixture is encoded to the codec's bytes`, () => {
      assert.equal(agree(eventSchema.parse(withEmitter(fixture))), 'encoded');
    });

    test(`${name}: every mutation zod accepts is encoded to the codec's bytes (declined only on surrogates or where the codec refuses too)`, () => {
      const counts = { encoded: 0, declined: 0 };
      for (const m of mutants(withEmitter(fixture))) {
        const parsed = eventSchema.safeParse(m);
        if (!parsed.success) continue;
        const verdict = agree(parsed.data);
        counts[verdict]++;
        // Declined: text with a surrogate, or a value the codec refuses too (a long past avsc's range).
        if (verdict === 'declined' && codecBytes(parsed.data) !== undefined) {
          assert.match(JSON.stringify(parsed.data), /\\ud[89a-f]|[\ud800-\udfff]/i, `declined without a surrogate: ${JSON.stringify(parsed.data)}`);
        }
      }
      assert.ok(counts.encoded > 5, JSON.stringify(counts));
    });

    test(`${name}: unvalidated mutations are encoded to the codec's bytes or declined, never encoded where the codec refuses`, () => {
      const counts = { encoded: 0, declined: 0 };
      for (const m of mutants(withEmitter(fixture))) counts[agree(m)]++;
      assert.ok(counts.encoded > 5 && counts.declined > 5, JSON.stringify(counts));
    });
  }

  test('arbitrary strings in a free-text field: the codec\'s bytes or a decline', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 120 }), fc.string({ unit: 'grapheme', maxLength: 40 }), (a, b) => {
        const e = eventSchema.parse({ ...withEmitter(decisionFixture), intent: { task_class: b.slice(0, 256) || 'x', statement: a } });
        agree(e);
      }),
      { numRuns: 2000 },
    );
  });

  test('arbitrary integers in long fields: the codec\'s bytes, and a decline where avsc refuses (past 2^53 - 2)', () => {
    const base = withEmitter(decisionFixture) as { decision: object };
    const withLongs = (latency: number, version: number): unknown => eventSchema.parse({ ...base, decision: { ...base.decision, latency_us: latency, trust_version: version } });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 9007199254740990 }), fc.integer({ min: 0, max: 9007199254740990 }), (latency, version) => {
        assert.equal(agree(withLongs(latency, version)), 'encoded');
      }),
      { numRuns: 1000 },
    );
    for (const n of [0, 1, 63, 64, 2 ** 30 - 1, 2 ** 30, 2 ** 31, 2 ** 32, 9007199254740990]) assert.equal(agree(withLongs(n, n)), 'encoded', String(n));
    assert.equal(agree(withLongs(Number.MAX_SAFE_INTEGER, 1)), 'declined');
    assert.equal(codecBytes(withLongs(Number.MAX_SAFE_INTEGER, 1)), undefined);
  });

  test('a value of the wrong kind at the top is declined', () => {
    for (const v of [null, undefined, 1, 'x', [], {}, { type: 'decision' }, { type: 'signal', kind: 'nope' }]) assert.equal(fast(v as never), undefined);
  });
});

/** avsc types parsed as the fast encoder parses them (the structure only). */
class Shape extends avro.types.LogicalType {
  override _fromValue(v: unknown): unknown {
    return v;
  }
  override _toValue(v: unknown): unknown {
    return v;
  }
}
const createCodecType = (schema: unknown): avro.Type =>
  avro.Type.forSchema(schema as AvscSchema, { logicalTypes: { 'timestamp-millis': Shape }, wrapUnions: false });

describe('timestampMillis', () => {
  test('equals Date.parse on normal forms, edge dates and anything else', () => {
    const samples = [
      '2026-06-09T14:03:11.000Z',
      '1970-01-01T00:00:00.000Z',
      '0100-01-01T00:00:00.000Z',
      '0099-12-31T23:59:59.999Z',
      '0000-01-01T00:00:00.000Z',
      '9999-12-31T23:59:59.999Z',
      '2024-02-29T12:00:00.000Z',
      '2000-02-29T12:00:00.000Z',
      '1900-02-29T12:00:00.000Z',
      '2026-02-29T12:00:00.000Z',
      '2026-04-31T12:00:00.000Z',
      '2026-13-01T00:00:00.000Z',
      '2026-00-01T00:00:00.000Z',
      '2026-01-00T00:00:00.000Z',
      '2026-06-09T24:00:00.000Z',
      '2026-06-09T23:60:00.000Z',
      '2026-06-09T23:59:60.000Z',
      '2026-06-09T14:03:11.00aZ',
      '2026-06-09T14:03:11.000+',
      '2026-06-09 14:03:11.000Z',
      '+010000-01-01T00:00:00.000Z',
      '-000001-01-01T00:00:00.000Z',
      '2026-06-09T14:03:11Z',
      'garbage garbage garbage!',
    ];
    for (const s of samples) assert.ok(Object.is(timestampMillis(s), Date.parse(s)), s);
    fc.assert(
      fc.property(fc.date({ min: new Date('0100-01-01T00:00:00.000Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }), (d) => {
        const s = d.toISOString();
        assert.equal(timestampMillis(s), Date.parse(s));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('prepareBody with the fast writer', () => {
  const caller: Caller = { sub: 'gw-1', tenant: 'acme', scopes: new Set(['events:write', 'signals:write', 'trust:write', 'freeze:write']), expiresAt: Date.now() + 3_600_000 };
  const now = Date.now();
  const dated = (f: object): object => ({ ...structuredClone(f), occurred_at: new Date(now - 60_000).toISOString() });

  test('the same records, digests and refusals as with the codec alone, on a body of valid and hostile items', () => {
    const items: unknown[] = [];
    for (const [, f] of fixtures) {
      const ms = mutants(dated(f));
      for (let i = 0; i < ms.length; i += 7) items.push(ms[i]);
      items.push(dated(f));
      items.push({ ...dated(f), event_id: (f as { event_id: string }).event_id.toUpperCase() });
    }
    const input: PrepareInput = {
      body: Buffer.from(JSON.stringify(items)),
      format: 'json',
      limit: 100_000,
      caller,
      nowMs: now,
      bounds: DEFAULT_EVENT_TIME_BOUNDS,
    };
    const withFast = prepareBody(input, eventEncoder());
    const withCodec = prepareBody(input, eventEncoder(createCodec()));
    assert.ok(withFast.ok && withCodec.ok);
    assert.ok(withFast.value.events.length > 50, `${withFast.value.events.length} events passed`);
    assert.ok(withFast.value.rejected.length > 50, `${withFast.value.rejected.length} refused`);
    assert.deepStrictEqual(withFast.value, withCodec.value);
    for (const e of withFast.value.events) assert.equal(e.id, e.id.toLowerCase(), 'ids normalised to lower case');
  });
});
