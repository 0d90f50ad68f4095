// A compiled Avro reader for the contract's own schemas that builds the plain
// value the codec hands out (schemas/codec.ts `toPlain` of avsc's value)
// directly: optional fields left out instead of null, records as plain
// objects in schema field order, timestamp-millis as `toISOString()` text.
// avsc builds a record instance per record, a Date and a string per
// timestamp, and then `toPlain` copies the whole tree again through
// Object.entries pairs; on the audit sink that was most of Avro's cost and of
// its garbage (services/audit-sink/README.md, "Decode").
//
// It reads only what it is sure to read exactly as avsc does: the types the
// contract uses (record, enum, array, string, long, boolean, timestamp-millis,
// ["null", T], named references) and well-formed bytes. Anything else — a
// type it does not know, a varint or length past the end, a negative or
// oversized count, an unknown enum or union index, a long avsc would refuse
// for precision, an instant toISOString cannot write, trailing bytes — makes it
// give up (`undefined`), and the caller decodes the same bytes with avsc,
// whose value or error is then the answer. So a record it reads is the very
// value avsc + toPlain gives (test/unit/avro-plain.test.ts: random records of
// every schema, truncations and corruptions), and a record it cannot read is
// read the old way.
import type { Schema } from './avro.ts';

type Cursor = { buf: Buffer; pos: number };
type Read = (c: Cursor) => unknown;

/** Thrown (never allocated per record) when the reader is not sure; caught in `compilePlainReader`. */
const UNSURE: unique symbol = Symbol('avro-plain: ask avsc');

// avsc's Tap.readLong, step for step (including its float arithmetic past 28
// bits), with every read past the end refused instead of read as undefined.
const readLong = (c: Cursor): number => {
  const buf = c.buf;
  const end = buf.length;
  let pos = c.pos;
  let n = 0;
  let k = 0;
  let b: number;
  do {
    if (pos >= end) throw UNSURE;
    b = buf[pos++] as number;
    n |= (b & 0x7f) << k;
    k += 7;
  } while (b & 0x80 && k < 28);
  if (b & 0x80) {
    let f = n;
    let fk = 268435456; // 2 ** 28
    do {
      if (pos >= end) throw UNSURE;
      b = buf[pos++] as number;
      f += (b & 0x7f) * fk;
      fk *= 128;
    } while (b & 0x80);
    c.pos = pos;
    return (f % 2 ? -(f + 1) : f) / 2;
  }
  c.pos = pos;
  return (n >> 1) ^ -(n & 1);
};

// avsc's LongType refuses these ('potential precision loss'); so does this reader, by giving up.
const SAFE_LONG = 9007199254740990;

const readSafeLong = (c: Cursor): number => {
  const n = readLong(c);
  if (!(n >= -SAFE_LONG && n <= SAFE_LONG)) throw UNSURE;
  return n;
};

const readString = (c: Cursor): string => {
  const len = readLong(c);
  const buf = c.buf;
  const start = c.pos;
  const stop = start + len;
  if (len < 0 || stop > buf.length) throw UNSURE;
  c.pos = stop;
  // The same decoder avsc's Tap.readString uses (utf8Slice), malformed bytes replaced alike.
  return buf.toString('utf8', start, stop);
};

const readBoolean = (c: Cursor): boolean => {
  if (c.pos >= c.buf.length) throw UNSURE;
  return (c.buf[c.pos++] as number) !== 0;
};

// The codec's TimestampMillis._fromValue is `new Date(ms).toISOString()`: a Date and a string per timestamp,
// three per decision. For years 0000-9999 (the 24-character form) the same text is written here without a
// Date, the day's part kept from the last timestamp on that day (a batch's timestamps share a few days);
// any other instant goes through Date as before, and a RangeError there (past ±8.64e15 ms) is avsc's to report.
const MIN_ISO_MS = -62167219200000; // 0000-01-01T00:00:00.000Z
const MAX_ISO_MS = 253402300799999; // 9999-12-31T23:59:59.999Z
const DAY_MS = 86400000;
const two = (n: number): string => (n < 10 ? `0${n}` : `${n}`);
const three = (n: number): string => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`);
let lastDay = NaN;
let lastDayText = '';

/** 'YYYY-MM-DD' of a day counted from 1970-01-01 (Hinnant's civil_from_days, proleptic Gregorian as Date). */
const dayText = (days: number): string => {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${y < 10 ? `000${y}` : y < 100 ? `00${y}` : y < 1000 ? `0${y}` : `${y}`}-${two(m)}-${two(d)}`;
};

