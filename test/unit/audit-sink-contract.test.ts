// The sink's decoder leaves out zod where Avro already proves the shape: it
// must accept and refuse exactly what the validating codec does (same value,
// same code, same message), and its canonical JSON must be canonicalJson's.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import avro from 'avsc';
import type { Schema as AvscSchema } from 'avsc';
import fc from 'fast-check';
import { EVENT_SCHEMAS, SESSION_TRUST_SCHEMA, type Schema } from '../../schemas/avro.ts';
import { canonicalJson } from '../../schemas/clickhouse/rows-identity.ts';
import { createCodec, type CodecKey } from '../../schemas/codec.ts';
import { LIMITS, type DecisionEvent } from '../../schemas/events.ts';
import { decodedCanonicalJson } from '../../services/audit-sink/canonical.ts';
import { decisionWithinContract, isTimestamp } from '../../services/audit-sink/contract.ts';
import { createSinkDecoder } from '../../services/audit-sink/decode.ts';
import { incident } from '../helpers/audit-incident.ts';

const codec = createCodec();
const raw = createCodec({ validate: false });
const sink = createSinkDecoder();
const inc = incident();

/** Both decoders on the same bytes: the same verdict, value, code and message. */
const sameVerdict = (bytes: Buffer, trust: boolean): boolean => {
  const a = trust ? sink.decodeTrust(bytes) : sink.decodeEvent(bytes);
  const b = trust ? codec.decodeTrust(bytes) : codec.decodeEvent(bytes);
  assert.deepEqual(a, b);
  return a.ok;
};

const SCHEMAS: [CodecKey, Schema][] = [...(Object.entries(EVENT_SCHEMAS) as [CodecKey, Schema][]), ['session_trust', SESSION_TRUST_SCHEMA]];

/** A random value of the schema in Avro's own terms (timestamps as longs), framed as the codec frames it. */
const randomFrame = (key: CodecKey, type: avro.Type): Buffer =>
  Buffer.concat([Buffer.from([0xc3, 0x01]), codec.fingerprint(key), type.toBuffer(type.random())]);

