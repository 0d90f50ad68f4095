// The tamper-evident log end to end: the incident flows through the real
// broker into the sink, which hands what it stored to the log writer through
// its hook (in one process, as `--role all` runs them), a checkpoint is
// signed, the untouched store verifies clean, then each tampering an operator
// with ClickHouse access could do is found by verify, naming the record.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Kafka, Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decisionFromRecord, type DecisionRecord } from '../../schemas/clickhouse/rows.ts';
import { createExportProofs, verifyExport } from '../../services/audit-log/export.ts';
import { createProver } from '../../services/audit-log/proofs.ts';
import { createAuditLogStore } from '../../services/audit-log/store.ts';
import { generateSignerKey, parseSignerKey, parseVerifierKey, verifierKey } from '../../services/audit-log/note.ts';
import { createVerifier, type VerifyReport } from '../../services/audit-log/verify.ts';
import { createHookedAuditLogWriter } from '../../services/audit-log/writer.ts';
import { createAuditSink } from '../../services/audit-sink/sink.ts';
import { createKafka, partitionKeyOf, sessionKey } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { closeTestClickHouse, freshAuditDatabase, newClient, tempDataDir } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
const log = createLogger('test', 'silent');
const ORIGIN = 'trustfold.test/audit';
let broker: TestKafka;
let kafka: Kafka;
let producer: Producer;

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-log-test');
  producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
});
after(async () => {
  await producer?.disconnect();
  await closeTestClickHouse();
  await broker?.stop();
});

const waitFor = async <T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

const kinds = (r: VerifyReport): string[] => r.findings.map((f) => `${f.kind}:${f.ref ?? ''}@${f.leaf_index ?? ''}`);

