import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EVENT_SCHEMAS, type Schema } from '../../schemas/avro.ts';
import { createCodec, parseEvent, rabinFingerprint } from '../../schemas/codec.ts';
import { SIGNAL_KINDS, type TrustfoldEvent } from '../../schemas/events.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const codec = createCodec();

const mustParse = (input: unknown): TrustfoldEvent => {
  const r = parseEvent(input);
  if (!r.ok) assert.fail(`fixture invalid: ${JSON.stringify(r.error)}`);
  return r.value;
};

describe('round trip: zod fixture → Avro bytes → decode → zod → deep-equal', () => {
  const fixtures: [string, unknown][] = [
    ['decision', decisionFixture],
    ...SIGNAL_KINDS.map((k): [string, unknown] => [k, signalFixtures[k]]),
  ];
  test('there is a fixture for every Avro event schema', () => {
    assert.deepEqual(fixtures.map(([k]) => k).sort(), Object.keys(EVENT_SCHEMAS).sort());
  });
  for (const [kind, fixture] of fixtures) {
    test(kind, () => {
      const event = mustParse(fixture);
      const bytes = codec.encodeEvent(event);
      assert.equal(bytes[0], 0xc3);
      assert.equal(bytes[1], 0x01);
      const back = codec.decodeEvent(bytes);
      assert.ok(back.ok, JSON.stringify(back));
      assert.deepEqual(back.value, event);
      // Optional fields left out stay left out (not null) after the trip.
      assert.equal(JSON.stringify(back.value), JSON.stringify(event));
    });
  }
  test('a decision with only required fields', () => {
    const minimal = mustParse({
      type: 'decision',
      event_id: '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0f',
      tenant_id: 't',
      occurred_at: '2026-06-09T16:03:11.5+02:00',
      session_id: 's',
      chain: [{ kind: 'agent', id: 'a' }],
      request: { tool: 'x', action: 'y', resource: 'z' },
      decision: { effect: 'allow', policy_id: 'p' },
    });
    assert.equal(minimal.occurred_at, '2026-06-09T14:03:11.500Z', 'offsets are normalised to UTC');
    const back = codec.decodeEvent(codec.encodeEvent(minimal));
    assert.ok(back.ok);
    assert.deepEqual(back.value, minimal);
  });
});

describe('rejection names the field', () => {
  const cases: [string, unknown, string][] = [
    ['bad effect', { ...decisionFixture, decision: { ...decisionFixture.decision, effect: 'maybe' } }, 'decision.effect'],
    ['missing chain id', { ...decisionFixture, chain: [{ kind: 'human' }] }, 'chain[0].id'],
    ['bad uuid', { ...decisionFixture, event_id: 'not-a-uuid' }, 'event_id'],
    ['bad time', { ...decisionFixture, occurred_at: 'yesterday' }, 'occurred_at'],
    ['unknown field', { ...decisionFixture, surprise: 1 }, '(root)'],
    ['bad severity', { ...signalFixtures.injection_detected, severity: 'extreme' }, 'severity'],
    ['unknown signal kind', { ...signalFixtures.session_ended, kind: 'nope' }, 'kind'],
    ['unknown type', { ...decisionFixture, type: 'other' }, 'type'],
    ['negative latency', { ...decisionFixture, decision: { ...decisionFixture.decision, latency_us: -1 } }, 'decision.latency_us'],
  ];
  for (const [name, input, path] of cases) {
    test(name, () => {
      const r = parseEvent(input);
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.ok(
        r.error.some((e) => e.path === path),
        `expected an error at ${path}, got ${JSON.stringify(r.error)}`,
      );
    });
  }
});

describe('decoding hostile bytes is a value, never a throw', () => {
  const good = codec.encodeEvent(mustParse(decisionFixture));
  const cases: [string, Buffer, string][] = [
    ['empty', Buffer.alloc(0), 'bad_framing'],
    ['json', Buffer.from('{"type":"decision"}'), 'bad_framing'],
    ['unknown fingerprint', Buffer.concat([Buffer.from([0xc3, 0x01]), Buffer.alloc(8, 7), good.subarray(10)]), 'unknown_schema'],
    ['truncated', good.subarray(0, good.length - 20), 'bad_avro'],
    ['garbage body', Buffer.concat([good.subarray(0, 10), Buffer.alloc(40, 0xff)]), 'bad_avro'],
  ];
  for (const [name, bytes, code] of cases) {
    test(name, () => {
      const r = codec.decodeEvent(bytes);
      assert.equal(r.ok, false);
      if (!r.ok) assert.equal(r.error.code, code, r.error.message);
    });
  }
  test('Avro that violates the contract is invalid_event with the path', () => {
    const bad = codec.encode('decision', { ...mustParse(decisionFixture), event_id: 'not-a-uuid' });
    const r = codec.decodeEvent(bad);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.error.code, 'invalid_event');
      assert.equal(r.error.errors?.[0]?.path, 'event_id');
    }
  });
  test('a trust record is not an event', () => {
    const state = {
      session_id: 'S-9', tenant_id: 'acme', version: 1, tier: 'trusted' as const, causes: [], revoked_roles: [],
      consent_revoked: false, freezes: [], ended: false, updated_at: '2026-06-09T14:00:00.000Z',
      caused_by: '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e',
    };
    const bytes = codec.encodeTrust(state);
    assert.equal(codec.decodeEvent(bytes).ok, false);
    const back = codec.decodeTrust(bytes);
    assert.ok(back.ok);
    assert.deepEqual(back.value, state);
  });
});

