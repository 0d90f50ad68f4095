// canonicalJson (schemas/clickhouse/rows-identity.ts) of a record the sink's
// decoder returned, without sorting keys at run time: for each Avro schema of
// the contract a writer is built once, its record fields in canonicalJson's
// key order (UTF-16 code units), each with the writer of its type. A decoded
// record's objects are plain and hold only fields of their schema, absent
// fields have no key (the codec drops Avro's nulls), so the text is the very
// one canonicalJson writes; test/unit/audit-sink-contract.test.ts holds the two against
// each other on random records of every schema and on the incident fixture.
import { EVENT_SCHEMAS, SESSION_TRUST_SCHEMA, type EventSchemaKey, type Schema } from '../../schemas/avro.ts';
import { canonicalJson } from '../../schemas/clickhouse/rows-identity.ts';

type Writer = (v: unknown) => string;

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'string', 'bytes']);
const json: Writer = (v) => JSON.stringify(v);

const compile = (s: Schema, named: Map<string, Writer>): Writer => {
  if (typeof s === 'string') {
    if (PRIMITIVES.has(s)) return json;
    // A reference to a named type defined earlier in the schema (defineOnce).
    return (v) => {
      const w = named.get(s);
      if (w === undefined) throw new Error(`schema names ${s} before defining it`);
      return w(v);
    };
  }
  if (Array.isArray(s)) {
    // ["null", T] is an optional T; the codec dropped its nulls. Any other union: the general writer.
    const branches = s.filter((b) => b !== 'null');
    const only = branches[0];
    return branches.length === 1 && only !== undefined ? compile(only, named) : canonicalJson;
  }
  const o = s as { type: unknown; name?: string; fields?: { name: string; type: Schema }[]; items?: Schema };
  if (o.type === 'record' && Array.isArray(o.fields)) {
    const fields: [string, string, Writer][] = [];
    const w: Writer = (v) => {
      const r = v as Record<string, unknown>;
      let out = '{';
      for (const [name, prefix, write] of fields) {
        const x = r[name];
        if (x === undefined) continue;
        out += out.length === 1 ? prefix : `,${prefix}`;
        out += write(x);
      }
      return `${out}}`;
    };
    if (o.name !== undefined) named.set(o.name, w);
    for (const f of [...o.fields].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      fields.push([f.name, `${JSON.stringify(f.name)}:`, compile(f.type, named)]);
    }
    return w;
  }
  if (o.type === 'enum' || o.type === 'fixed') {
    if (o.name !== undefined) named.set(o.name, json);
    return json;
  }
  if (o.type === 'array' && o.items !== undefined) {
    const item = compile(o.items, named);
    return (v) => {
      const a = v as unknown[];
      let out = '[';
      for (let i = 0; i < a.length; i++) out += i === 0 ? item(a[i]) : `,${item(a[i])}`;
      return `${out}]`;
    };
  }
  if (typeof o.type === 'string' && PRIMITIVES.has(o.type)) return json; // a logical type: the codec's value is its JSON form
  if (typeof o.type === 'object' && o.type !== null) return compile(o.type as Schema, named);
  return canonicalJson;
};

const writers = new Map<EventSchemaKey | 'session_trust', Writer>(
  [...(Object.entries(EVENT_SCHEMAS) as [EventSchemaKey, Schema][]), ['session_trust', SESSION_TRUST_SCHEMA] as const].map(([k, s]) => [k, compile(s, new Map())]),
);

/** canonicalJson of a record the sink's decoder returned for schema `key` (not of any value: see above). */
export const decodedCanonicalJson = (key: EventSchemaKey | 'session_trust', record: object): string => (writers.get(key) ?? canonicalJson)(record);
