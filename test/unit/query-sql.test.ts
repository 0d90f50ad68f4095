import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DECISION_FILTERS,
  decisionByIdSql,
  delegatorSessionsSql,
  lastTiersSql,
  referencedSignalIdsSql,
  searchDecisionsSql,
  signalsByIdSql,
  timelineDecisionsSql,
  timelineSignalsSql,
  timelineTrustSql,
  timelineSql,
  mergeParams,
  trustHistorySql,
  type DecisionFilters,
  type Sql,
} from '../../services/query/sql.ts';

const HOSTILE = "x' OR 1=1 --";

/** Every {name:Type} placeholder has a parameter, and every parameter is used. */
const assertWellFormed = (s: Sql): void => {
  const placeholders = new Set([...s.query.matchAll(/\{(\w+):[^}]+\}/g)].map((m) => m[1]));
  assert.deepEqual([...placeholders].sort(), Object.keys(s.query_params).sort(), s.query);
};

describe('decision search SQL', () => {
  const all: DecisionFilters = Object.fromEntries(DECISION_FILTERS.map((f) => [f, f === 'effect' ? 'deny' : `${HOSTILE}${f}`]));

  test('every filter is a parameter; no value reaches the query text', () => {
    const s = searchDecisionsSql('tf', `${HOSTILE}tenant`, { ...all, from: '2026-06-09T00:00:00.000Z', to: '2026-06-10T00:00:00.000Z' }, { limit: 50, order: 'asc' });
    assertWellFormed(s);
    assert.doesNotMatch(s.query, /OR 1=1/);
    assert.equal(s.query_params['f_delegator'], `${HOSTILE}delegator`);
    assert.equal(s.query_params['tenant'], `${HOSTILE}tenant`);
    assert.match(s.query, /tenant = \{tenant:String\}/);
    assert.match(s.query, /rule_id = \{f_rule:String\}/);
    assert.match(s.query, /toString\(effect\) = \{f_effect:String\}/);
    assert.equal(s.query_params['from'], '2026-06-09 00:00:00.000');
  });

  test('asks for one row more than the page, to know whether there is a next page', () => {
    const s = searchDecisionsSql('tf', 'acme', {}, { limit: 50, order: 'asc' });
    assert.equal(s.query_params['limit'], 51);
  });

  test('a stable order with a tie-breaker; copies of an event adjacent, first stored (lowest offset) first, and no LIMIT BY (it defeats top-N)', () => {
    const s = searchDecisionsSql('tf', 'acme', {}, { limit: 10, order: 'desc' });
    assert.match(s.query, /ORDER BY occurred_at DESC, event_id DESC, kafka_offset ASC\nLIMIT \{limit:UInt32\}$/);
    assert.doesNotMatch(s.query, /LIMIT 1 BY/);
  });

  test('no read prefers a later copy: every collapse keeps the lowest offset', () => {
    for (const s of [
      decisionByIdSql('tf', 'acme', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e'),
      trustHistorySql('tf', 'acme', 'S-9'),
      signalsByIdSql('tf', 'acme', ['01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']),
      timelineSql('tf', 'acme', 'S-9', 10),
    ]) {
      assert.doesNotMatch(s.query, /kafka_offset DESC/);
      assert.match(s.query, /kafka_offset ASC/);
    }
  });

  test('every collapse is per tenant: an operator reading all tenants sees each tenant\'s copy of a shared id', () => {
    for (const s of [
      signalsByIdSql('tf', undefined, ['01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']),
      trustHistorySql('tf', 'acme', 'S-9'),
      timelineSql('tf', undefined, 'S-9', 10),
      delegatorSessionsSql('tf', undefined, 'U-442', {}, 10),
    ]) {
      assert.doesNotMatch(s.query, /LIMIT 1 BY (event_id|version)\b/);
      assert.match(s.query, /LIMIT 1 BY tenant, (event_id|version)/);
    }
  });

  test('by id: one row in a tenant; for an operator without a tenant, one per tenant holding the id (the caller refuses to guess)', () => {
    const scoped = decisionByIdSql('tf', 'acme', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e');
    assert.match(scoped.query, /LIMIT 1 BY tenant\nLIMIT 1$/);
    const operator = decisionByIdSql('tf', undefined, '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e');
    assert.doesNotMatch(operator.query, /tenant =/);
    assert.match(operator.query, /LIMIT 1 BY tenant\nLIMIT 20$/);
  });

  test('the keyset condition follows the order', () => {
    const after = { at: '2026-06-09T14:03:11.000Z', id: '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e' };
    const asc = searchDecisionsSql('tf', 'acme', {}, { limit: 10, order: 'asc', after });
    assertWellFormed(asc);
    assert.match(asc.query, /occurred_at >= \{after_at:DateTime64\(3, 'UTC'\)\} AND \(occurred_at > \{after_at:DateTime64\(3, 'UTC'\)\} OR event_id > \{after_id:UUID\}\)/);
    const desc = searchDecisionsSql('tf', 'acme', {}, { limit: 10, order: 'desc', after });
    assert.match(desc.query, /occurred_at <= .* OR event_id < \{after_id:UUID\}/);
  });

  test('an operator without a tenant reads every tenant; anyone else is always scoped', () => {
    assert.doesNotMatch(searchDecisionsSql('tf', undefined, {}, { limit: 1, order: 'asc' }).query, /tenant =/);
    for (const s of [
      searchDecisionsSql('tf', 'acme', {}, { limit: 1, order: 'asc' }),
      decisionByIdSql('tf', 'acme', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e'),
      trustHistorySql('tf', 'acme', 'S-9'),
      signalsByIdSql('tf', 'acme', ['01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e']),
      timelineDecisionsSql('tf', 'acme', 'S-9', 10),
      timelineSignalsSql('tf', 'acme', 'S-9', 10),
      timelineSql('tf', 'acme', 'S-9', 10),
      timelineTrustSql('tf', 'acme', 'S-9', 10),
      referencedSignalIdsSql('tf', 'acme', 'S-9'),
      delegatorSessionsSql('tf', 'acme', 'U-442', {}, 10),
    ]) {
      assertWellFormed(s);
      assert.match(s.query, /tenant = \{tenant:String\}/);
      assert.equal(s.query_params['tenant'], 'acme');
    }
  });

  test('the database name is an identifier, never a value', () => {
    assert.throws(() => searchDecisionsSql('tf`; DROP TABLE x', 'acme', {}, { limit: 1, order: 'asc' }), /plain identifier/);
  });
});

describe('timeline and delegator SQL', () => {
  test('timeline keyset: sources ranked before the cursor use >=, after it >, equal rank breaks ties by id', () => {
    const after = { at: '2026-06-09T14:01:57.000Z', rank: 1, id: '00000000000000000002' };
    const sig = timelineSignalsSql('tf', 'acme', 'S-9', 11, after);
    const trust = timelineTrustSql('tf', 'acme', 'S-9', 11, after);
    const dec = timelineDecisionsSql('tf', 'acme', 'S-9', 11, after);
    for (const s of [sig, trust, dec]) assertWellFormed(s);
    assert.match(sig.query, /occurred_at > \{after_at/);
    assert.match(dec.query, /occurred_at >= \{after_at/);
    assert.doesNotMatch(dec.query, /after_id/);
    assert.match(trust.query, /leftPad\(toString\(version\), 20, '0'\) > \{after_id:String\}/);
    // The causes' ids come from a subquery over the session's trust transitions, not a prior round trip.
    assert.match(sig.query, /event_id IN \(SELECT toUUIDOrZero\(id\) FROM \(\nSELECT DISTINCT arrayJoin/);
  });

  test('the timeline is one statement: three ranked branches (and the conflicting keys) whose shared parameters agree', () => {
    const after = { at: '2026-06-09T14:01:57.000Z', rank: 1, id: '00000000000000000002' };
    const s = timelineSql('tf', 'acme', HOSTILE, 11, after);
    assertWellFormed(s);
    assert.equal(s.query.split('UNION ALL').length, 4);
    assert.equal(timelineSql('tf', 'acme', HOSTILE, 11, after, 'inline').query.split('UNION ALL').length, 3);
    // Each branch renders its own select list into the row: no subquery per branch for the engine to plan.
    const branches = s.query.split('\nUNION ALL\n');
    assert.match(branches[0] ?? '', /^SELECT toUInt8\(0\) AS rank, formatRowNoNewline\('JSONEachRow', tenant, session_id, occurred_at, event_id, kind, subject, ref, payload\) AS row FROM `tf`\.`signals`\n/);
    assert.match(branches[1] ?? '', /^SELECT toUInt8\(1\) AS rank, formatRowNoNewline\('JSONEachRow', tenant, session_id, version, tier, updated_at, caused_by, state\) AS row FROM `tf`\.`trust_transitions`\n/);
    assert.match(branches[2] ?? '', /^SELECT toUInt8\(2\) AS rank, formatRowNoNewline\('JSONEachRow', \*\) AS row FROM `tf`\.`decisions`\n/);
    // Alone, a branch is the same statement with its list as the columns.
    assert.equal(branches[2]?.replace("SELECT toUInt8(2) AS rank, formatRowNoNewline('JSONEachRow', *) AS row", 'SELECT *'), timelineDecisionsSql('tf', 'acme', HOSTILE, 11, after, 'listed').query);
    assert.equal(s.query_params['session'], HOSTILE);
    assert.equal(s.query_params['limit'], 11);
    assert.ok(!s.query.includes(HOSTILE));
  });

  test('combining queries refuses one parameter name bound to two values', () => {
    assert.deepEqual(mergeParams({ a: 1 }, { a: 1, b: [2] }), { a: 1, b: [2] });
    assert.throws(() => mergeParams({ a: 1 }, { a: 2 }), /parameter a bound to two values/);
  });

  test('delegator sessions: window, counts and keyset on (last activity, session)', () => {
    const s = delegatorSessionsSql('tf', 'acme', HOSTILE, { from: '2026-06-08T14:00:00.000Z' }, 20, { last: '2026-06-09T14:03:11.000Z', tenant: 'acme', session: 'S-9' });
    assertWellFormed(s);
    assert.equal(s.query_params['f_delegator'], HOSTILE);
    assert.equal(s.query_params['limit'], 21);
    assert.match(s.query, /countIf\(effect = 'deny'\) AS denies/);
    assert.match(s.query, /HAVING \(last_at < /);
    assert.match(s.query, /LIMIT 1 BY tenant, event_id/);
  });

  test('last tiers take the highest version per session', () => {
    const s = lastTiersSql('tf', [{ tenant: 'acme', session: 'S-9' }]);
    assertWellFormed(s);
    assert.match(s.query, /argMax\(tier, version\) AS last_tier/);
    assert.deepEqual(s.query_params['tenants'], ['acme']);
    assert.deepEqual(s.query_params['sessions'], ['S-9']);
  });
});

describe('trust lag and conflict flags SQL', () => {
  test('trust steps read no state; states by version are parameters', async () => {
    const { trustStepsSql, trustByVersionsSql } = await import('../../services/query/sql.ts');
    const steps = trustStepsSql('tf', 'acme', "S-9' OR 1=1");
    assert.doesNotMatch(steps.query, /state|S-9/);
    assert.match(steps.query, /LIMIT 1 BY version/);
    assert.deepEqual(steps.query_params, { tenant: 'acme', session: "S-9' OR 1=1" });
    const byVersion = trustByVersionsSql('tf', 'acme', 'S-9', [1, 3, 3]);
    assert.match(byVersion.query, /version IN \{versions:Array\(UInt64\)\}/);
    assert.deepEqual(byVersion.query_params['versions'], [1, 3]);
  });

  test('search and every timeline branch carry `conflicted`, scoped to the tenant when there is one', async () => {
    const { searchDecisionsSql: search, timelineSql: timeline } = await import('../../services/query/sql.ts');
    const scoped = search('tf', 'acme', {}, { limit: 10, order: 'asc' });
    assert.match(scoped.query, /\(tenant, toString\(event_id\)\) IN \(SELECT tenant, record_key FROM `tf`\.`conflicts` WHERE namespace = 'event' AND tenant = \{tenant:String\}\) AS conflicted/);
    assert.doesNotMatch(search('tf', undefined, {}, { limit: 10, order: 'asc' }).query, /\{tenant:String\}/, 'an operator reading all tenants');
    const t = timeline('tf', 'acme', 'S-9', 10, undefined, 'inline');
    assert.equal(t.query.match(/AS conflicted/g)?.length, 3);
    assert.match(t.query, /concat\(toString\(version\), ':', session_id\)\) IN \(SELECT tenant, record_key FROM `tf`\.`conflicts` WHERE namespace = 'trust'/);
  });

  test('a listed timeline carries no per-branch set: a fourth branch lists the conflicting keys, one past the cap', async () => {
    const { timelineSql: timeline, TIMELINE_CONFLICT_KEYS, TIMELINE_CONFLICTS_RANK } = await import('../../services/query/sql.ts');
    const t = timeline('tf', 'acme', 'S-9', 10);
    assert.doesNotMatch(t.query, /conflicted|IN \(SELECT tenant, record_key/);
    const branches = t.query.split('\nUNION ALL\n');
    assert.equal(branches.length, 4);
    assert.match(branches[3] ?? '', new RegExp(`^SELECT toUInt8\\(${TIMELINE_CONFLICTS_RANK}\\) AS rank, concat\\(tenant, '\\\\0', namespace, '\\\\0', record_key\\) AS row FROM \`tf\`\\.\`conflicts\`\\nWHERE tenant = \\{tenant:String\\}\\nLIMIT \\{conflict_keys:UInt32\\}$`));
    assert.equal(t.query_params['conflict_keys'], TIMELINE_CONFLICT_KEYS + 1);
    assert.doesNotMatch(timeline('tf', undefined, 'S-9', 10).query.split('\nUNION ALL\n')[3] ?? '', /tenant = /, 'an operator: every tenant\'s keys');
  });
});
