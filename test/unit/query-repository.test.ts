// The repository's paging logic against a scripted ClickHouse client: which
// statements it sends and what it makes of the rows, without an engine.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import { parseEvent } from '../../schemas/codec.ts';
import type { DecisionRecord } from '../../schemas/clickhouse/rows-read.ts';
import { decisionRow } from '../../schemas/clickhouse/rows-write.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { createAuditRepository, referencedSignalIds } from '../../services/query/repository.ts';
import { conflictKey, TIMELINE_CONFLICT_KEYS, TIMELINE_CONFLICTS_RANK } from '../../services/query/sql.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

type Sent = { query: string; query_params: Record<string, unknown>; clickhouse_settings?: Record<string, unknown> };

/** A client whose every query answers with the next scripted list of rows, and remembers what it was asked. */
const scripted = (answers: unknown[][]): { client: ClickHouseClient; sent: Sent[] } => {
  const sent: Sent[] = [];
  const client = {
    query: async (p: Sent) => {
      sent.push({ query: p.query, query_params: p.query_params, ...(p.clickhouse_settings !== undefined ? { clickhouse_settings: p.clickhouse_settings } : {}) });
      const rows = answers.shift() ?? [];
      return { json: async () => rows };
    },
  } as unknown as ClickHouseClient;
  return { client, sent };
};

const base = ((): DecisionEvent => {
  const r = parseEvent(decisionFixture);
  if (!r.ok) assert.fail(JSON.stringify(r.error));
  return r.value as DecisionEvent;
})();

/** A stored copy of a decision as the engine returns it (JSONEachRow, ISO times). */
const stored = (n: number, offset: number): DecisionRecord => {
  const e: DecisionEvent = { ...base, event_id: `01976d2a-0000-7000-8000-${String(n).padStart(12, '0')}`, occurred_at: `2026-06-09T14:03:${String(10 + n).padStart(2, '0')}.000Z` };
  const row = decisionRow(e, { topic: 't', partition: 0, offset: String(offset) });
  const iso = (v: unknown): string | null => (v === null ? null : `${String(v).replace(' ', 'T')}Z`);
  return {
    ...(row as unknown as DecisionRecord),
    occurred_at: iso(row.occurred_at) ?? '',
    token_issued_at: iso(row.token_issued_at),
    token_expires_at: iso(row.token_expires_at),
    ingested_at: '2026-06-09T14:04:00.000Z',
  };
};

describe('search paging with re-delivered copies', () => {
  test('one statement per page when there are no copies; the extra row only says a next page exists', async () => {
    const { client, sent } = scripted([[stored(1, 10), stored(2, 11), stored(3, 12)]]);
    const page = await createAuditRepository(client, 'tf').searchDecisions('acme', { session: 'S-9' }, { limit: 2, order: 'asc' });
    assert.deepEqual(page.items.map((d) => d.event_id), [stored(1, 0).event_id, stored(2, 0).event_id]);
    assert.deepEqual(page.next, { at: '2026-06-09T14:03:12.000Z', id: stored(2, 0).event_id });
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.query_params['limit'], 3);
    assert.equal(sent[0]?.query_params['tenant'], 'acme');
  });

  test('copies are dropped (the highest offset, first in order, is kept) and a short page is topped up past them', async () => {
    // Page of 2 (asks 3): event 1 stored three times fills the first answer; the top-up resumes after its key.
    const { client, sent } = scripted([
      [stored(1, 30), stored(1, 20), stored(1, 10)],
      [stored(2, 40), stored(3, 41), stored(4, 42)],
    ]);
    const page = await createAuditRepository(client, 'tf').searchDecisions('acme', {}, { limit: 2, order: 'asc' });
    assert.deepEqual(page.items.map((d) => d.event_id), [stored(1, 0).event_id, stored(2, 0).event_id]);
    assert.equal(page.items[0]?.audit.kafka.offset, '30');
    assert.ok(page.next !== undefined, 'a third distinct event exists: the page says so');
    assert.equal(sent.length, 2);
    assert.equal(sent[1]?.query_params['after_at'], '2026-06-09 14:03:11.000');
    assert.equal(sent[1]?.query_params['after_id'], stored(1, 0).event_id);
  });

  test('copies at the very end: no phantom next page', async () => {
    const { client, sent } = scripted([[stored(1, 11), stored(1, 10)], []]);
    const page = await createAuditRepository(client, 'tf').searchDecisions('acme', {}, { limit: 1, order: 'desc' });
    assert.deepEqual(page.items.map((d) => d.event_id), [stored(1, 0).event_id]);
    assert.equal(page.next, undefined);
    assert.equal(sent.length, 2);
  });
});

