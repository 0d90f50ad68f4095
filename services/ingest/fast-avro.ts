// A fast path for the Avro encoding at the ingest edge, compiled from the
// codec's own avsc types. avsc's writer is generic: each optional field finds
// its union branch by bucketing the value (and a timestamp branch by parsing
// the date, then parsing it again to write it), each string costs a native
// Buffer.byteLength before its bytes. For values the contract has already
// validated none of that is needed: this writer knows each branch from the
// schema, writes ASCII and BMP text in one pass, and reads a normalised
// timestamp's digits instead of calling Date.parse.
//
// Like fast-parse.ts it is an accelerator, never an authority: on anything it
// is not sure of (a type it does not compile, a value of an unexpected type,
// a surrogate pair, an unusual timestamp) it declines and the caller encodes
// with avsc, whose bytes or error are what count. When it does answer, the
// bytes are the ones avsc writes (test/unit/ingest-fast-avro.test.ts holds
// the two to byte equality over every fixture and many variations).
import avro from 'avsc';
import type { Schema as AvscSchema, Type } from 'avsc';
import { EVENT_SCHEMAS, type EventSchemaKey } from '../../schemas/avro.ts';
import { keyOf, type Codec } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';

/** Where bytes are written; grows as needed. */
export type AvroOut = { buf: Buffer; pos: number };
type Node = (v: unknown, o: AvroOut) => boolean;

class Unsupported extends Error {}
const unsupported = (what: string): never => {
  throw new Unsupported(what);
};

const ensure = (o: AvroOut, n: number): void => {
  if (o.pos + n <= o.buf.length) return;
  const next = Buffer.allocUnsafe(Math.max(2 * o.buf.length, o.pos + n));
  o.buf.copy(next, 0, 0, o.pos);
  o.buf = next;
};

/** Zigzag varint, the same arithmetic as avsc's Tap.writeLong (integer below 2^30, floating above). */
const writeLong = (o: AvroOut, n: number): void => {
  ensure(o, 10);
  const buf = o.buf;
  let pos = o.pos;
  if (n >= -1073741824 && n < 1073741824) {
    let m = n >= 0 ? n << 1 : (~n << 1) | 1;
    while (m > 0x7f) {
      buf[pos++] = (m & 0x7f) | 0x80;
      m >>= 7;
    }
    buf[pos++] = m;
  } else {
    let f = n >= 0 ? n * 2 : -n * 2 - 1;
    while (f >= 128) {
      buf[pos++] = (f & 0x7f) | 0x80;
      f /= 128;
    }
    buf[pos++] = f & 0x7f;
  }
  o.pos = pos;
};

/** UTF-8 bytes of `s` at `pos`, or -1 on a surrogate (avsc's two string paths disagree on lone ones). */
const putUtf8 = (buf: Buffer, pos: number, s: string): number => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) buf[pos++] = c;
    else if (c < 0x800) {
      buf[pos++] = (c >> 6) | 0xc0;
      buf[pos++] = (c & 0x3f) | 0x80;
    } else if (c >= 0xd800 && c <= 0xdfff) return -1;
    else {
      buf[pos++] = (c >> 12) | 0xe0;
      buf[pos++] = ((c >> 6) & 0x3f) | 0x80;
      buf[pos++] = (c & 0x3f) | 0x80;
    }
  }
  return pos;
};

const writeString = (o: AvroOut, s: string): boolean => {
  const n = s.length;
  ensure(o, 3 * n + 10);
  if (n <= 21) {
    // At most 63 bytes: the length is one varint byte, written after the text.
    const end = putUtf8(o.buf, o.pos + 1, s);
    if (end < 0) return false;
    o.buf[o.pos] = (end - o.pos - 1) << 1;
    o.pos = end;
    return true;
  }
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdfff) return false;
    else bytes += 3;
  }
  writeLong(o, bytes);
  if (bytes === n) o.buf.write(s, o.pos, n, 'latin1');
  else putUtf8(o.buf, o.pos, s);
  o.pos += bytes;
  return true;
};

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const digits = (s: string, at: number, n: number): number => {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
};
/**
 * `Date.parse` of a timestamp, read from its digits when it is in the
 * normal form the contract produces (`YYYY-MM-DDTHH:MM:SS.mmmZ`, a year
 * from 0100, every field in range); anything else goes to Date.parse.
 */
