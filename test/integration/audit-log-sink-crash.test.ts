// Crash safety of the tamper-evident log written from the audit sink's hook
// (`--audit-log`), with real processes killed by SIGKILL and restarted: once
// after a batch is stored but before its leaves exist, and once after its
// leaves are durable but before the sink's commit, with duplicates and
// conflicting copies in the input — compared with a clean run over the same
// partitions (same leaves, roots and signed checkpoints per log).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { hashRange } from '../../schemas/audit-log/merkle.ts';
import { createAuditLogStore } from '../../services/audit-log/store.ts';
import { createKafka, partitionKeyOf } from '../../services/lib/kafka.ts';
import { SINK, SMALL_FETCHES, startWriter } from '../helpers/audit-log-process.ts';
import { closeTestClickHouse, newClient, tempDataDir, uniqueDatabase } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
let broker: TestKafka;
let kafka: Kafka;

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-log-sink-crash-test');
});
after(async () => {
  await closeTestClickHouse();
  await broker?.stop();
});

type Store = ReturnType<typeof createAuditLogStore>;
/** Both stores hold the same logs, leaves, roots and shutdown checkpoints; returns the total leaf count. */
const assertSameTrees = async (a: Store, b: Store): Promise<number> => {
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
    assert.deepEqual(la.map((l) => [l.index, l.offset, l.ref, Buffer.from(l.hash).toString('hex')]), lb.map((l) => [l.index, l.offset, l.ref, Buffer.from(l.hash).toString('hex')]), `${log}: same leaves`);
    const [ca, cb] = [await a.latestCheckpoints(log), await b.latestCheckpoints(log)];
    assert.equal(ca[0]?.size, hb.size, `${log}: the shutdown checkpoint covers the whole log`);
    assert.equal(ca[0]?.note, cb[0]?.note, `${log}: identical signed checkpoint (same key, same tree)`);
  }
  return total;
};

test('the audit sink writing the log from its hook, killed after a stored batch and after durable leaves, then restarted, builds exactly the tree of a clean run', async () => {
  const topics = {
    TRUSTFOLD_TOPIC_DECISIONS: uniqueName('dec'),
    TRUSTFOLD_TOPIC_SIGNALS: uniqueName('sig'),
    TRUSTFOLD_TOPIC_SESSION_TRUST: uniqueName('trust'),
    TRUSTFOLD_TOPIC_DEAD_LETTER: uniqueName('dlq'),
    TRUSTFOLD_TOPIC_AUDIT_CHECKPOINTS: uniqueName('cp'),
  };
  for (const t of [topics.TRUSTFOLD_TOPIC_DECISIONS, topics.TRUSTFOLD_TOPIC_SIGNALS, topics.TRUSTFOLD_TOPIC_SESSION_TRUST]) await createTopic(broker.brokers, t, 3);
  await createTopic(broker.brokers, topics.TRUSTFOLD_TOPIC_DEAD_LETTER, 1);
  const base = incident().denied;
  const decisions: DecisionEvent[] = Array.from({ length: 600 }, (_, i) => ({ ...base, event_id: `01976d2b-0000-7000-8000-${i.toString(16).padStart(12, '0')}`, session_id: `S-${i % 30}` }));
  // Later copies in the same partitions: every 10th sent again as it was (a duplicate), every 15th with another effect (a conflict).
  const duplicates = decisions.filter((_, i) => i % 10 === 0);
  const conflicts = decisions.filter((_, i) => i % 15 === 7).map((d) => ({ ...d, decision: { ...d.decision, effect: 'allow' as const } }));
  const sent = [...decisions, ...duplicates, ...conflicts];
  const producer = kafka.producer();
  await producer.connect();
  // Many small sends, so the sink sees many batches and the kills land mid-stream.
  for (let i = 0; i < sent.length; i += 40) {
    await producer.send({ topic: topics.TRUSTFOLD_TOPIC_DECISIONS, acks: -1, messages: sent.slice(i, i + 40).map((d) => ({ key: partitionKeyOf(d), value: codec.encodeEvent(d) })) });
  }
  await producer.disconnect();

  const dataDir = tempDataDir('trustfold-sinklogcrash-');
  const crashedDb = uniqueDatabase('sinklogcrash');
  const cleanDb = uniqueDatabase('sinklogclean');
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
  const runToEnd = async (database: string, groupId: string): Promise<void> => {
    const w = startWriter(env(database), ['--audit-log', `--group=${groupId}`, SMALL_FETCHES], SINK);
    const deadline = Date.now() + 90_000;
    while ((await committed(groupId)) < sent.length) {
      if (Date.now() > deadline) assert.fail(`sink did not catch up: ${await committed(groupId)} of ${sent.length}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    w.child.kill('SIGTERM');
    const stopped = await w.exited;
    assert.equal(stopped.code, 0, `graceful stop; stderr: ${stopped.stderr}`);
  };
  try {
    const group = uniqueName('sinklog');
    // 1. Killed right after a block is durable in the sink's tables: stored, not logged, not committed.
    const first = await startWriter(env(crashedDb), ['--audit-log', `--group=${group}`, SMALL_FETCHES, '--crash-after-inserts=3'], SINK).exitedWithin(90_000);
    assert.equal(first.signal, 'SIGKILL', `killed by its insert hook; stderr: ${first.stderr}`);
    // 2. Restarted (the batch comes back as replays), killed right after a batch of leaves is durable, before the commit.
    const second = startWriter(env(crashedDb), ['--audit-log', `--group=${group}`, SMALL_FETCHES, '--crash-after-appends=3'], SINK);
    const killed = await second.exitedWithin(90_000);
    assert.equal(killed.signal, 'SIGKILL', `killed by its append hook; stderr: ${killed.stderr}`);
    assert.equal(second.appended(), 3, 'the restarted sink logged the stored-but-unlogged batch and more');
    assert.ok((await committed(group)) < sent.length, 'the crashes left work uncommitted');
    // 3. Restarted again, to the end.
    await runToEnd(crashedDb, group);
    await runToEnd(cleanDb, uniqueName('sinkclean'));
  } finally {
    await admin.disconnect();
  }

  const path = join(dataDir, 'clickhouse');
  const a = createAuditLogStore(newClient(crashedDb, path), crashedDb);
  const b = createAuditLogStore(newClient(cleanDb, path), cleanDb);
  const total = await assertSameTrees(a, b);
  assert.equal(total, sent.length, 'one leaf per accepted record (duplicates and conflicting copies included), none twice');
  const stored = await newClient(crashedDb, path).query({ query: `SELECT count() AS n, uniqExact(event_id) AS ids FROM ${crashedDb}.decisions`, format: 'JSONEachRow' });
  assert.deepEqual((await stored.json<{ n: string | number; ids: string | number }>()).map((r) => [Number(r.n), Number(r.ids)]), [[decisions.length, decisions.length]], 'the sink stored each first copy once');
});
