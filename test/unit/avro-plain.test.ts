// The compiled Avro reader (schemas/avro-plain.ts) must hand out exactly what
// the codec's avsc path does — the same value with the same key order, or, on
// bytes it is unsure of, the same error (it gives up and avsc answers).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import avro from 'avsc';
import type { Schema as AvscSchema } from 'avsc';
import fc from 'fast-check';
import { EVENT_SCHEMAS, SESSION_TRUST_SCHEMA, type Schema } from '../../schemas/avro.ts';
import { compilePlainReader, isoOfMillis } from '../../schemas/avro-plain.ts';
import { createCodec, type CodecKey } from '../../schemas/codec.ts';
import { incident } from '../helpers/audit-incident.ts';

const avscPath = createCodec({ validate: false });
const compiled = createCodec({ validate: false, compiledReaders: true });
const validating = createCodec();
const SCHEMAS: [CodecKey, Schema][] = [...(Object.entries(EVENT_SCHEMAS) as [CodecKey, Schema][]), ['session_trust', SESSION_TRUST_SCHEMA]];
// The schemas in Avro's own terms: timestamps as plain longs, so a test can write any long there.
const plainTypes = new Map(SCHEMAS.map(([k, s]) => [k, avro.Type.forSchema(s as AvscSchema, { wrapUnions: false })]));

const frame = (key: CodecKey, body: Buffer): Buffer => Buffer.concat([Buffer.from([0xc3, 0x01]), avscPath.fingerprint(key), body]);

/** Both paths on the same bytes: the same Result, and the same JSON text (key order included). */
const same = (bytes: Buffer): boolean => {
  const a = avscPath.decode(bytes);
  const b = compiled.decode(bytes);
  assert.deepEqual(b, a);
  if (a.ok && b.ok) assert.equal(JSON.stringify(b.value.value), JSON.stringify(a.value.value));
  return a.ok;
};

const randomBodies = (key: CodecKey, n: number): Buffer[] => {
  const type = plainTypes.get(key);
  if (type === undefined) throw new Error(`no type for ${key}`);
  return Array.from({ length: n }, () => type.toBuffer(type.random()));
};

const varint = (n: number): number[] => {
  // Avro zigzag long, for small hand-written bodies.
  let z = n >= 0 ? 2 * n : -2 * n - 1;
  const out: number[] = [];
  while (z >= 0x80) {
    out.push((z % 0x80) | 0x80);
    z = Math.floor(z / 0x80);
  }
  out.push(z);
  return out;
};