describe('timeline', () => {
  test('is one statement; rows come back ranked and are mapped by their rank', async () => {
    const { client, sent } = scripted([[{ rank: 2, row: JSON.stringify(stored(1, 5)) }]]);
    const page = await createAuditRepository(client, 'tf').timeline('acme', 'S-9', 10);
    assert.equal(sent.length, 1);
    assert.equal(page.items.length, 1);
    assert.equal(page.items[0]?.kind, 'decision');
    assert.equal(page.next, undefined);
  });

  test('entries whose key the statement lists as conflicting are flagged, the others not', async () => {
    const [one, two] = [stored(1, 5), stored(2, 6)];
    const { client, sent } = scripted([
      [
        { rank: 2, row: JSON.stringify(one) },
        { rank: 2, row: JSON.stringify(two) },
        { rank: TIMELINE_CONFLICTS_RANK, row: conflictKey('acme', 'event', two.event_id) },
        { rank: TIMELINE_CONFLICTS_RANK, row: conflictKey('acme', 'trust', '3:S-9') },
        { rank: TIMELINE_CONFLICTS_RANK, row: conflictKey('globex', 'event', one.event_id) },
      ],
    ]);
    const page = await createAuditRepository(client, 'tf').timeline('acme', 'S-9', 10);
    assert.equal(sent.length, 1);
    assert.deepEqual(page.items.map((e) => [e.kind, e.conflicted]), [['decision', false], ['decision', true]]);
    assert.doesNotMatch(sent[0]?.query ?? '', /AS conflicted/);
  });

  test('more conflicting keys than listed: the page is read again with the flags from the engine', async () => {
    const many = Array.from({ length: TIMELINE_CONFLICT_KEYS + 1 }, (_, i) => ({ rank: TIMELINE_CONFLICTS_RANK, row: conflictKey('acme', 'event', `k-${i}`) }));
    const { client, sent } = scripted([
      [{ rank: 2, row: JSON.stringify(stored(1, 5)) }, ...many],
      [{ rank: 2, row: JSON.stringify({ ...stored(1, 5), conflicted: 1 }) }],
    ]);
    const page = await createAuditRepository(client, 'tf').timeline('acme', 'S-9', 10);
    assert.equal(sent.length, 2);
    assert.match(sent[1]?.query ?? '', /AS conflicted/);
    assert.deepEqual(page.items.map((e) => e.conflicted), [true]);
  });
});

const FREEZE_EVENT = signalFixtures.change_freeze_raised.event_id;
const OWN_SIGNAL = signalFixtures.injection_detected.event_id;
/** A signal as the engine returns it (JSONEachRow, ISO times), its payload the event. */
const storedSignal = (e: { event_id: string; occurred_at: string; session_id?: string; kind: string }): Record<string, unknown> => ({
  tenant: 'acme', session_id: e.session_id ?? '', occurred_at: e.occurred_at, event_id: e.event_id, kind: e.kind, subject: '', ref: '', payload: JSON.stringify(e),
});

/** A stored trust transition of S-9 (JSONEachRow), caused by `causedBy`, under the freeze FREEZE_EVENT raised. */
const transition = (version: number, causedBy: string): Record<string, unknown> => {
  const at = `2026-06-09T14:0${version}:00.000Z`;
  const state = {
    session_id: 'S-9', tenant_id: 'acme', version, tier: 'restricted', causes: [{ kind: 'injection', ref: 'SIG-1', event_id: OWN_SIGNAL.toUpperCase(), since: at, tier: 'restricted' }],
    revoked_roles: [], consent_revoked: false, freezes: [{ freeze_id: 'F-1', scope: { resource_prefix: 'repo:' }, reason: 'incident', event_id: FREEZE_EVENT }], ended: false, updated_at: at, caused_by: causedBy,
  };
  return { tenant: 'acme', session_id: 'S-9', version, tier: 'restricted', updated_at: at, caused_by: causedBy, state: JSON.stringify(state) };
};
const ownSignal = storedSignal(signalFixtures.injection_detected);

