// JSON ↔ validated event ↔ Avro bytes.
//
// Framing on Kafka is Avro single-object encoding by default: 0xC3 0x01, the
// 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
// Canonical Form, then the Avro body. The fingerprint names the writer schema,
// so one topic can carry every signal kind and old bytes stay readable without
// a registry. Every service uses single-object encoding. Confluent framing
// (0x00 + 4-byte schema id, ids passed in `framing.schemaIds`) exists only at
// this level, for a caller that brings its own ids; no service is wired to it
// and no setting selects it (docs/design.md, "Avro on the wire").
import avro from 'avsc';
import type { Schema as AvscSchema, Type } from 'avsc';
import type { z } from 'zod';
import { EVENT_SCHEMAS, PREVIOUS_SCHEMAS, SESSION_TRUST_SCHEMA, type EventSchemaKey, type Schema } from './avro.ts';
import { compilePlainReader } from './avro-plain.ts';
import {
  decisionEventSchema,
  eventSchema,
  sessionTrustSchema,
  signalSchemas,
  type SessionTrust,
  type TrustfoldEvent,
} from './events.ts';
import { err, formatPath, ok, type FieldError, type Result } from './result.ts';

/** Avro timestamp-millis ↔ the contract's ISO-8601 UTC strings. */
class TimestampMillis extends avro.types.LogicalType {
  override _fromValue(value: unknown): string {
    return new Date(value as number).toISOString();
  }
  override _toValue(value: unknown): number | undefined {
    if (typeof value !== 'string') return undefined;
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  override _resolve(type: Type): ((v: unknown) => string) | undefined {
    return avro.Type.isType(type, 'long', 'logical:timestamp-millis') ? (v) => this._fromValue(v) : undefined;
  }
}

const parseType = (schema: Schema): Type =>
  avro.Type.forSchema(schema as AvscSchema, { logicalTypes: { 'timestamp-millis': TimestampMillis }, wrapUnions: false });

// CRC-64-AVRO (Rabin), as given by the Avro specification.
const EMPTY = 0xc15d213aa4d7a795n;
const FP_TABLE: bigint[] = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  return fp;
});
export const rabinFingerprint = (canonical: string): Buffer => {
  let fp = EMPTY;
  for (const byte of Buffer.from(canonical, 'utf8')) {
    fp = (fp >> 8n) ^ (FP_TABLE[Number((fp ^ BigInt(byte)) & 0xffn)] ?? 0n);
  }
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp & 0xffffffffffffffffn);
  return out;
};

/** Parsing Canonical Form of a schema (avsc's `schema()` strips docs, defaults and logical types). */
export const canonicalForm = (type: Type): string => JSON.stringify(type.schema());

export type CodecKey = EventSchemaKey | 'session_trust';

export type DecodeErrorCode = 'bad_framing' | 'unknown_schema' | 'bad_avro' | 'invalid_event';
export type DecodeError = { code: DecodeErrorCode; message: string; errors?: FieldError[] };

export type Framing =
  | { kind: 'single-object' }
  | { kind: 'confluent'; schemaIds: Partial<Record<CodecKey, number>>; previousIds?: Record<number, Schema> };

type Entry = { key: CodecKey; type: Type };
/** `plain`: the compiled reader of ./avro-plain.ts (bytes of the reader schema itself only); undefined from it means "read with avsc". */
type Reader = { key: CodecKey; read: (body: Buffer) => unknown; plain?: ((bytes: Buffer, start: number) => unknown) | undefined };

const SINGLE_OBJECT_MAGIC = Buffer.from([0xc3, 0x01]);

const currentSchemas = (): Record<CodecKey, Schema> => ({ ...EVENT_SCHEMAS, session_trust: SESSION_TRUST_SCHEMA });

/** zod parsers by codec key: Avro proves the shape, zod the contract's constraints. */
const validators: Record<CodecKey, z.ZodType> = {
  decision: decisionEventSchema,
  session_trust: sessionTrustSchema,
  ...signalSchemas,
};

// Avro has no "absent": optional fields decode as null and records as class
// instances. The contract has absent keys and plain objects.
const toPlain = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(toPlain);
  if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== null && x !== undefined) out[k] = toPlain(x);
    return out;
  }
  return v;
};

export const zodIssues = (error: z.ZodError): FieldError[] =>
  error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));