describe('compiled Avro reader', () => {
  test('every schema of the contract compiles (else the sink silently reads everything through avsc)', () => {
    for (const [key, schema] of SCHEMAS) assert.ok(compilePlainReader(schema) !== undefined, key);
  });

  test('random records of every schema: the value avsc + toPlain gives, read by the compiled reader itself', () => {
    for (const [key, schema] of SCHEMAS) {
      const read = compilePlainReader(schema);
      for (const body of randomBodies(key, 150)) {
        assert.ok(read?.(body) !== undefined, `${key}: a well-formed body is read without avsc`);
        assert.ok(same(frame(key, body)), `${key}: a random body decodes`);
      }
    }
  });

  test('every record of the incident, through the validating codec too', () => {
    const inc = incident();
    const records = [...inc.decisions, ...inc.signals];
    for (const e of records) {
      const bytes = validating.encodeEvent(e);
      assert.ok(same(bytes));
      assert.deepEqual(createCodec({ compiledReaders: true }).decodeEvent(bytes), validating.decodeEvent(bytes));
    }
    for (const s of inc.trust) assert.ok(same(validating.encodeTrust(s)));
  });

  test('truncated, extended and corrupted bodies of every schema: the same value or the same error', () => {
    const pools = new Map(SCHEMAS.map(([k]) => [k, randomBodies(k, 40)]));
    fc.assert(
      fc.property(
        fc.constantFrom(...SCHEMAS.map(([k]) => k)),
        fc.nat(),
        fc.option(fc.nat(), { nil: undefined }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        fc.uint8Array({ maxLength: 3 }),
        (key, pick, cut, flips, tail) => {
          const pool = pools.get(key) ?? [];
          const body = Buffer.from(pool[pick % pool.length] ?? Buffer.alloc(0));
          for (const [at, byte] of flips) if (body.length > 0) body[at % body.length] = byte;
          const cutBody = cut === undefined ? body : body.subarray(0, cut % (body.length + 1));
          same(frame(key, Buffer.concat([cutBody, Buffer.from(tail)])));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('longs and timestamps at and past what avsc and toISOString accept', () => {
    const type = plainTypes.get('session_trust');
    assert.ok(type !== undefined);
    const base = type.random() as unknown as Record<string, unknown>;
    const edges = [0, -1, 1, 2 ** 28 - 1, 2 ** 28, -(2 ** 28), 2 ** 31, 8.64e15, 8.64e15 + 1, -8.64e15, -8.64e15 - 1, 253402300799999, 253402300800000, -62167219200000, -62167219200001, 9007199254740990, -9007199254740990, 9007199254740991, 2 ** 53 + 2, -(2 ** 60)];
    let read = 0;
    for (const ms of edges) {
      for (const field of ['updated_at', 'version']) {
        let body: Buffer;
        try {
          body = type.toBuffer({ ...base, [field]: ms });
        } catch {
          continue; // avsc cannot write it either
        }
        if (same(frame('session_trust', body))) read++;
      }
    }
    assert.ok(read > 10, `${read} bodies at the edges decoded`);
  });

  test('hand-written arrays in several blocks, a negative block count, unknown union and enum indexes', () => {
    const read = compilePlainReader({ type: 'record', name: 'x.R', fields: [{ name: 'a', type: { type: 'array', items: 'string' } }, { name: 'o', type: ['null', 'long'] }, { name: 'e', type: { type: 'enum', name: 'x.E', symbols: ['p', 'q'] } }] });
    assert.ok(read !== undefined);
    const type = avro.Type.forSchema({ type: 'record', name: 'x.R', fields: [{ name: 'a', type: { type: 'array', items: 'string' } }, { name: 'o', type: ['null', 'long'] }, { name: 'e', type: { type: 'enum', name: 'x.E', symbols: ['p', 'q'] } }] }, { wrapUnions: false });
    const s = (t: string): number[] => [...varint(t.length), ...Buffer.from(t)];
    const bodies: number[][] = [
      [...varint(2), ...s('a'), ...s('b'), ...varint(1), ...s('c'), 0, ...varint(1), ...varint(-7), ...varint(1)], // two blocks
      [...varint(-1), ...varint(2), ...s('a'), 0, 0, ...varint(0)], // a block with its byte size: avsc's to read
      [0, ...varint(2), 0, ...varint(0)], // union index 2
      [0, 0, ...varint(2)], // enum index 2
      [0, 0, ...varint(-1)], // enum index -1
      [...varint(1000), ...s('a')], // more items than bytes
      [0, 0, 0, 0], // trailing byte
    ];
    for (const b of bodies) {
      const body = Buffer.from(b);
      let expected: unknown;
      try {
        expected = JSON.parse(JSON.stringify(type.fromBuffer(body), (_k, v: unknown) => (v === null ? undefined : v)));
      } catch {
        expected = undefined;
      }
      const got = read(body);
      // The reader either reads it as avsc does or gives up; it never reads a value avsc refuses.
      if (got !== undefined) assert.deepEqual(got, expected, Buffer.from(b).toString('hex'));
      if (expected === undefined) assert.equal(got, undefined, Buffer.from(b).toString('hex'));
    }
    assert.deepEqual(read(Buffer.from(bodies[0] ?? [])), { a: ['a', 'b', 'c'], o: -7, e: 'q' });
  });

  test('strings of any bytes, malformed UTF-8 included, decode as avsc decodes them', () => {
    const read = compilePlainReader({ type: 'record', name: 'x.S', fields: [{ name: 's', type: 'string' }] });
    assert.ok(read !== undefined);
    const type = avro.Type.forSchema({ type: 'record', name: 'x.S', fields: [{ name: 's', type: 'string' }] });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const body = Buffer.concat([Buffer.from(varint(bytes.length)), Buffer.from(bytes)]);
        assert.deepEqual(read(body), { ...(type.fromBuffer(body) as object) });
      }),
      { numRuns: 2000 },
    );
  });

  test('timestamps: the text new Date(ms).toISOString() writes, or its RangeError, for any long', () => {
    const iso = (ms: number): string => {
      try {
        return new Date(ms).toISOString();
      } catch (e) {
        return `throws ${(e as Error).name}`;
      }
    };
    const ours = (ms: number): string => {
      try {
        return isoOfMillis(ms);
      } catch (e) {
        return `throws ${(e as Error).name}`;
      }
    };
    const edges = [0, -1, 1, -62167219200000, -62167219200001, 253402300799999, 253402300800000, 8.64e15, -8.64e15, 8.64e15 + 1, -8.64e15 - 1, 951782400000, 951868799999, 4107542400000];
    for (const ms of edges) for (const d of [-86400001, -1, 0, 1, 86400000]) assert.equal(ours(ms + d), iso(ms + d), String(ms + d));
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: -62167219200000 - 86400000, max: 253402300799999 + 86400000 }), fc.integer({ min: -8.7e15, max: 8.7e15 }), fc.integer()), (ms) => {
        assert.equal(ours(ms), iso(ms));
      }),
      { numRuns: 20000 },
    );
  });
});