test('verify is clean on the untouched log and names every changed, deleted, inserted record and a dropped tail', async () => {
  const topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  await Promise.all([createTopic(broker.brokers, topics.decisions, 2), createTopic(broker.brokers, topics.signals, 2), createTopic(broker.brokers, topics.sessionTrust, 2), createTopic(broker.brokers, topics.deadLetter, 1), createTopic(broker.brokers, `${topics.decisions}-cp`, 1)]);
  const inc = incident();
  // The incident, plus 20 more decisions of session S-9 so one partition has a tail to drop.
  const more: DecisionEvent[] = Array.from({ length: 20 }, (_, i) => ({ ...inc.denied, event_id: `01976d2b-0000-7000-8000-${i.toString(16).padStart(12, '0')}`, occurred_at: new Date(Date.parse(inc.denied.occurred_at) + (i + 1) * 1000).toISOString() }));
  const decisions = [...inc.decisions, ...more];
  await producer.send({ topic: topics.decisions, acks: -1, messages: decisions.map((d) => ({ key: partitionKeyOf(d), value: codec.encodeEvent(d) })) });
  await producer.send({ topic: topics.signals, acks: -1, messages: inc.signals.map((s) => ({ key: partitionKeyOf(s), value: codec.encodeEvent(s) })) });
  await producer.send({ topic: topics.sessionTrust, acks: -1, messages: inc.trust.map((t) => ({ key: sessionKey(t.tenant_id, t.session_id), value: codec.encodeTrust(t) })) });
  // A conflicting later copy of one decision (another effect): refused by the write-once sink, kept in
  // the conflicts table, and a leaf of its own — verify notes it as a conflict, not as a deleted record.
  const conflicting = { ...more[3], decision: { ...inc.denied.decision, effect: 'allow' as const } } as DecisionEvent;
  await producer.send({ topic: topics.decisions, acks: -1, messages: [{ key: partitionKeyOf(conflicting), value: codec.encodeEvent(conflicting) }] });
  const total = decisions.length + inc.signals.length + inc.trust.length;

  const { database, writer: sinkClient, reader } = await freshAuditDatabase('auditlog');
  const store = createAuditLogStore(newClient(database), database);
  await store.ensureTables();
  const s = parseSignerKey(generateSignerKey('trustfold-test'));
  assert.ok(s.ok);
  const v = parseVerifierKey(verifierKey(s.signer));
  assert.ok(v.ok);
  const writer = createHookedAuditLogWriter({ kafka, store, signer: s.signer, originPrefix: ORIGIN, checkpointTopic: `${topics.decisions}-cp`, checkpointIntervalMs: 3_600_000, log });
  const sink = createAuditSink({ kafka, clickhouse: sinkClient, database, topics, groupId: uniqueName('sink'), registry: new Registry(), log, onStored: writer.onStored, onAssigned: writer.onAssigned });
  await writer.start();
  await sink.start();
  const verifier = createVerifier({ client: reader, database, store: createAuditLogStore(reader, database), verifiers: [v.verifier], originPrefix: ORIGIN });
  try {
    const count = async (): Promise<number> => {
      const rs = await reader.query({ query: `SELECT (SELECT count() FROM ${database}.decisions) + (SELECT count() FROM ${database}.signals) + (SELECT count() FROM ${database}.trust_transitions) AS n`, format: 'JSONEachRow' });
      return Number((await rs.json<{ n: string | number }>())[0]?.n ?? 0);
    };
    const leaves = async (): Promise<number> => {
      let n = 0;
      for (const l of await store.logs()) n += (await store.logHead(l)).size;
      return n;
    };
    await waitFor('the sink to store everything', count, (n) => n === total);
    await waitFor('the writer to log everything', leaves, (n) => n === total + 1);
    const signed = await writer.checkpoint();
    assert.ok(signed.length >= 3, `a checkpoint per non-empty log (${signed.length})`);

    const clean = await verifier.verify();
    assert.deepEqual(kinds(clean), [], 'untouched log verifies clean');
    assert.equal(clean.ok, true);
    assert.equal(clean.logs.reduce((n, l) => n + l.verified, 0), total, 'every stored record verified');
    assert.deepEqual(clean.notes.map((n) => [n.kind, n.ref]), [['conflict', conflicting.event_id]], 'the refused copy is noted as a conflict');

    // The NDJSON export with ?proofs=1, as the query route writes it, checks offline; an edited line is named.
    const rows = await reader.query({ query: `SELECT * FROM ${database}.decisions ORDER BY kafka_partition, kafka_offset`, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0, date_time_output_format: 'iso' } });
    const exported = (await rows.json<DecisionRecord>()).map(decisionFromRecord);
    const session = await createExportProofs({ store: createAuditLogStore(reader, database), prover: createProver(createAuditLogStore(reader, database)), verifierKeys: [verifierKey(s.signer)] }).begin();
    const lines: string[] = [];
    for (const d of exported) lines.push(JSON.stringify({ ...d, audit_proof: await session.proofOf(d) }));
    for (const c of session.checkpoints()) lines.push(JSON.stringify({ checkpoint: c }));
    lines.push(JSON.stringify({ verifier_keys: session.verifierKeys }));
    const file = join(tempDataDir('trustfold-export-'), 'decisions.ndjson');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const offline = verifyExport(file, [verifierKey(s.signer)]);
    assert.deepEqual(offline.findings, [], 'the export verifies offline with the pinned key');
    assert.equal(offline.verified, decisions.length);
    const edited = lines.map((l) => (l.includes(inc.denied.event_id) ? l.replace('"effect":"deny"', '"effect":"allow"') : l));
    writeFileSync(file, `${edited.join('\n')}\n`);
    const caught = verifyExport(file, [verifierKey(s.signer)]);
    assert.deepEqual(caught.findings.map((f) => [f.problem, f.ref]), [['changed', inc.denied.event_id]]);

    const mutate = async (sql: string): Promise<void> => {
      await sinkClient.command({ query: sql, clickhouse_settings: { mutations_sync: '2' } });
    };
    // 1. An effect rewritten in place.
    const target = inc.denied.event_id;
    await mutate(`ALTER TABLE ${database}.decisions UPDATE effect = 'allow' WHERE event_id = '${target}'`);
    let r = await verifier.verify();
    assert.deepEqual(r.findings.map((f) => [f.kind, f.ref]), [['changed', target]], kinds(r).join(', '));
    const changedAt = r.findings[0]?.leaf_index;
    assert.equal(typeof changedAt, 'number');

    // 2. A row deleted.
    const gone = inc.decisions[0]?.event_id ?? '';
    await mutate(`ALTER TABLE ${database}.decisions DELETE WHERE event_id = '${gone}'`);
    r = await verifier.verify();
    assert.ok(r.findings.some((f) => f.kind === 'deleted' && f.ref === gone && typeof f.leaf_index === 'number'), kinds(r).join(', '));

    // 3. A forged row inserted beside a real one (same topic/partition, a logged offset).
    const forgedId = '01976d2b-dead-7000-8000-000000000001';
    const rs = await reader.query({ query: `SELECT * EXCEPT ingested_at FROM ${database}.decisions WHERE event_id = '${more[0]?.event_id ?? ''}'`, format: 'JSONEachRow' });
    const [model] = await rs.json<Record<string, unknown>>();
    assert.ok(model !== undefined);
    await sinkClient.insert({ table: `${database}.decisions`, values: [{ ...model, event_id: forgedId }], format: 'JSONEachRow', clickhouse_settings: { insert_deduplicate: 0 } });
    r = await verifier.verify();
    assert.ok(r.findings.some((f) => f.kind === 'inserted' && f.ref === forgedId), kinds(r).join(', '));

    // 4. The tail dropped: the last five decisions of the session.
    const tail = more.slice(-5).map((d) => `'${d.event_id}'`).join(',');
    await mutate(`ALTER TABLE ${database}.decisions DELETE WHERE event_id IN (${tail})`);
    r = await verifier.verify();
    assert.ok(r.findings.some((f) => f.kind === 'truncated'), kinds(r).join(', '));
    for (const d of more.slice(-5)) assert.ok(r.findings.some((f) => f.kind === 'deleted' && f.ref === d.event_id), `deleted ${d.event_id}`);
    assert.equal(r.ok, false);

    // A tenant sees only its own records named.
    const other = await verifier.verify({ tenant: 'someone-else' });
    assert.deepEqual(other.findings.filter((f) => f.ref !== undefined), []);
  } finally {
    await sink.stop();
    await writer.stop();
  }
});
