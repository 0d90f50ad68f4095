// A record's leaves by record id (`findLeaves`: the write-once index for the
// first copy, the lookup aid `audit_log_refs` for every other leaf) give the
// same answer as the scan of every leaf's reference (`scanLeaves`), for every
// record of a log with harmless duplicates, conflicting copies and a copy
// under another kind, of all three kinds, in two tenants sharing ids — with
// the writer hooked into the sink and stand-alone, and after migration 5 has
// rebuilt the aid of a store made before it (also after a crash before its
// rename). Real broker, the sink, embedded ClickHouse.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka, Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent, SessionTrust, SignalEvent } from '../../schemas/events.ts';
import { createEvidence } from '../../services/audit-log/evidence.ts';
import type { LeafKind } from '../../schemas/audit-log/leaf.ts';
import { generateSignerKey, parseSignerKey } from '../../services/audit-log/note.ts';
import { createProver } from '../../services/audit-log/proofs.ts';
import { createRecordReader } from '../../services/audit-log/record-reader.ts';
import { trustRef } from '../../schemas/audit-log/records.ts';
import { createAuditLogStore, REFS_TABLE, toHex, TREE_TABLE, type AuditLogStore } from '../../services/audit-log/store.ts';
import { createAuditLogWriter, createHookedAuditLogWriter, type AuditLogWriter } from '../../services/audit-log/writer.ts';
import { createAuditSink } from '../../services/audit-sink/sink.ts';
import { createKafka, partitionKeyOf, sessionKey } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { incident } from '../helpers/audit-incident.ts';
import { closeTestClickHouse, freshAuditDatabase, newClient } from '../helpers/clickhouse.ts';
import { createTopic, getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
const log = createLogger('test', 'silent');
let broker: TestKafka;
let kafka: Kafka;
let producer: Producer;

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-log-lookup-test');
  producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
});
after(async () => {
  await producer?.disconnect();
  await closeTestClickHouse();
  await broker?.stop();
});

const later = (iso: string, ms: number): string => new Date(Date.parse(iso) + ms).toISOString();
const must = <T>(x: T | undefined): T => {
  assert.ok(x !== undefined);
  return x;
};

// acme and globex tell the same story with the same event ids (ids are per tenant).
const acme = incident('acme');
const globex = incident('globex');
const globexOnly: DecisionEvent = { ...globex.denied, event_id: '01976d2b-1111-7000-8000-000000000001' };
const firstDecision = must(acme.decisions[0]);
const secondDecision = must(acme.decisions[1]);
const injection = must(acme.signals[2]);
const firstSignal = must(acme.signals[0]);
const restricted = must(acme.trust[1]);
const frozen = must(acme.trust[2]);
// Sent again with the same content (harmless duplicates) or with other content (conflicting copies).
const again = {
  decisions: [firstDecision, { ...acme.denied, decision: { ...acme.denied.decision, effect: 'allow' as const } }] as DecisionEvent[],
  // The last one is a signal under a decision's event id: the same write-once key, another kind.
  signals: [injection, { ...firstSignal, occurred_at: later(firstSignal.occurred_at, 5_000) }, { ...injection, event_id: secondDecision.event_id }] as SignalEvent[],
  trust: [restricted, { ...frozen, updated_at: later(frozen.updated_at, 5_000) }] as SessionTrust[],
};
const first = {
  decisions: [...acme.decisions, ...globex.decisions, globexOnly],
  signals: [...acme.signals, ...globex.signals],
  trust: [...acme.trust, ...globex.trust],
};
const total = [first, again].reduce((n, b) => n + b.decisions.length + b.signals.length + b.trust.length, 0);

/** Every (kind, ref) sent, plus one nobody sent. */
const records: [LeafKind, string][] = [
  ...[...first.decisions, ...again.decisions].map((d): [LeafKind, string] => ['decision', d.event_id]),
  ...[...first.signals, ...again.signals].map((s): [LeafKind, string] => ['signal', s.event_id]),
  ...[...first.trust, ...again.trust].map((t): [LeafKind, string] => ['trust', trustRef(t.session_id, t.version)]),
  ['decision', secondDecision.event_id.replace(/.$/, 'f')],
  ['trust', 'S-9#99'],
];

const send = async (topics: { decisions: string; signals: string; sessionTrust: string }, batch: typeof first): Promise<void> => {
  await producer.send({ topic: topics.decisions, acks: -1, messages: batch.decisions.map((d) => ({ key: partitionKeyOf(d), value: codec.encodeEvent(d) })) });
  await producer.send({ topic: topics.signals, acks: -1, messages: batch.signals.map((s) => ({ key: partitionKeyOf(s), value: codec.encodeEvent(s) })) });
  await producer.send({ topic: topics.sessionTrust, acks: -1, messages: batch.trust.map((t) => ({ key: sessionKey(t.tenant_id, t.session_id), value: codec.encodeTrust(t) })) });
};

const count = async (client: ClickHouseClient, query: string): Promise<number> => Number((await (await client.query({ query, format: 'JSONEachRow' })).json<{ n: string | number }>())[0]?.n ?? 0);