export const isoOfMillis = (ms: number): string => {
  if (!(ms >= MIN_ISO_MS && ms <= MAX_ISO_MS)) return new Date(ms).toISOString();
  const days = Math.floor(ms / DAY_MS);
  if (days !== lastDay) {
    lastDayText = dayText(days);
    lastDay = days;
  }
  let t = ms - days * DAY_MS;
  const milli = t % 1000;
  t = (t - milli) / 1000;
  const sec = t % 60;
  t = (t - sec) / 60;
  const min = t % 60;
  return `${lastDayText}T${two((t - min) / 60)}:${two(min)}:${two(sec)}.${three(milli)}Z`;
};

const readTimestamp = (c: Cursor): string => isoOfMillis(readSafeLong(c));

type NamedSchema = { type: string; name?: string; fields?: { name: string; type: Schema }[]; items?: Schema; symbols?: string[]; logicalType?: string };

/**
 * The reader of one schema, or undefined if it uses a type this reader does
 * not handle. `named` holds the readers of named types defined so far (a
 * later use of a name is a reference, schemas/avro.ts defineOnce).
 */
const compile = (s: Schema, named: Map<string, () => Read>): Read | undefined => {
  if (typeof s === 'string') {
    if (s === 'string') return readString;
    if (s === 'long') return readSafeLong;
    if (s === 'boolean') return readBoolean;
    const ref = named.get(s);
    if (ref === undefined) return undefined;
    // Resolved at first use: a record may refer to itself (none does today).
    let r: Read | undefined;
    return (c) => (r ??= ref())(c);
  }
  if (Array.isArray(s)) {
    // ["null", T], as avsc reads it with wrapUnions false: index 0 null, 1 a T.
    const [first, second] = s as Schema[];
    if (s.length !== 2 || first !== 'null' || second === undefined) return undefined;
    const t = compile(second, named);
    if (t === undefined) return undefined;
    return (c) => {
      const i = readLong(c);
      if (i === 0) return null;
      if (i === 1) return t(c);
      throw UNSURE;
    };
  }
  const o = s as NamedSchema;
  if (typeof o.type !== 'string') return compile(o.type as Schema, named);
  if (o.logicalType !== undefined) {
    // The codec knows one logical type; avsc reads any other as its underlying type, which is not checked here.
    return o.type === 'long' && o.logicalType === 'timestamp-millis' ? readTimestamp : undefined;
  }
  switch (o.type) {
    case 'string':
    case 'long':
    case 'boolean':
      return compile(o.type, named);
    case 'enum': {
      const symbols = o.symbols;
      if (!Array.isArray(symbols)) return undefined;
      const read: Read = (c) => {
        const symbol = symbols[readLong(c)];
        if (symbol === undefined) throw UNSURE;
        return symbol;
      };
      if (o.name !== undefined) named.set(o.name, () => read);
      return read;
    }
    case 'array': {
      if (o.items === undefined) return undefined;
      const item = compile(o.items, named);
      if (item === undefined) return undefined;
      return (c) => {
        const out: unknown[] = [];
        for (let n = readLong(c); n !== 0; n = readLong(c)) {
          // A negative count (a block with its size) is avsc's to read; so is a count the bytes left cannot hold
          // (every item type here takes at least one byte), which avsc would allocate before failing.
          if (n < 0 || n > c.buf.length - c.pos) throw UNSURE;
          for (; n > 0; n--) out.push(item(c));
        }
        return out;
      };
    }
    case 'record': {
      if (!Array.isArray(o.fields)) return undefined;
      const names: string[] = [];
      const reads: Read[] = [];
      const read: Read = (c) => {
        // Fields in schema order, as avsc's record constructor assigns them; null (an absent optional) left out, as toPlain does.
        const out: Record<string, unknown> = {};
        for (let i = 0; i < reads.length; i++) {
          const v = (reads[i] as Read)(c);
          if (v !== null) out[names[i] as string] = v;
        }
        return out;
      };
      if (o.name !== undefined) named.set(o.name, () => read);
      for (const f of o.fields) {
        const r = compile(f.type, named);
        if (r === undefined) return undefined;
        names.push(f.name);
        reads.push(r);
      }
      return read;
    }
    default:
      return undefined;
  }
};

/**
 * A reader of Avro bodies of `schema` (the writer schema is the reader
 * schema: no resolution) to the codec's plain value, or undefined when the
 * schema uses a type it does not read. The reader returns undefined when it
 * is not sure of a body; decode that body with avsc.
 */
export const compilePlainReader = (schema: Schema): ((bytes: Buffer, start?: number) => unknown) | undefined => {
  const read = compile(schema, new Map());
  if (read === undefined) return undefined;
  // The body runs from `start` to the end of `bytes` (after the framing: no subarray per message).
  return (bytes, start = 0) => {
    const c: Cursor = { buf: bytes, pos: start };
    try {
      const v = read(c);
      // Trailing bytes: avsc's 'trailing data'.
      return c.pos === bytes.length ? v : undefined;
    } catch {
      // UNSURE, or toISOString's RangeError: avsc reads it and says what is wrong.
      return undefined;
    }
  };
};
