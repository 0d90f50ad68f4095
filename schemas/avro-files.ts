// The exported `.avsc` folder, for consumers in other languages. Every named
// type is defined exactly once in the folder, so one parser (Java's
// `Schema.Parser`, avsc with one registry, …) accepts all of it:
//
//   common.avsc  the named types several schemas share (COMMON_TYPES), as one
//                union in dependency order — parse it first;
//   <kind>.avsc  one per event type, plus session-trust.avsc; shared types are
//                referenced by full name, the types only one schema uses are
//                defined inline.
//
// The wire fingerprints are those of the self-contained schemas in avro.ts.
// Resolving the references gives the same Parsing Canonical Form, so the
// folder and the codec agree byte for byte (test/unit/avro-files.test.ts).
import { COMMON_TYPES, EVENT_SCHEMAS, SESSION_TRUST_SCHEMA, defineOnce, type Schema } from './avro.ts';

export const COMMON_FILE = 'common.avsc';

const nameOf = (s: Schema): string => {
  if (typeof s === 'object' && !Array.isArray(s) && typeof s.name === 'string') return s.name;
  throw new Error('COMMON_TYPES holds only named types');
};

const text = (schema: Schema): string => `${JSON.stringify(schema, null, 2)}\n`;

/** File name → contents of the exported `.avsc` files; `common.avsc` first. */
export const avscFiles = (): Record<string, string> => {
  const out: Record<string, string> = { [COMMON_FILE]: text(defineOnce([...COMMON_TYPES], new Set())) };
  const common = COMMON_TYPES.map(nameOf);
  for (const [key, schema] of Object.entries({ ...EVENT_SCHEMAS, session_trust: SESSION_TRUST_SCHEMA })) {
    out[`${key.replaceAll('_', '-')}.avsc`] = text(defineOnce(schema, new Set(common)));
  }
  return out;
};
