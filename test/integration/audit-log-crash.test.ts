// Crash safety of the stand-alone log writer (its own consumer group), with a
// real process killed by SIGKILL between a durable batch of leaves and its
// commit, then restarted, compared with a clean run over the same partitions
// (same leaves, roots and signed checkpoints per log). The audit sink with the
// log written from its hook: audit-log-sink-crash.test.ts (a file of its own:
// each file's process binds one embedded ClickHouse data dir).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { hashRange } from '../../schemas/audit-log/merkle.ts';
import { createAuditLogStore } from '../../services/audit-log/store.ts';
import { createKafka, partitionKeyOf } from '../../services/lib/kafka.ts';
import { startWriter } from '../helpers/audit-log-process.ts';
import { closeTestClickHouse, newClient, tempDataDir, uniqueDatabase } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
let broker: TestKafka;
let kafka: Kafka;

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-log-crash-test');
});
after(async () => {
  await closeTestClickHouse();
  await broker?.stop();
});

test('a log writer killed between a durable batch and its commit, then restarted, builds exactly the tree of a clean run', async () => {
  const topics = {
    TRUSTFOLD_TOPIC_DECISIONS: uniqueName('dec'),
    TRUSTFOLD_TOPIC_SIGNALS: uniqueName('sig'),
    TRUSTFOLD_TOPIC_SESSION_TRUST: uniqueName('trust'),
    TRUSTFOLD_TOPIC_DEAD_LETTER: uniqueName('dlq'),
    TRUSTFOLD_TOPIC_AUDIT_CHECKPOINTS: uniqueName('cp'),
  };
  for (const t of [topics.TRUSTFOLD_TOPIC_DECISIONS, topics.TRUSTFOLD_TOPIC_SIGNALS, topics.TRUSTFOLD_TOPIC_SESSION_TRUST]) await createTopic(broker.brokers, t, 3);
  const base = incident().denied;
  const decisions: DecisionEvent[] = Array.from({ length: 900 }, (_, i) => ({ ...base, event_id: `01976d2b-0000-7000-8000-${i.toString(16).padStart(12, '0')}`, session_id: `S-${i % 30}` }));
  const producer = kafka.producer();
  await producer.connect();
  // Many small sends, so the writer sees many batches and the kill lands mid-stream.
  for (let i = 0; i < decisions.length; i += 50) {
    await producer.send({ topic: topics.TRUSTFOLD_TOPIC_DECISIONS, acks: -1, messages: decisions.slice(i, i + 50).map((d) => ({ key: partitionKeyOf(d), value: codec.encodeEvent(d) })) });
  }
  await producer.disconnect();

  const dataDir = tempDataDir('trustfold-logcrash-');
  const crashedDb = uniqueDatabase('logcrash');
  const cleanDb = uniqueDatabase('logclean');
  const env = (database: string): Record<string, string> => ({
    KAFKA_BROKERS: broker.brokers.join(','),
    ...topics,
    CLICKHOUSE_DATABASE: database,
    TRUSTFOLD_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ...(process.env['CLICKHOUSE_URL'] !== undefined ? { CLICKHOUSE_URL: process.env['CLICKHOUSE_URL'] } : {}),
  });
  const admin = kafka.admin();
  await admin.connect();
  const committed = async (groupId: string): Promise<number> => {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topics.TRUSTFOLD_TOPIC_DECISIONS] });
    return (t?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  };
  // One writer process at a time: the embedded engine binds its data dir to one process.
  const runToEnd = async (database: string, groupId: string): Promise<void> => {
    const w = startWriter(env(database), [`--group=${groupId}`]);
    const deadline = Date.now() + 90_000;
    while ((await committed(groupId)) < decisions.length) {
      if (Date.now() > deadline) assert.fail(`writer did not catch up: ${await committed(groupId)} of ${decisions.length}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    w.child.kill('SIGTERM');
    const stopped = await w.exited;
    assert.equal(stopped.code, 0, `graceful stop; stderr: ${stopped.stderr}`);
  };
  try {
    // Crashed run: killed after its second durable batch, before that commit; then restarted on the same group and database.
    const group = uniqueName('log');
    const crashed = await startWriter(env(crashedDb), [`--group=${group}`, '--crash-after-appends=2']).exited;
    assert.equal(crashed.signal, 'SIGKILL', `killed by its hook; stderr: ${crashed.stderr}`);
    assert.ok((await committed(group)) < decisions.length, 'the crash left work uncommitted');
    await runToEnd(crashedDb, group);
    // Clean run over the same partitions into another database.
    await runToEnd(cleanDb, uniqueName('clean'));
  } finally {
    await admin.disconnect();
  }

  // Only now does this process open the data dir the writer processes used.
  const path = join(dataDir, 'clickhouse');
  const a = createAuditLogStore(newClient(crashedDb, path), crashedDb);
  const b = createAuditLogStore(newClient(cleanDb, path), cleanDb);
  const logs = await b.logs();
  assert.deepEqual(await a.logs(), logs);
  let total = 0;
  for (const log of logs) {
    const [ha, hb] = [await a.logHead(log), await b.logHead(log)];
    assert.deepEqual(ha, hb, `${log}: same size and last offset`);
    total += hb.size;
    const [fa, fb] = [await a.frontierAt(log, ha.size), await b.frontierAt(log, hb.size)];
    const root = (f: typeof fa) => Buffer.from(hashRange({ begin: 0, end: f.size }, (id) => f.nodes.find((n) => n.level === id.level && n.index === id.index)?.hash ?? new Uint8Array())).toString('hex');
    assert.equal(root(fa), root(fb), `${log}: same root`);
    const [la, lb] = [await a.leaves(log), await b.leaves(log)];
    assert.deepEqual(la.map((l) => [l.index, l.offset, l.ref]), lb.map((l) => [l.index, l.offset, l.ref]), `${log}: same leaves`);
    const [ca, cb] = [await a.latestCheckpoints(log), await b.latestCheckpoints(log)];
    assert.equal(ca[0]?.size, cb[0]?.size, `${log}: the shutdown checkpoint covers the same size`);
    assert.equal(ca[0]?.note, cb[0]?.note, `${log}: identical signed checkpoint (same key, same tree)`);
  }
  assert.equal(total, decisions.length, 'one leaf per decision, none twice');
});
