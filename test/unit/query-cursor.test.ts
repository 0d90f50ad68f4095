import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CURSOR_KEYS, decodeCursor, decodeKey, encodeCursor, queryHash } from '../../services/query/cursor.ts';

describe('cursor', () => {
  const q = queryHash('decisions', { tenant: 'acme', order: 'asc', rule: 'r1' });

  test('round trips the sort key and is opaque (base64url, no raw values)', () => {
    const c = encodeCursor(q, ['2026-06-09T14:03:11.000Z', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']);
    assert.match(c, /^[A-Za-z0-9_-]+$/);
    assert.doesNotMatch(c, /2026/);
    const back = decodeCursor(c, q);
    assert.ok(back.ok);
    assert.deepEqual(back.value, ['2026-06-09T14:03:11.000Z', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']);
  });

  test('property: any key of strings and integers round trips', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ maxLength: 100 }), fc.integer()), { minLength: 1, maxLength: 4 }), (key) => {
        const r = decodeCursor(encodeCursor(q, key), q);
        return r.ok && JSON.stringify(r.value) === JSON.stringify(key);
      }),
    );
  });

  test('a cursor of another query is refused', () => {
    const other = queryHash('decisions', { tenant: 'acme', order: 'asc', rule: 'r2' });
    const r = decodeCursor(encodeCursor(other, ['a']), q);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.error, /different query/);
  });

  test('the query hash ignores key order but not values or tenant', () => {
    assert.equal(queryHash('x', { a: 1, b: 2 }), queryHash('x', { b: 2, a: 1 }));
    assert.notEqual(queryHash('x', { tenant: 'a' }), queryHash('x', { tenant: 'b' }));
    assert.notEqual(queryHash('x', { tenant: 'a' }), queryHash('y', { tenant: 'a' }));
  });

  test('garbage and tampering are refused, never thrown', () => {
    const tampered = Buffer.from(JSON.stringify({ v: 1, q, k: [{ $gt: '' }] })).toString('base64url');
    for (const bad of ['', '!!!', 'eyJ2IjoxfQ', Buffer.from('null').toString('base64url'), tampered, 'a'.repeat(3000)]) {
      const r = decodeCursor(bad, q);
      assert.equal(r.ok, false, bad);
    }
  });
});

describe('decodeKey: a key of the shape the route issues, or a refusal', () => {
  const q = queryHash('decisions', { tenant: 'acme', order: 'asc' });
  const forge = (k: unknown[]) => Buffer.from(JSON.stringify({ v: 1, q, k })).toString('base64url');
  test('a forged time or id is refused, never handed to SQL', () => {
    for (const k of [['not-a-time', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e'], ['2026-06-09T14:03:11.000Z', 'not-a-uuid'], ['2026-06-09 14:03:11', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']]) {
      const r = decodeKey(forge(k), q, CURSOR_KEYS.decisions);
      assert.equal(r.ok, false, JSON.stringify(k));
    }
    const good = decodeKey(forge(['2026-06-09T14:03:11.000Z', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']), q, CURSOR_KEYS.decisions);
    assert.ok(good.ok);
    assert.equal(decodeKey(forge(['2026-06-09T14:03:11.000Z', 1.5, 'x']), q, CURSOR_KEYS.timeline).ok, false);
  });
});