export const timestampMillis = (s: string): number => {
  if (s.length === 24 && s.charCodeAt(4) === 0x2d && s.charCodeAt(7) === 0x2d && s.charCodeAt(10) === 0x54 && s.charCodeAt(13) === 0x3a && s.charCodeAt(16) === 0x3a && s.charCodeAt(19) === 0x2e && s.charCodeAt(23) === 0x5a) {
    const y = digits(s, 0, 4);
    const mo = digits(s, 5, 2);
    const d = digits(s, 8, 2);
    const h = digits(s, 11, 2);
    const mi = digits(s, 14, 2);
    const sec = digits(s, 17, 2);
    const ms = digits(s, 20, 3);
    if (y >= 100 && mo >= 1 && mo <= 12 && d >= 1 && h >= 0 && h <= 23 && mi >= 0 && mi <= 59 && sec >= 0 && sec <= 59 && ms >= 0) {
      const leap = mo === 2 && y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
      if (d <= (DAYS[mo - 1] ?? 0) + (leap ? 1 : 0)) return Date.UTC(y, mo - 1, d, h, mi, sec, ms);
    }
  }
  return Date.parse(s);
};

/** The parts of avsc's types the compiler reads. */
type AnyType = Type & {
  typeName: string;
  fields?: readonly { name: string; type: AnyType; defaultValue(): unknown }[];
  symbols?: readonly string[];
  itemsType?: AnyType;
  types?: readonly AnyType[];
  underlyingType?: AnyType;
};

/** avsc's bounds for a long held in a number (one short of 2^53 - 1 each way), integers only. */
const isSafeLong = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= -9007199254740990 && v <= 9007199254740990;

/**
 * A record's writer is generated code, as avsc's and fast-parse.ts's are: one
 * named property load per field keeps each site monomorphic, where a loop
 * over the field list goes through generic keyed access. The source holds
 * only the schema's field names (as JSON string literals) and indexes into
 * the closures compiled here; nothing from a request.
 */
const compileRecord = (t: AnyType): Node => {
  const fields = (t.fields ?? []).map((f) => {
    const d = f.defaultValue();
    return { name: f.name, node: compile(f.type), fallback: d === undefined ? undefined : f.type.toBuffer(d) };
  });
  // Arrays and buffers are not records to avsc's unions: declined everywhere.
  const lines: string[] = ['if (typeof v !== "object" || v === null || Array.isArray(v) || isBuffer(v)) return false;', 'let x;'];
  fields.forEach((f, i) => {
    const k = JSON.stringify(f.name);
    lines.push(`x = v[${k}];`);
    if (f.fallback === undefined) lines.push(`if (!n[${i}](x, o)) return false;`);
    else if (f.fallback.length === 1) lines.push(`if (x === undefined) { if (o.pos >= o.buf.length) put(o, d[${i}]); else o.buf[o.pos++] = ${f.fallback[0] ?? 0}; } else if (!n[${i}](x, o)) return false;`);
    else lines.push(`if (x === undefined) put(o, d[${i}]); else if (!n[${i}](x, o)) return false;`);
  });
  lines.push('return true;');
  const factory = new Function('n', 'd', 'put', 'isBuffer', `"use strict"; return function write(v, o) {\n${lines.join('\n')}\n};`) as (
    n: readonly Node[],
    d: readonly (Buffer | undefined)[],
    put: (o: AvroOut, b: Buffer) => void,
    isBuffer: (v: unknown) => boolean,
  ) => Node;
  return factory(
    fields.map((f) => f.node),
    fields.map((f) => f.fallback),
    putBytes,
    (v) => Buffer.isBuffer(v),
  );
};

const putBytes = (o: AvroOut, b: Buffer): void => {
  ensure(o, b.length);
  b.copy(o.buf, o.pos);
  o.pos += b.length;
};

/** Only the contract's unions: `["null", T]`. Branch 1 is the varint 2. */
const compileUnion = (t: AnyType): Node => {
  const types = t.types ?? [];
  if (types.length !== 2 || types[0]?.typeName !== 'null') return unsupported(`union ${t.typeName}`);
  const inner = compile(types[1]);
  return (v, o) => {
    if (v === null) {
      writeLong(o, 0);
      return true;
    }
    if (v === undefined) return false;
    writeLong(o, 1);
    return inner(v, o);
  };
};