const norm = (ls: Awaited<ReturnType<AuditLogStore['findLeaves']>>) => ls.map((l) => ({ ...l, hash: toHex(l.hash) }));

/** findLeaves and scanLeaves agree on every record, for each tenant, all tenants and a tenant with nothing. */
const assertSameAnswers = async (store: AuditLogStore, label: string): Promise<void> => {
  for (const [kind, ref] of records) {
    for (const tenant of ['acme', 'globex', undefined, 'initech']) {
      const scanned = await store.scanLeaves(tenant, kind, ref);
      assert.deepEqual(norm(await store.findLeaves(tenant, kind, ref)), norm(scanned), `${label}: ${kind} ${ref} of ${tenant ?? 'every tenant'}`);
    }
  }
  // The cases the lookup exists for, spelt out.
  const n = async (tenant: string | undefined, kind: LeafKind, ref: string) => (await store.findLeaves(tenant, kind, ref)).length;
  assert.equal(await n('acme', 'decision', firstDecision.event_id), 2, `${label}: a decision sent twice has two leaves`);
  assert.equal(await n('acme', 'decision', acme.denied.event_id), 2, `${label}: a decision and its conflicting copy`);
  assert.equal(await n(undefined, 'decision', acme.denied.event_id), 3, `${label}: with globex's decision of the same id`);
  assert.equal(await n('acme', 'signal', injection.event_id), 2, `${label}: a signal sent twice`);
  assert.equal(await n('acme', 'signal', firstSignal.event_id), 2, `${label}: a signal and its conflicting copy`);
  assert.equal(await n('acme', 'signal', secondDecision.event_id), 1, `${label}: a signal under a decision's id`);
  assert.equal(await n('acme', 'decision', secondDecision.event_id), 1, `${label}: ... and that decision`);
  assert.equal(await n('acme', 'trust', trustRef(restricted.session_id, restricted.version)), 2, `${label}: a transition sent twice`);
  assert.equal(await n('acme', 'trust', trustRef(frozen.session_id, frozen.version)), 2, `${label}: a transition and its conflicting copy`);
  assert.equal(await n('acme', 'decision', globexOnly.event_id), 0, `${label}: another tenant's id is not found`);
  assert.equal(await n('globex', 'decision', globexOnly.event_id), 1, `${label}: ... by its own tenant it is`);
};

type Setup = { database: string; store: AuditLogStore; reader: ClickHouseClient; stop: () => Promise<void>; writer: AuditLogWriter };

const startLogged = async (mode: 'hooked' | 'stand-alone', topics: { decisions: string; signals: string; sessionTrust: string; deadLetter: string }, cpTopic: string): Promise<Setup> => {
  const { database, writer: sinkClient, reader } = await freshAuditDatabase(`alookup_${mode === 'hooked' ? 'h' : 's'}`);
  const store = createAuditLogStore(newClient(database), database);
  await store.ensureTables();
  const s = parseSignerKey(generateSignerKey('trustfold-test'));
  assert.ok(s.ok);
  const common = { kafka, store, signer: s.signer, originPrefix: 'trustfold.test/audit', checkpointTopic: cpTopic, checkpointIntervalMs: 3_600_000, log };
  const sinkDeps = { kafka, clickhouse: sinkClient, database, topics, groupId: uniqueName('sink'), registry: new Registry(), log };
  if (mode === 'hooked') {
    const writer = createHookedAuditLogWriter(common);
    const sink = createAuditSink({ ...sinkDeps, onStored: writer.onStored, onAssigned: writer.onAssigned });
    await writer.start();
    await sink.start();
    return { database, store, reader, writer, stop: async () => {
      await sink.stop();
      await writer.stop();
    } };
  }
  const writer = createAuditLogWriter({ ...common, topics, groupId: uniqueName('log') });
  const sink = createAuditSink(sinkDeps);
  await sink.start();
  await writer.start();
  return { database, store, reader, writer, stop: async () => {
    await sink.stop();
    await writer.stop();
  } };
};

