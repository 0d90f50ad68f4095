// The fast path of the ingest edge against zod itself: over every fixture and
// thousands of mutations of them (each field removed, replaced by values at
// and past every bound, wrong types, extra keys, timestamp and uuid edge
// cases), the compiled checker accepts exactly what zod accepts, and what it
// accepts it returns deep-equal to zod's output with the same key order.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { z } from 'zod';
import { eventSchema } from '../../schemas/events.ts';
import { compileFastParse, DECLINE } from '../../services/ingest/fast-parse.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';
import { isContainer, paths, setAt } from '../helpers/json-paths.ts';

const fast = compileFastParse(eventSchema);

const clone = <T>(v: T): T => structuredClone(v);

/** Values to put at any position: types, bounds, formats. */
const REPLACEMENTS: unknown[] = [
  undefined,
  null,
  '',
  'x',
  'x'.repeat(256),
  'x'.repeat(257),
  'x'.repeat(4096),
  'x'.repeat(4097),
  0,
  -1,
  1.5,
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  Infinity,
  Number.NaN,
  true,
  [],
  ['x'],
  {},
  // timestamps: normal form, other offsets and precisions, impossible dates
  '2026-06-09T14:03:11.000Z',
  '2026-06-09T14:03:11Z',
  '2026-06-09T14:03:11.5+02:00',
  '2026-06-09T14:03:11.123456-05:30',
  '2024-02-29T00:00:00.000Z',
  '2026-02-29T00:00:00.000Z',
  '2026-06-09 14:03:11Z',
  '2026-06-09T24:00:00Z',
  // uuids
  '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e',
  '01976D2A-9E1B-7C3A-8D4E-5F6A7B8C9D0E',
  '00000000-0000-0000-0000-000000000000',
  '01976d2a-9e1b-9c3a-8d4e-5f6a7b8c9d0e',
  '01976d2a9e1b7c3a8d4e5f6a7b8c9d0e',
  // enum-ish
  'deny',
  'allow',
  'human',
  'decision',
  'signal',
  'trusted',
  'critical',
];

const mutants = (base: unknown): unknown[] => {
  const out: unknown[] = [];
  for (const p of paths(base)) {
    out.push(setAt(base, p, undefined, true));
    for (const r of REPLACEMENTS) out.push(setAt(base, p, r));
  }
  for (const p of [[], ...paths(base)]) {
    let node = base;
    for (const k of p) node = (node as Record<string | number, unknown>)[k];
    if (isContainer(node) && !Array.isArray(node)) out.push(setAt(base, [...p, 'extra'], 1));
    if (Array.isArray(node)) {
      out.push(setAt(base, [...p, node.length], node[0]));
      out.push(setAt(base, p, Array.from({ length: 70 }, () => node[0])));
    }
  }
  out.push(null, 1, 'x', [], [base], { ...(base as object), __proto__: { x: 1 } });
  out.push(JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(base).slice(1)}`));
  return out;
};

const agree = (input: unknown): 'accepted' | 'declined' => {
  const z = eventSchema.safeParse(input);
  const f = fast?.(input);
  if (f === DECLINE) {
    assert.equal(z.success, false, `fast path declined what zod accepts: ${JSON.stringify(input)}`);
    return 'declined';
  }
  assert.ok(z.success, `fast path accepted what zod refuses: ${JSON.stringify(input)} — ${z.error?.message ?? ''}`);
  assert.deepStrictEqual(f, z.data);
  assert.equal(JSON.stringify(f), JSON.stringify(z.data), 'same key order');
  return 'accepted';
};

const fixtures: [string, unknown][] = [['decision', decisionFixture], ...Object.entries(signalFixtures)];

describe('compileFastParse(eventSchema)', () => {
  test('the contract compiles (nothing in it is unknown to the fast path)', () => {
    assert.equal(typeof fast, 'function');
  });

  for (const [name, fixture] of fixtures) {
    test(`${name}: the fixture is accepted with zod's output`, () => {
      assert.equal(agree(clone(fixture)), 'accepted');
      assert.equal(agree({ ...clone(fixture as object), emitted_by: 'gw-1' }), 'accepted');
    });
    test(`${name}: every mutation gets zod's verdict and output`, () => {
      const counts = { accepted: 0, declined: 0 };
      for (const m of mutants(fixture)) counts[agree(m)]++;
      // Both sides are exercised: many mutations are valid, many are not.
      assert.ok(counts.accepted > 5 && counts.declined > 50, JSON.stringify(counts));
    });
  }

  test('defaults are fresh per parse, as with zod', () => {
    const d = clone(decisionFixture) as { decision: Record<string, unknown> };
    delete d.decision['reasons'];
    const a = fast?.(d);
    const b = fast?.(d);
    assert.ok(a !== DECLINE && b !== DECLINE);
    const reasons = (x: unknown) => (x as { decision: { reasons: unknown[] } }).decision.reasons;
    assert.deepEqual(reasons(a), []);
    assert.notEqual(reasons(a), reasons(b));
  });

  test('a schema with a construct it does not know is declined at compile time', () => {
    assert.equal(compileFastParse(z.object({ a: z.string() }).refine(() => true)), undefined);
    assert.equal(compileFastParse(z.object({ a: z.email() }).strict()), undefined);
    assert.equal(compileFastParse(z.object({ a: z.string() })), undefined, 'a non-strict object strips keys: not compiled');
    assert.equal(compileFastParse(z.union([z.string(), z.number()])), undefined);
  });
});
