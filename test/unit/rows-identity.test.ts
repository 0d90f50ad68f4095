// The write-once identity's canonical JSON: digests in the index were computed
// by the first version of canonicalJson and are compared with new ones
// forever, so the faster one must write the very same text for every value.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalJson, contentDigest, eventIdentity, trustIdentity } from '../../schemas/clickhouse/rows-identity.ts';
import { incident } from '../helpers/audit-incident.ts';

/** canonicalJson as first released (schemas/clickhouse/rows.ts, before the split): the reference. */
const reference = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${reference(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
};

describe('canonical JSON of a record', () => {
  test('writes the reference text for any value: nested objects, arrays with undefined and null, unicode keys, numbers', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withObjectString: true, withSparseArray: true, maxDepth: 4 }), (v) => {
        assert.equal(canonicalJson(v), reference(v));
      }),
      { numRuns: 3000 },
    );
  });

  test('keys that sort differently by code unit and by locale keep the code-unit order', () => {
    const v = { b: 1, B: 2, 'é': 3, e: 4, '\u{1F600}': 5, '\uFF5E': 6, a: { z: [1, undefined, null], y: undefined } };
    assert.equal(canonicalJson(v), reference(v));
    assert.equal(canonicalJson(v), '{"B":2,"a":{"z":[1,,null]},"b":1,"e":4,"é":3,"\u{1F600}":5,"\uFF5E":6}');
  });

  test('every record of the incident fixture has the digest the reference gives', () => {
    const inc = incident();
    for (const e of [...inc.decisions, ...inc.signals]) assert.equal(eventIdentity(e).digest, contentDigest(reference(e)));
    for (const s of inc.trust) assert.equal(trustIdentity(s).digest, contentDigest(reference(s)));
  });
});