export type CodecOptions = {
  framing?: Framing;
  /** Reader schemas, for tests of evolution; defaults to the current contract. */
  schemas?: Partial<Record<CodecKey, Schema>>;
  /** Earlier writer schemas per key, readable by fingerprint. */
  previous?: Partial<Record<CodecKey, readonly Schema[]>>;
  /** Validate decoded values with zod (default true). */
  validate?: boolean;
  /**
   * Read bodies written with the reader schema itself through ./avro-plain.ts
   * (the same value, built without avsc's record instances; any body it is
   * not sure of is read by avsc). Default false; the audit sink turns it on.
   */
  compiledReaders?: boolean;
};

export type Codec = {
  encode(key: CodecKey, value: unknown): Buffer;
  encodeEvent(event: TrustfoldEvent): Buffer;
  encodeTrust(state: SessionTrust): Buffer;
  decode(bytes: Buffer): Result<{ key: CodecKey; value: unknown }, DecodeError>;
  decodeEvent(bytes: Buffer): Result<TrustfoldEvent, DecodeError>;
  decodeTrust(bytes: Buffer): Result<SessionTrust, DecodeError>;
  fingerprint(key: CodecKey): Buffer;
};

export const keyOf = (event: TrustfoldEvent): EventSchemaKey => (event.type === 'decision' ? 'decision' : event.kind);