describe('the sink decoder', () => {
  test('random records of every schema: the same verdict as the validating codec, and canonicalJson\'s text', () => {
    let compared = 0;
    for (const [key, schema] of SCHEMAS) {
      const type = avro.Type.forSchema(schema as AvscSchema, { wrapUnions: false });
      for (let i = 0; i < 80; i++) {
        const bytes = randomFrame(key, type);
        // Random strings are rarely UUIDs: most are refused, by both decoders alike.
        sameVerdict(bytes, key === 'session_trust');
        const r = raw.decode(bytes);
        if (!r.ok) continue;
        assert.equal(decodedCanonicalJson(r.value.key, r.value.value as object), canonicalJson(r.value.value));
        compared++;
      }
    }
    assert.ok(compared > SCHEMAS.length * 20, `canonical texts compared on ${compared} decoded random records`);
  });

  test('decisions at and beyond every bound the Avro schema cannot express: the same verdict as zod', () => {
    const base = inc.denied;
    const id = (n: number) => 'i'.repeat(n);
    const edits: ((d: DecisionEvent) => unknown)[] = [
      (d) => ({ ...d, event_id: 'not-a-uuid' }),
      (d) => ({ ...d, event_id: base.event_id.toUpperCase() }),
      (d) => ({ ...d, event_id: '00000000-0000-0000-0000-000000000000' }),
      (d) => ({ ...d, event_id: '01976d2a-9e1b-0c3a-8d4e-000000000001' }),
      (d) => ({ ...d, tenant_id: '' }),
      (d) => ({ ...d, tenant_id: id(LIMITS.id) }),
      (d) => ({ ...d, tenant_id: id(LIMITS.id + 1) }),
      (d) => ({ ...d, session_id: id(LIMITS.id + 1) }),
      (d) => ({ ...d, type: 'signal' }),
      (d) => ({ ...d, emitted_by: '' }),
      (d) => ({ ...d, chain: [] }),
      (d) => ({ ...d, chain: Array.from({ length: LIMITS.chain }, (_, i) => ({ kind: 'agent', id: `A-${i}` })) }),
      (d) => ({ ...d, chain: Array.from({ length: LIMITS.chain + 1 }, (_, i) => ({ kind: 'agent', id: `A-${i}` })) }),
      (d) => ({ ...d, chain: [{ kind: 'human', id: '' }] }),
      (d) => ({ ...d, chain: [{ kind: 'human', id: 'U', version: '' }] }),
      (d) => ({ ...d, token: { jti: 'J', scopes: Array.from({ length: LIMITS.list + 1 }, () => 's') } }),
      (d) => ({ ...d, token: { jti: 'J', scopes: [''] } }),
      (d) => ({ ...d, token: { jti: '', scopes: [] } }),
      (d) => ({ ...d, token: { jti: 'J', scopes: [], issued_at: '2026-06-09T14:00:00.000Z', audience: id(LIMITS.id + 1) } }),
      (d) => ({ ...d, intent: { statement: 's'.repeat(LIMITS.text + 1) } }),
      (d) => ({ ...d, intent: { task_class: '' } }),
      (d) => ({ ...d, request: { ...d.request, resource: 'r'.repeat(LIMITS.text) } }),
      (d) => ({ ...d, request: { ...d.request, resource: 'r'.repeat(LIMITS.text + 1) } }),
      (d) => ({ ...d, request: { ...d.request, resource: '' } }),
      (d) => ({ ...d, request: { ...d.request, tool: '' } }),
      (d) => ({ ...d, request: { ...d.request, args_digest: id(LIMITS.id + 1) } }),
      (d) => ({ ...d, decision: { ...d.decision, trust_version: -1 } }),
      (d) => ({ ...d, decision: { ...d.decision, latency_us: -5 } }),
      (d) => ({ ...d, decision: { ...d.decision, latency_us: 0 } }),
      (d) => ({ ...d, decision: { ...d.decision, reasons: Array.from({ length: LIMITS.list + 1 }, () => 'r') } }),
      (d) => ({ ...d, decision: { ...d.decision, reasons: ['x'.repeat(LIMITS.text + 1)] } }),
      (d) => ({ ...d, decision: { ...d.decision, policy_id: '' } }),
      (d) => ({ ...d, decision: { ...d.decision, pdp_id: '' } }),
      (d) => ({ ...d, outcome: { status: 'executed', detail: 'd'.repeat(LIMITS.text + 1) } }),
      (d) => ({ ...d, provenance: { model: '' } }),
      (d) => ({ ...d, provenance: { prompt_digest: '' } }),
      (d) => ({ ...d, provenance: { output_digest: id(LIMITS.id + 1) } }),
    ];
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.subarray(edits.map((_, i) => i), { minLength: 0, maxLength: 3 }), (picked) => {
        const value = picked.reduce<unknown>((d, i) => (edits[i] as (d: DecisionEvent) => unknown)(d as DecisionEvent), base);
        let bytes: Buffer;
        try {
          bytes = raw.encode('decision', value);
        } catch {
          return; // not even Avro: cannot reach the sink
        }
        if (sameVerdict(bytes, false)) accepted++;
        else refused++;
      }),
      { numRuns: 600 },
    );
    assert.ok(accepted > 0 && refused > 0, `both verdicts were exercised (${accepted} accepted, ${refused} refused)`);
  });

  test('a timestamp whose year Avro can hold but the contract cannot write is refused, as zod refuses it', () => {
    const far = { ...inc.denied, occurred_at: '+010000-01-01T00:00:00.000Z' };
    const ms = Date.parse(far.occurred_at);
    const type = avro.Type.forSchema(EVENT_SCHEMAS.decision as AvscSchema, { wrapUnions: false });
    const avroValue = type.fromBuffer(codec.encodeEvent(inc.denied).subarray(10)) as { occurred_at: number };
    const bytes = Buffer.concat([Buffer.from([0xc3, 0x01]), codec.fingerprint('decision'), type.toBuffer({ ...avroValue, occurred_at: ms })]);
    assert.equal(sameVerdict(bytes, false), false);
  });

  test('the contract check says yes only to what zod accepts unchanged', () => {
    for (const d of inc.decisions) assert.equal(decisionWithinContract(d), true);
    assert.equal(decisionWithinContract({ ...inc.denied, decision: { ...inc.denied.decision, reasons: undefined } }), false, 'a missing default is zod\'s to add');
  });

  test('every record of the incident: one canonical text both ways', () => {
    for (const e of [...inc.decisions, ...inc.signals, ...inc.trust]) {
      const bytes = 'type' in e ? codec.encodeEvent(e) : codec.encodeTrust(e);
      const r = raw.decode(bytes);
      assert.ok(r.ok);
      assert.equal(decodedCanonicalJson(r.value.key, r.value.value as object), canonicalJson(e));
    }
  });

  test('the timestamp check without Date: true exactly when the string is its own Date round trip', () => {
    const roundTrip = (v: string): boolean => {
      if (v.length !== 24) return false;
      const ms = Date.parse(v);
      return !Number.isNaN(ms) && new Date(ms).toISOString() === v;
    };
    const chars = '0123456789-T:.Z+ x';
    const isoOf = fc.integer({ min: -8.64e15, max: 8.64e15 }).map((ms) => new Date(ms).toISOString());
    // Canonical texts, then the same with a few characters changed (mostly digits: days past a month's end, hour 24, ...).
    const edited = fc.tuple(isoOf, fc.array(fc.tuple(fc.nat(23), fc.nat(chars.length - 1), fc.boolean()), { maxLength: 3 })).map(([s, edits]) => {
      const a = [...s.padEnd(24, '0').slice(0, 24)];
      for (const [at, c, digitOnly] of edits) a[at] = chars[digitOnly ? c % 10 : c] ?? '0';
      return a.join('');
    });
    fc.assert(
      fc.property(fc.oneof(isoOf, edited, fc.string({ minLength: 24, maxLength: 24 })), (v) => {
        assert.equal(isTimestamp(v), roundTrip(v), v);
      }),
      { numRuns: 20000 },
    );
    for (const y of ['0000', '0004', '0100', '0400', '1900', '2000', '2024', '2100', '9999']) {
      for (const md of ['02-28', '02-29', '02-30', '04-30', '04-31', '12-31', '12-32', '13-01', '00-10', '01-00']) {
        for (const t of ['00:00:00.000', '23:59:59.999', '24:00:00.000', '12:60:00.000', '12:00:60.000']) {
          const v = `${y}-${md}T${t}Z`;
          assert.equal(isTimestamp(v), roundTrip(v), v);
        }
      }
    }
  });
});