const compile = (t: AnyType | undefined): Node => {
  if (t === undefined) return unsupported('missing type');
  switch (t.typeName) {
    case 'record':
      return compileRecord(t);
    case 'union:unwrapped':
      return compileUnion(t);
    case 'string':
      return (v, o) => typeof v === 'string' && writeString(o, v);
    case 'long':
      return (v, o) => {
        if (!isSafeLong(v)) return false;
        writeLong(o, v);
        return true;
      };
    case 'int':
      return (v, o) => {
        if (typeof v !== 'number' || v !== (v | 0)) return false;
        writeLong(o, v);
        return true;
      };
    case 'boolean':
      return (v, o) => {
        if (typeof v !== 'boolean') return false;
        ensure(o, 1);
        o.buf[o.pos++] = v ? 1 : 0;
        return true;
      };
    case 'enum': {
      const index = new Map((t.symbols ?? []).map((s, i) => [s, i]));
      return (v, o) => {
        const i = typeof v === 'string' ? index.get(v) : undefined;
        if (i === undefined) return false;
        writeLong(o, i);
        return true;
      };
    }
    case 'array': {
      const item = compile(t.itemsType);
      return (v, o) => {
        if (!Array.isArray(v)) return false;
        if (v.length > 0) {
          writeLong(o, v.length);
          for (let i = 0; i < v.length; i++) if (!item(v[i], o)) return false;
        }
        writeLong(o, 0);
        return true;
      };
    }
    case 'logical:timestamp-millis': {
      if (t.underlyingType?.typeName !== 'long') return unsupported('timestamp-millis not on a long');
      return (v, o) => {
        if (typeof v !== 'string') return false;
        const ms = timestampMillis(v);
        if (!isSafeLong(ms)) return false;
        writeLong(o, ms);
        return true;
      };
    }
    default:
      return unsupported(t.typeName);
  }
};

/** Writes one value at `o.pos`; false: declined (the output past the start is garbage, `o.pos` undefined). */
export type AvroWriter = (value: unknown, o: AvroOut) => boolean;

/** The fast writer of an avsc type, or undefined when it uses something this compiler does not know. */
export const compileAvroWriter = (type: Type): AvroWriter | undefined => {
  try {
    return compile(type as AnyType);
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
};

/** Only the structure is read (typeName, the underlying long); the values are the contract's strings. */
class TimestampShape extends avro.types.LogicalType {
  override _fromValue(value: unknown): unknown {
    return value;
  }
  override _toValue(value: unknown): unknown {
    return value;
  }
}

const SINGLE_OBJECT_MAGIC = [0xc3, 0x01];

/**
 * `codec.encodeEvent` for the events this writer can vouch for, undefined
 * for the rest (then encode with the codec). `codec` must use single-object
 * framing, the default of createCodec: its fingerprints head the bytes.
 */
export const createFastEventEncoder = (codec: Codec): ((e: TrustfoldEvent) => Buffer | undefined) => {
  const writers = new Map<EventSchemaKey, { header: Buffer; write: AvroWriter }>();
  for (const [key, schema] of Object.entries(EVENT_SCHEMAS) as [EventSchemaKey, unknown][]) {
    const type = avro.Type.forSchema(schema as AvscSchema, { logicalTypes: { 'timestamp-millis': TimestampShape }, wrapUnions: false });
    const write = compileAvroWriter(type);
    if (write !== undefined) writers.set(key, { header: Buffer.from([...SINGLE_OBJECT_MAGIC, ...codec.fingerprint(key)]), write });
  }
  const out: AvroOut = { buf: Buffer.allocUnsafe(16 * 1024), pos: 0 };
  return (e) => {
    if (typeof e !== 'object' || e === null) return undefined;
    const w = writers.get(keyOf(e));
    if (w === undefined) return undefined;
    w.header.copy(out.buf, 0);
    out.pos = w.header.length;
    if (!w.write(e, out)) return undefined;
    const bytes = Buffer.allocUnsafe(out.pos);
    out.buf.copy(bytes, 0, 0, out.pos);
    return bytes;
  };
};
