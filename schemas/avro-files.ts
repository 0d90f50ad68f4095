import { EVENT_SCHEMAS, SESSION_TRUST_SCHEMA } from './avro.ts';

/** File name → contents of the exported `.avsc` files. */
export const avscFiles = (): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [key, schema] of Object.entries({ ...EVENT_SCHEMAS, session_trust: SESSION_TRUST_SCHEMA })) {
    out[`${key.replaceAll('_', '-')}.avsc`] = `${JSON.stringify(schema, null, 2)}\n`;
  }
  return out;
};