export const createCodec = (opts: CodecOptions = {}): Codec => {
  const framing = opts.framing ?? { kind: 'single-object' };
  const validate = opts.validate ?? true;
  const compiled = opts.compiledReaders ?? false;
  const schemas = { ...currentSchemas(), ...opts.schemas };
  const previous = { ...PREVIOUS_SCHEMAS, ...opts.previous };

  const writers = new Map<CodecKey, Entry & { header: Buffer }>();
  const readers = new Map<string, Reader>(); // by fingerprint hex or schema id

  for (const [k, schema] of Object.entries(schemas) as [CodecKey, Schema][]) {
    const type = parseType(schema);
    const fp = rabinFingerprint(canonicalForm(type));
    let header: Buffer;
    if (framing.kind === 'single-object') {
      header = Buffer.concat([SINGLE_OBJECT_MAGIC, fp]);
      readers.set(fp.toString('hex'), { key: k, read: (b) => type.fromBuffer(b), plain: compiled ? compilePlainReader(schema) : undefined });
    } else {
      const id = framing.schemaIds[k];
      if (id === undefined) continue;
      header = Buffer.alloc(5);
      header.writeUInt32BE(id, 1);
      readers.set(`id:${id}`, { key: k, read: (b) => type.fromBuffer(b), plain: compiled ? compilePlainReader(schema) : undefined });
    }
    writers.set(k, { key: k, type, header });
    for (const old of previous[k] ?? []) {
      const writer = parseType(old);
      const resolver = type.createResolver(writer);
      const oldFp = rabinFingerprint(canonicalForm(writer)).toString('hex');
      if (!readers.has(oldFp)) readers.set(oldFp, { key: k, read: (b) => type.fromBuffer(b, resolver) });
    }
  }
  if (framing.kind === 'confluent') {
    for (const [id, schema] of Object.entries(framing.previousIds ?? {})) {
      const writer = parseType(schema);
      const name = (writer as Type & { name?: string }).name;
      const current = [...writers.values()].find((w) => (w.type as Type & { name?: string }).name === name);
      if (!current) continue;
      const resolver = current.type.createResolver(writer);
      readers.set(`id:${id}`, { key: current.key, read: (b) => current.type.fromBuffer(b, resolver) });
    }
  }

  // Bodies are written into one reusable scratch buffer and copied out once,
  // header and body together: one allocation per message instead of three.
  let scratch = Buffer.allocUnsafe(16 * 1024);
  const encode = (key: CodecKey, value: unknown): Buffer => {
    const w = writers.get(key);
    if (!w) throw new Error(`no writer schema for ${key} with this framing`);
    const start = w.header.length;
    let end: number;
    try {
      // `encode` returns minus the missing byte count when the buffer is too small.
      while ((end = w.type.encode(value, scratch, start)) < 0) scratch = Buffer.allocUnsafe(2 * (scratch.length - end));
    } catch (e) {
      // Walk the value a second time only to explain the failure.
      const paths: string[] = [];
      w.type.isValid(value, { errorHook: (p) => paths.push(p.join('.')) });
      throw new Error(`value does not match Avro schema ${key} at ${paths.join(', ') || '(root)'}`, { cause: e });
    }
    const out = Buffer.allocUnsafe(end);
    w.header.copy(out, 0);
    scratch.copy(out, start, start, end);
    return out;
  };

  // The reader of the last fingerprint seen, by its two 32-bit halves: a topic's messages nearly all
  // carry the same one, and this skips a hex string and a map lookup per message.
  let lastFp: { lo: number; hi: number; reader: Reader } | undefined;

  const decode = (bytes: Buffer): Result<{ key: CodecKey; value: unknown }, DecodeError> => {
    let reader: Reader | undefined;
    let start: number;
    if (framing.kind === 'single-object') {
      if (bytes.length < 10 || bytes[0] !== 0xc3 || bytes[1] !== 0x01) {
        return err({ code: 'bad_framing', message: 'not Avro single-object encoding (expected 0xC3 0x01 + fingerprint)' });
      }
      const lo = bytes.readUInt32LE(2);
      const hi = bytes.readUInt32LE(6);
      if (lastFp !== undefined && lastFp.lo === lo && lastFp.hi === hi) reader = lastFp.reader;
      else {
        const fp = bytes.subarray(2, 10).toString('hex');
        reader = readers.get(fp);
        if (!reader) return err({ code: 'unknown_schema', message: `unknown writer schema fingerprint ${fp}` });
        lastFp = { lo, hi, reader };
      }
      start = 10;
    } else {
      if (bytes.length < 5 || bytes[0] !== 0x00) {
        return err({ code: 'bad_framing', message: 'not Confluent framing (expected 0x00 + 4-byte schema id)' });
      }
      const id = bytes.readUInt32BE(1);
      reader = readers.get(`id:${id}`);
      if (!reader) return err({ code: 'unknown_schema', message: `unknown schema id ${id}` });
      start = 5;
    }
    let plain = reader.plain?.(bytes, start);
    if (plain === undefined) {
      const body = bytes.subarray(start);
      let raw: unknown;
      try {
        raw = reader.read(body);
      } catch (e) {
        return err({ code: 'bad_avro', message: `cannot decode ${reader.key}: ${(e as Error).message}` });
      }
      plain = toPlain(raw);
    }
    if (!validate) return ok({ key: reader.key, value: plain });
    const parsed = validators[reader.key].safeParse(plain);
    if (!parsed.success) {
      const errors = zodIssues(parsed.error);
      return err({
        code: 'invalid_event',
        message: `decoded ${reader.key} violates the contract: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
        errors,
      });
    }
    return ok({ key: reader.key, value: parsed.data });
  };

  return {
    encode,
    encodeEvent: (event) => encode(keyOf(event), event),
    encodeTrust: (state) => encode('session_trust', state),
    decode,
    decodeEvent: (bytes) => {
      const r = decode(bytes);
      if (!r.ok) return r;
      if (r.value.key === 'session_trust') {
        return err({ code: 'unknown_schema', message: 'expected an event, got a session-trust record' });
      }
      return ok(r.value.value as TrustfoldEvent);
    },
    decodeTrust: (bytes) => {
      const r = decode(bytes);
      if (!r.ok) return r;
      if (r.value.key !== 'session_trust') {
        return err({ code: 'unknown_schema', message: `expected a session-trust record, got ${r.value.key}` });
      }
      return ok(r.value.value as SessionTrust);
    },
    fingerprint: (key) => {
      const w = writers.get(key);
      if (!w) throw new Error(`no schema for ${key}`);
      return rabinFingerprint(canonicalForm(w.type));
    },
  };
};

/** Parse one JSON event at the HTTP edge; the error names every bad field. */
export const parseEvent = (input: unknown): Result<TrustfoldEvent, FieldError[]> => {
  const r = eventSchema.safeParse(input);
  return r.success ? ok(r.data) : err(zodIssues(r.error));
};

export const parseSessionTrust = (input: unknown): Result<SessionTrust, FieldError[]> => {
  const r = sessionTrustSchema.safeParse(input);
  return r.success ? ok(r.data) : err(zodIssues(r.error));
};
