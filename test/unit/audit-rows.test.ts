import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseEvent } from '../../schemas/codec.ts';
import {
  compact,
  decisionFromRecord,
  decisionRow,
  fromClickHouseTime,
  signalFromRecord,
  signalIndexFields,
  signalRow,
  toClickHouseTime,
  type DecisionRecord,
  type DecisionRow,
  type SignalRecord,
} from '../../schemas/clickhouse/rows.ts';
import { DECISIONS, insertColumns, SIGNALS } from '../../schemas/clickhouse/tables.ts';
import { SIGNAL_KINDS, type DecisionEvent, type SignalEvent, type TrustfoldEvent } from '../../schemas/events.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const parse = (input: unknown): TrustfoldEvent => {
  const r = parseEvent(input);
  if (!r.ok) assert.fail(JSON.stringify(r.error));
  return r.value;
};
const decision = parse(decisionFixture) as DecisionEvent;
const at = { topic: 'trustfold.decisions.v1', partition: 2, offset: '41' };

/** What ClickHouse hands back for a row the sink wrote (JSONEachRow, iso times, quoted UInt64). */
const asRead = (row: DecisionRow): DecisionRecord => {
  const iso = (v: unknown): string | null => (v === null ? null : `${String(v).replace(' ', 'T')}Z`);
  return {
    ...(row as unknown as DecisionRecord),
    occurred_at: iso(row.occurred_at) ?? '',
    token_issued_at: iso(row.token_issued_at),
    token_expires_at: iso(row.token_expires_at),
    trust_version: row.trust_version === null ? null : String(row.trust_version),
    ingested_at: '2026-06-09T14:03:11.250Z',
  };
};

describe('decision row', () => {
  const row = decisionRow(decision, at);

  test('flattens the chain: delegator is the first human, the acting agent the last agent', () => {
    assert.equal(row.delegator, 'U-442');
    assert.equal(row.agent_id, 'A-17');
    assert.equal(row.agent_version, '3.2');
    assert.equal(row.agent_owner, 'team-payments');
    assert.deepEqual(row.chain_ids, ['U-442', 'A-17']);
    assert.deepEqual(row.chain_kinds, ['human', 'agent']);
  });

  test('sub-agents: the acting agent is the last agent, the chain keeps every hop', () => {
    const sub = decisionRow(
      { ...decision, chain: [...decision.chain, { kind: 'agent', id: 'A-17-sub', version: '1' }, { kind: 'service', id: 'svc' }] },
      at,
    );
    assert.equal(sub.agent_id, 'A-17-sub');
    assert.equal(sub.agent_owner, '');
    assert.deepEqual(sub.chain_ids, ['U-442', 'A-17', 'A-17-sub', 'svc']);
  });

  test('times are written in the basic form any ClickHouse input format parses', () => {
    assert.equal(row.occurred_at, '2026-06-09 14:03:11.000');
    assert.equal(toClickHouseTime('2026-06-09T14:08:00.123Z'), '2026-06-09 14:08:00.123');
    assert.equal(fromClickHouseTime('2026-06-09 14:08:00.123'), '2026-06-09T14:08:00.123Z');
    assert.equal(fromClickHouseTime('2026-06-09T14:08:00.123Z'), '2026-06-09T14:08:00.123Z');
  });

  test('carries the Kafka coordinates and emitted_by', () => {
    const stamped = decisionRow({ ...decision, emitted_by: 'gw-7' }, at);
    assert.equal(stamped.emitted_by, 'gw-7');
    assert.equal(stamped.kafka_topic, at.topic);
    assert.equal(stamped.kafka_partition, 2);
    assert.equal(stamped.kafka_offset, '41');
  });

  test('compact follows the table insert-column order exactly', () => {
    const cols = insertColumns(DECISIONS);
    assert.deepEqual(Object.keys(row).sort(), [...cols].sort(), 'row keys = insert columns');
    const values = compact(DECISIONS, row);
    assert.equal(values.length, cols.length);
    cols.forEach((c, i) => assert.deepEqual(values[i], row[c as keyof DecisionRow], c));
  });

  test('compact refuses a row that misses a column', () => {
    const { tool: _tool, ...partial } = row;
    assert.throws(() => compact(DECISIONS, partial), /column tool/);
  });

  test('round trip: event → row → what ClickHouse returns → the same event', () => {
    const back = decisionFromRecord(asRead(row));
    const { audit, ...event } = back;
    assert.deepEqual(event, decision);
    assert.deepEqual(audit.kafka, at);
  });

  test('round trip of a minimal decision keeps absent fields absent', () => {
    const minimal = parse({
      type: 'decision',
      event_id: '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0f',
      tenant_id: 'acme',
      occurred_at: '2026-06-09T14:03:11.000Z',
      session_id: 'S-1',
      chain: [{ kind: 'agent', id: 'A-1' }],
      request: { tool: 't', action: 'a', resource: '' },
      decision: { effect: 'allow', policy_id: 'P' },
    }) as DecisionEvent;
    const r = decisionRow(minimal, at);
    assert.equal(r.delegator, '');
    assert.equal(r.trust_version, null);
    const { audit: _a, ...back } = decisionFromRecord(asRead(r));
    assert.deepEqual(back, minimal);
    assert.equal(JSON.stringify(back), JSON.stringify(minimal), 'no extra keys');
  });
});

describe('signal row', () => {
  test('every kind maps; the payload is the event itself', () => {
    for (const kind of SIGNAL_KINDS) {
      const e = parse(signalFixtures[kind]) as SignalEvent;
      const row = signalRow(e, at);
      assert.equal(row.kind, kind);
      assert.deepEqual(signalFromRecord({ ...(row as unknown as SignalRecord), payload: String(row.payload) }), e);
      assert.equal(compact(SIGNALS, row).length, insertColumns(SIGNALS).length);
    }
  });

  test('index fields name the session, subject and reference per kind', () => {
    const f = (k: keyof typeof signalFixtures) => signalIndexFields(parse(signalFixtures[k]) as SignalEvent);
    assert.deepEqual(f('injection_detected'), { session_id: 'S-9', subject: '', ref: 'SIG-INJ-8821', severity: 'high', tier: '' });
    assert.deepEqual(f('change_freeze_raised'), { session_id: '', subject: 'INC-77', ref: 'INC-77', severity: '', tier: '' });
    assert.deepEqual(f('role_revoked'), { session_id: '', subject: 'U-442', ref: 'payments-admin', severity: '', tier: '' });
    assert.equal(f('trust_set').tier, 'degraded');
    assert.equal(f('token_issued').ref, 'J-1');
    assert.equal(f('token_issued').session_id, 'S-9');
  });
});