describe('timeline: the signals its trust transitions name', () => {
  test('a transition names its cause, its causes and its freezes, in lower case; what is not a UUID names nothing', () => {
    const t = transition(1, OWN_SIGNAL) as { caused_by: string; state: string };
    assert.deepEqual(referencedSignalIds(t), [OWN_SIGNAL, OWN_SIGNAL, FREEZE_EVENT]);
    assert.deepEqual(referencedSignalIds({ caused_by: 'not-a-uuid', state: JSON.stringify({ causes: [{ event_id: 7 }, null], freezes: [{}] }) }), []);
  });

  test('a first page whose transitions all came back reads its own signals in the statement and the freeze\'s signal by id, once', async () => {
    const { client, sent } = scripted([
      [{ rank: 0, row: JSON.stringify(ownSignal) }, { rank: 1, row: JSON.stringify(transition(1, OWN_SIGNAL)) }, { rank: 1, row: JSON.stringify(transition(2, FREEZE_EVENT)) }],
      [{ rank: 0, row: JSON.stringify(storedSignal(signalFixtures.change_freeze_raised)) }],
    ]);
    const page = await createAuditRepository(client, 'tf').timeline('acme', 'S-9', 10);
    assert.equal(sent.length, 2);
    assert.doesNotMatch(sent[0]?.query ?? '', /toUUIDOrZero/, 'no subquery for the references');
    assert.match(sent[1]?.query ?? '', /session_id != \{session:String\} AND event_id IN \{ref_ids:Array\(UUID\)\}/);
    assert.deepEqual(sent[1]?.query_params['ref_ids'], [FREEZE_EVENT], 'the own signal, named in upper case, is not asked for again');
    assert.deepEqual(page.items.map((e) => (e.kind === 'signal' ? e.event_id : e.kind)), ['trust', OWN_SIGNAL, 'trust', FREEZE_EVENT]);
  });

  test('a signal of another subject read once serves later pages that name it (write-once), in the tenant and with listed flags only', async () => {
    const freezeRow = { rank: 0, row: JSON.stringify(storedSignal(signalFixtures.change_freeze_raised)) };
    const page = [{ rank: 0, row: JSON.stringify(ownSignal) }, { rank: 1, row: JSON.stringify(transition(2, FREEZE_EVENT)) }];
    const { client, sent } = scripted([page, [freezeRow], page, page, [freezeRow]]);
    const repo = createAuditRepository(client, 'tf');
    const first = await repo.timeline('acme', 'S-9', 10);
    const again = await repo.timeline('acme', 'S-9', 10);
    assert.equal(sent.length, 3, 'the second page named the freeze and did not read it again');
    assert.deepEqual(again.items, first.items);
    await repo.timeline(undefined, 'S-9', 10);
    assert.equal(sent.length, 5, 'an operator reads it (no tenant to key it by)');
  });

  test('for an operator (every tenant) the session\'s own signals are not struck off: another tenant may hold their ids elsewhere', async () => {
    const { client, sent } = scripted([[{ rank: 0, row: JSON.stringify(ownSignal) }, { rank: 1, row: JSON.stringify(transition(1, OWN_SIGNAL)) }], []]);
    await createAuditRepository(client, 'tf').timeline(undefined, 'S-9', 10);
    assert.equal(sent.length, 2);
    assert.deepEqual(sent[1]?.query_params['ref_ids'], [OWN_SIGNAL, FREEZE_EVENT]);
    assert.doesNotMatch(sent[1]?.query ?? '', /tenant = /);
  });

  test('transitions that name only the session\'s own signals: one statement', async () => {
    const t1 = transition(1, OWN_SIGNAL);
    const state = { ...(JSON.parse(String(t1['state'])) as Record<string, unknown>), freezes: [] };
    const { client, sent } = scripted([[{ rank: 0, row: JSON.stringify(ownSignal) }, { rank: 1, row: JSON.stringify({ ...t1, state: JSON.stringify(state) }) }]]);
    const page = await createAuditRepository(client, 'tf').timeline('acme', 'S-9', 10);
    assert.equal(sent.length, 1);
    assert.equal(page.items.length, 2);
  });

  test('more transitions than the page, or a later page: the engine resolves the references in the statement', async () => {
    const full = [1, 2].map((v) => ({ rank: 1, row: JSON.stringify(transition(v, OWN_SIGNAL)) }));
    const first = scripted([full, full]);
    await createAuditRepository(first.client, 'tf').timeline('acme', 'S-9', 1);
    assert.equal(first.sent.length, 2);
    assert.doesNotMatch(first.sent[0]?.query ?? '', /toUUIDOrZero/);
    assert.match(first.sent[1]?.query ?? '', /OR event_id IN \(SELECT toUUIDOrZero\(id\)/);
    const later = scripted([[]]);
    await createAuditRepository(later.client, 'tf').timeline('acme', 'S-9', 10, { at: '2026-06-09T14:00:00.000Z', rank: 1, id: '00000000000000000001' });
    assert.equal(later.sent.length, 1);
    assert.match(later.sent[0]?.query ?? '', /OR event_id IN \(SELECT toUUIDOrZero\(id\)/);
  });
});

describe('read settings', () => {
  test('travel in each statement, never as client settings (the embedded engine would spend a SET and a reset on them)', async () => {
    const { client, sent } = scripted([[], [], [], [], []]);
    const repo = createAuditRepository(client, 'tf');
    await repo.timeline('acme', 'S-9', 10);
    await repo.searchDecisions('acme', { session: 'S-9' }, { limit: 2, order: 'asc' });
    await repo.trustHistory('acme', 'S-9');
    await repo.delegatorSessions('acme', 'U-1', {}, 10);
    assert.equal(sent.length, 4);
    for (const s of sent) {
      assert.equal(s.clickhouse_settings, undefined);
      assert.match(s.query, /\nSETTINGS date_time_output_format = 'iso', output_format_json_quote_64bit_integers = 0$/);
    }
  });
});