test('a record\'s leaves by record id are the scan\'s, hooked and stand-alone, with duplicates, conflicts and another tenant; migration 5 rebuilds the aid', async () => {
  const topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  const cpTopic = uniqueName('cp');
  await Promise.all([createTopic(broker.brokers, topics.decisions, 2), createTopic(broker.brokers, topics.signals, 2), createTopic(broker.brokers, topics.sessionTrust, 2), createTopic(broker.brokers, topics.deadLetter, 1), createTopic(broker.brokers, cpTopic, 1)]);
  const setups = [await startLogged('hooked', topics, cpTopic), await startLogged('stand-alone', topics, cpTopic)];
  try {
    const leafRows = (x: Setup) => count(x.reader, `SELECT count() AS n FROM ${x.database}.${TREE_TABLE} WHERE row = 'leaf'`);
    const stored = (x: Setup) => count(x.reader, `SELECT (SELECT count() FROM ${x.database}.decisions) + (SELECT count() FROM ${x.database}.signals) + (SELECT count() FROM ${x.database}.trust_transitions) AS n`);
    // First copies, stored, before the later copies are sent: which copy is first is then known.
    await send(topics, first);
    const firsts = first.decisions.length + first.signals.length + first.trust.length;
    for (const x of setups) await waitForValue('the first copies stored and logged', async () => [await stored(x), await leafRows(x)], ([a, b]) => a === firsts && b === firsts, 90_000);
    await send(topics, again);
    for (const x of setups) await waitForValue('every copy logged', () => leafRows(x), (n) => n === total, 90_000);
    // The sink has judged every copy once the conflicts are kept (duplicates leave no row).
    for (const x of setups) await waitForValue('the conflicts kept', () => count(x.reader, `SELECT count() AS n FROM ${x.database}.conflicts`), (n) => n === 4, 90_000);
    const [hooked, alone] = setups;
    assert.ok(hooked !== undefined && alone !== undefined);

    const refRows = (x: Setup) => count(x.reader, `SELECT count() AS n FROM (SELECT DISTINCT log, idx FROM ${x.database}.${REFS_TABLE})`);
    // Not first copies: the 7 later copies (3 duplicates, 4 conflicts). The hooked writer knows each outcome and records exactly those.
    assert.equal(await refRows(hooked), again.decisions.length + again.signals.length + again.trust.length, 'hooked: a row for each leaf that is not a first copy, none for first copies');
    // The stand-alone writer asks the write-once index: at least those (more when it ran ahead of the sink).
    assert.ok((await refRows(alone)) >= 7, 'stand-alone: at least every leaf that is not a first copy');

    for (const [x, label] of [[hooked, 'hooked'], [alone, 'stand-alone']] as const) {
      await assertSameAnswers(x.store, label);
      // Through the evidence the proof routes build: the duplicate is named among other_leaves.
      await x.writer.checkpoint();
      const evidence = createEvidence({ store: x.store, prover: createProver(x.store), reader: createRecordReader(x.reader, x.database) });
      const p = await evidence.proofOf('decision', firstDecision.event_id, 'acme');
      assert.ok(p.ok, label);
      assert.equal(p.proof.other_leaves.length, 1, `${label}: the duplicate is listed`);
      assert.equal((await evidence.proofOf('decision', globexOnly.event_id, 'acme')).ok, false, `${label}: another tenant's record is a 404`);
    }

    // Migration 5 on a store made before it: no aid table. Rebuilt at start from the leaf rows and the
    // write-once index — exactly the leaves that are not first copies — and the answers are the same.
    const refsOf = async (x: Setup) =>
      (await (await x.reader.query({ query: `SELECT DISTINCT tenant, kind, record_ref, log, idx, kafka_offset FROM ${x.database}.${REFS_TABLE} ORDER BY log, idx`, format: 'JSONEachRow' })).json<Record<string, unknown>>());
    const before = await refsOf(hooked);
    for (const x of setups) {
      await x.reader.command({ query: `DROP TABLE ${x.database}.${REFS_TABLE}` });
      const migrated = createAuditLogStore(newClient(x.database), x.database);
      await migrated.ensureTables();
      assert.deepEqual(await refsOf(x), before, 'the backfill holds exactly the leaves that are not first copies');
      await assertSameAnswers(migrated, 'migrated');
    }
    // A crash before the rename: a half-filled `_next` table and no aid table. The next start fills it again.
    await hooked.reader.command({ query: `DROP TABLE ${hooked.database}.${REFS_TABLE}` });
    await hooked.reader.command({ query: `CREATE TABLE ${hooked.database}.${REFS_TABLE}_next (tenant String, kind String, record_ref String, log String, idx UInt64, kafka_offset UInt64) ENGINE = MergeTree ORDER BY idx` });
    await hooked.reader.command({ query: `INSERT INTO ${hooked.database}.${REFS_TABLE}_next VALUES ('acme', 'decision', 'junk', 'x/0', 1, 1)` });
    const restarted = createAuditLogStore(newClient(hooked.database), hooked.database);
    await restarted.ensureTables();
    await restarted.ensureTables();
    assert.deepEqual(await refsOf(hooked), before, 'a crash before the rename is redone; a second start changes nothing');
    assert.equal(await count(hooked.reader, `SELECT count() AS n FROM system.tables WHERE database = '${hooked.database}' AND name = '${REFS_TABLE}_next'`), 0);
    await assertSameAnswers(restarted, 'after a crashed migration');

    // The aid is not evidence: a forged row naming another record's leaf finds nothing.
    const victim = must((await restarted.findLeaves('acme', 'decision', secondDecision.event_id))[0]);
    await hooked.reader.insert({ table: `${hooked.database}.${REFS_TABLE}`, values: [{ tenant: 'acme', kind: 'decision', record_ref: firstDecision.event_id, log: victim.log, idx: victim.index, kafka_offset: victim.offset }], format: 'JSONEachRow' });
    assert.deepEqual(norm(await restarted.findLeaves('acme', 'decision', firstDecision.event_id)), norm(await restarted.scanLeaves('acme', 'decision', firstDecision.event_id)), 'a forged aid row adds no leaf');
  } finally {
    for (const x of setups) await x.stop();
  }
});