describe('schema evolution', () => {
  // v2 of the decision schema adds an optional field, as the evolution rules allow.
  const v1 = EVENT_SCHEMAS.decision as { type: string; fields: unknown[] };
  const v2: Schema = { ...v1, fields: [...v1.fields, { name: 'risk_score', type: ['null', 'double'], default: null }] };

  test('a reader on v2 decodes v1 bytes', () => {
    const writerV1 = createCodec();
    const readerV2 = createCodec({ schemas: { decision: v2 }, previous: { decision: [v1] }, validate: false });
    const event = mustParse(decisionFixture);
    const r = readerV2.decode(writerV1.encodeEvent(event));
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.key, 'decision');
    assert.deepEqual(r.value.value, event, 'v1 fields kept; the new optional field is absent');
  });
  test('a reader on v1 decodes v2 bytes it knows the schema of', () => {
    const writerV2 = createCodec({ schemas: { decision: v2 }, validate: false });
    const readerV1 = createCodec({ previous: { decision: [v2] } });
    const event = mustParse(decisionFixture);
    const bytes = writerV2.encode('decision', { ...event, risk_score: 0.9 });
    const r = readerV1.decodeEvent(bytes);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value, event, 'the unknown field is dropped, the rest kept');
  });
  test('v1 and v2 have different fingerprints', () => {
    const a = createCodec().fingerprint('decision');
    const b = createCodec({ schemas: { decision: v2 } }).fingerprint('decision');
    assert.notDeepEqual(a, b);
  });
});

describe('enum defaults: a symbol added later reads as the fail-closed default', () => {
  // A newer writer adds a symbol to an enum (allowed by the evolution rules);
  // a reader on this version resolves it to the enum's default.
  const withSymbol = (schema: Schema, enumName: string, symbol: string): Schema =>
    JSON.parse(
      JSON.stringify(schema, (_k, v: unknown) => {
        const o = v as { type?: unknown; name?: unknown; symbols?: string[] } | null;
        return o !== null && typeof o === 'object' && o.type === 'enum' && o.name === `trustfold.v1.${enumName}`
          ? { ...o, symbols: [...(o.symbols ?? []), symbol] }
          : v;
      }),
    ) as Schema;
  const cases: [key: 'trust_set' | 'injection_detected' | 'decision', enumName: string, path: string[], expected: string][] = [
    ['trust_set', 'Tier', ['tier'], 'revoked'],
    ['injection_detected', 'Severity', ['severity'], 'critical'],
    ['decision', 'Effect', ['decision', 'effect'], 'deny'],
    ['decision', 'OutcomeStatus', ['outcome', 'status'], 'executed'],
    ['decision', 'ChainLinkKind', ['chain', '0', 'kind'], 'service'],
  ];
  for (const [key, enumName, path, expected] of cases) {
    test(`${enumName}: an unknown symbol reads as ${expected}`, () => {
      const newer = withSymbol(EVENT_SCHEMAS[key], enumName, 'added_later');
      const writer = createCodec({ schemas: { [key]: newer }, validate: false });
      const reader = createCodec({ previous: { [key]: [newer] } });
      const fixture = key === 'decision' ? decisionFixture : signalFixtures[key];
      const value = structuredClone(mustParse(fixture)) as unknown as Record<string, unknown>;
      let at: Record<string, unknown> = value;
      for (const p of path.slice(0, -1)) at = at[p] as Record<string, unknown>;
      at[path.at(-1) ?? ''] = 'added_later';
      const r = reader.decode(writer.encode(key, value));
      assert.ok(r.ok, JSON.stringify(r));
      let got: unknown = r.value.value;
      for (const p of path) got = (got as Record<string, unknown>)[p];
      assert.equal(got, expected);
    });
  }
});

describe('Confluent framing', () => {
  const codecC = createCodec({ framing: { kind: 'confluent', schemaIds: { decision: 42 } } });
  test('round trip with a schema id', () => {
    const event = mustParse(decisionFixture);
    const bytes = codecC.encodeEvent(event);
    assert.equal(bytes[0], 0);
    assert.equal(bytes.readUInt32BE(1), 42);
    const back = codecC.decodeEvent(bytes);
    assert.ok(back.ok);
    assert.deepEqual(back.value, event);
  });
  test('unknown id is unknown_schema', () => {
    const r = codecC.decodeEvent(Buffer.from([0, 0, 0, 0, 7, 1, 2]));
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.error.code, 'unknown_schema');
  });
});

test('CRC-64-AVRO matches the reference value for "int"', () => {
  // From the Avro specification's test vectors: fingerprint64("\"int\"") = 0x7275d51a3f395c8f.
  assert.equal(rabinFingerprint('"int"').readBigUInt64LE().toString(16), '7275d51a3f395c8f');
});
