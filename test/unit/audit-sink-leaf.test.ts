// The audit sink's decoding threads hash each accepted record's log leaf from
// the row they map (services/audit-sink/batch.ts). That leaf must be the leaf
// rule's, byte for byte: the one the stand-alone writer hashes from the event
// (`leafHashOf(leafOfEvent(…))`) and the verifier rebuilds from the stored row.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import avro from 'avsc';
import type { Schema as AvscSchema } from 'avsc';
import { EVENT_SCHEMAS, SESSION_TRUST_SCHEMA, type Schema } from '../../schemas/avro.ts';
import { createCodec, type CodecKey } from '../../schemas/codec.ts';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { ok } from '../../schemas/result.ts';
import { leafHashOf, type LeafInput } from '../../schemas/audit-log/leaf.ts';
import { leafKey, leafOfEvent, leafOfTrust } from '../../schemas/audit-log/records.ts';
import { mapBatch, type SinkMessage } from '../../services/audit-sink/batch.ts';
import { answer, pack, threadDecoder, transferables, unpackLeaves, type DecodeAnswer } from '../../services/audit-sink/decode-thread.ts';
import type { SinkDecoder } from '../../services/audit-sink/decode.ts';
import { createSinkDecoder } from '../../services/audit-sink/decode.ts';
import type { Logger } from '../../services/lib/log.ts';
import { incident } from '../helpers/audit-incident.ts';

const codec = createCodec();
const raw = createCodec({ validate: false });
const TOPIC = 'trustfold.signals.v1';
const PARTITION = 3;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Every record the raw codec decodes, taken as it is: the leaf must match on any value of the schema, not only on the contract's. */
const anything: SinkDecoder = {
  decodeEvent: (bytes) => {
    const r = raw.decode(bytes);
    if (!r.ok) return r;
    return ok(r.value.value as TrustfoldEvent);
  },
  decodeTrust: (bytes) => {
    const r = raw.decode(bytes);
    if (!r.ok) return r;
    return ok(r.value.value as SessionTrust);
  },
};

/** The leaf the writer hashes from the record itself, with its key. */
const reference = (input: LeafInput, offset: string) => ({ offset, hash: hex(leafHashOf(input)), kind: input.kind, ...leafKey(input) });
const asSeen = (l: { offset: string; hash: Uint8Array; kind: string; tenant: string; ref: string }) => ({ offset: l.offset, hash: hex(l.hash), kind: l.kind, tenant: l.tenant, ref: l.ref });

const SCHEMAS: [CodecKey, Schema][] = [...(Object.entries(EVENT_SCHEMAS) as [CodecKey, Schema][]), ['session_trust', SESSION_TRUST_SCHEMA]];

describe("the decoding threads' leaf", () => {
  test('random records of every schema: leafHashOf(leafOfEvent(…)) byte for byte, through the worker wire format', () => {
    const byKind = new Map<string, number>();
    for (const [key, schema] of SCHEMAS) {
      const type = avro.Type.forSchema(schema as AvscSchema, { wrapUnions: false });
      const trust = key === 'session_trust';
      for (let i = 0; i < 60; i++) {
        const offset = String(1000 + i);
        // Random in every field but the envelope's constants ("always …" in the schema), which say which record it is.
        const value = type.random() as unknown as Record<string, unknown>;
        if (key === 'decision') value['type'] = 'decision';
        else if (!trust) Object.assign(value, { type: 'signal', kind: key });
        const bytes = Buffer.concat([Buffer.from([0xc3, 0x01]), codec.fingerprint(key), type.toBuffer(value)]);
        const r = raw.decode(bytes);
        assert.ok(r.ok);
        const at = { topic: TOPIC, partition: PARTITION, offset };
        let expected: ReturnType<typeof reference>;
        try {
          expected = reference(trust ? leafOfTrust(r.value.value as SessionTrust, at) : leafOfEvent(r.value.value as TrustfoldEvent, at), offset);
        } catch {
          // A random value the row mapping cannot write (a time beyond year 9999): the sink's mapping throws alike.
          assert.throws(() => mapBatch(anything, trust ? 'session_trust' : 'events', TOPIC, PARTITION, [{ offset, key: null, value: bytes }], true));
          continue;
        }
        const request = { id: i, role: trust ? ('session_trust' as const) : ('events' as const), topic: TOPIC, partition: PARTITION, withLeaves: true, ...pack([{ offset, key: null, value: bytes }]) };
        const a = structuredClone(answer(anything, request));
        assert.ok('leaves' in a);
        assert.deepEqual(unpackLeaves(a.leaves).map(asSeen), [expected]);
        byKind.set(key, (byKind.get(key) ?? 0) + 1);
      }
    }
    for (const [key] of SCHEMAS) assert.ok((byKind.get(key) ?? 0) >= 20, `${key}: ${byKind.get(key) ?? 0} random records compared`);
  });

  test('the incident, in a real decoding thread: every record of every kind, in offset order, none for what is dead-lettered', async () => {
    const inc = incident();
    const events: TrustfoldEvent[] = [...inc.decisions, ...inc.signals];
    const messages: SinkMessage[] = [
      ...events.map((e, i) => ({ offset: String(i), key: null, value: codec.encodeEvent(e) })),
      { offset: String(events.length), key: null, value: Buffer.from('not avro') },
    ];
    const warnings: unknown[] = [];
    const thread = threadDecoder({ warn: (o: unknown) => void warnings.push(o) } as unknown as Pick<Logger, 'warn'>);
    try {
      const m = await thread.decode('events', TOPIC, PARTITION, messages, true);
      assert.deepEqual(m.leaves.map(asSeen), events.map((e, i) => reference(leafOfEvent(e, { topic: TOPIC, partition: PARTITION, offset: String(i) }), String(i))));
      assert.equal(m.rejected.length, 1);
      const t = await thread.decode('session_trust', TOPIC, PARTITION, inc.trust.map((s, i) => ({ offset: String(i), key: null, value: codec.encodeTrust(s) })), true);
      assert.deepEqual(t.leaves.map(asSeen), inc.trust.map((s, i) => reference(leafOfTrust(s, { topic: TOPIC, partition: PARTITION, offset: String(i) }), String(i))));
      const none = await thread.decode('events', TOPIC, PARTITION, messages, false);
      assert.deepEqual(none.leaves, [], 'no leaves unless asked for');
      assert.deepEqual(warnings, [], 'the thread started and answered (no inline fallback)');
    } finally {
      await thread.close();
    }
  });

  test('the wire format transfers the hashes and refuses a leaf of no known kind', () => {
    const d = createSinkDecoder();
    const inc = incident();
    const request = { id: 1, role: 'events' as const, topic: TOPIC, partition: PARTITION, withLeaves: true, ...pack(inc.decisions.map((e, i) => ({ offset: String(i), key: null, value: codec.encodeEvent(e) }))) };
    const a: DecodeAnswer = answer(d, request);
    assert.ok('leaves' in a);
    assert.deepEqual(transferables(a), [a.leaves.hashes]);
    const bad = { ...a.leaves, kinds: new Uint8Array(a.leaves.kinds.length).fill(9) };
    assert.throws(() => unpackLeaves(bad), /no known kind/);
  });
});
