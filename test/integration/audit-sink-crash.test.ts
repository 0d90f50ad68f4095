// Crash the real sink process between a ClickHouse insert and its offset
// commit, restart it, and count: every event exactly once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent, SignalEvent } from '../../schemas/events.ts';
import { createKafka, partitionKeyOf } from '../../services/lib/kafka.ts';
import { closeTestClickHouse, newClient, tempDataDir, uniqueDatabase } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
let broker: TestKafka;
let kafka: Kafka;

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-crash-test');
});
after(async () => {
  await closeTestClickHouse();
  await broker?.stop();
});

type Run = { code: number | null; signal: NodeJS.Signals | null; inserted: number; stderr: string };

const startSink = (env: Record<string, string>, args: string[]) => {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../services/audit-sink/main.ts'), ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let inserted = 0;
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    inserted += (b.toString().match(/audit-sink: inserted/g) ?? []).length;
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<Run>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, inserted, stderr })));
  return { child, exited, inserted: () => inserted };
};

test('a sink killed after an insert and before the commit, then restarted, stores every event exactly once', async () => {
  const topics = {
    TRUSTFOLD_TOPIC_DECISIONS: uniqueName('dec'),
    TRUSTFOLD_TOPIC_SIGNALS: uniqueName('sig'),
    TRUSTFOLD_TOPIC_SESSION_TRUST: uniqueName('trust'),
    TRUSTFOLD_TOPIC_DEAD_LETTER: uniqueName('dlq'),
  };
  for (const t of Object.values(topics)) await createTopic(broker.brokers, t, t === topics.TRUSTFOLD_TOPIC_DEAD_LETTER ? 1 : 3);

  // 1 200 decisions over 40 sessions and 120 signals, all on the broker before the sink starts.
  const inc = incident();
  const base = inc.denied;
  const decisions: DecisionEvent[] = [];
  for (let i = 0; i < 1200; i++) {
    const hex = i.toString(16).padStart(12, '0');
    decisions.push({ ...base, event_id: `01976d2b-0000-7000-8000-${hex}`, session_id: `S-${i % 40}`, occurred_at: new Date(Date.parse(base.occurred_at) + i * 1000).toISOString() });
  }
  const signals: SignalEvent[] = [];
  const injection = inc.signals.find((s) => s.kind === 'injection_detected');
  assert.ok(injection);
  for (let i = 0; i < 120; i++) signals.push({ ...injection, event_id: `01976d2c-0000-7000-8000-${i.toString(16).padStart(12, '0')}`, session_id: `S-${i % 40}` });
  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < decisions.length; i += 200) {
    await producer.send({ topic: topics.TRUSTFOLD_TOPIC_DECISIONS, acks: -1, messages: decisions.slice(i, i + 200).map((d) => ({ key: partitionKeyOf(d), value: codec.encodeEvent(d) })) });
  }
  await producer.send({ topic: topics.TRUSTFOLD_TOPIC_SIGNALS, acks: -1, messages: signals.map((s) => ({ key: partitionKeyOf(s), value: codec.encodeEvent(s) })) });
  await producer.disconnect();

  const dataDir = tempDataDir('trustfold-crash-');
  const database = uniqueDatabase('crash');
  const groupId = uniqueName('crash-sink');
  const env = {
    KAFKA_BROKERS: broker.brokers.join(','),
    ...topics,
    CLICKHOUSE_DATABASE: database,
    TRUSTFOLD_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ...(process.env['CLICKHOUSE_URL'] !== undefined ? { CLICKHOUSE_URL: process.env['CLICKHOUSE_URL'] } : {}),
  };
  const admin = kafka.admin();
  await admin.connect();
  const committed = async (): Promise<number> => {
    let sum = 0;
    for (const topic of [topics.TRUSTFOLD_TOPIC_DECISIONS, topics.TRUSTFOLD_TOPIC_SIGNALS]) {
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
      for (const p of t?.partitions ?? []) sum += Math.max(0, Number(p.offset));
    }
    return sum;
  };
  const total = decisions.length + signals.length;

  try {
    // Run 1: dies (SIGKILL, no handlers) right after its second insert, before that commit.
    const crashed = await startSink(env, [`--group=${groupId}`, '--crash-after-inserts=2']).exited;
    assert.equal(crashed.signal, 'SIGKILL', `sink should have been killed by its hook; stderr: ${crashed.stderr}`);
    assert.equal(crashed.inserted, 2, 'two blocks were durable in ClickHouse before the kill');
    const afterCrash = await committed();
    assert.ok(afterCrash < total, `the last inserted block was not committed (${afterCrash} of ${total} committed)`);

    // Run 2: resumes from the committed offsets, re-reads the uncommitted block and finishes.
    const second = startSink(env, [`--group=${groupId}`]);
    const deadline = Date.now() + 90_000;
    while ((await committed()) < total) {
      if (Date.now() > deadline) assert.fail(`restarted sink did not catch up: ${await committed()} of ${total}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    second.child.kill('SIGTERM');
    const stopped = await second.exited;
    assert.equal(stopped.code, 0, `graceful stop; stderr: ${stopped.stderr}`);
    assert.ok(stopped.inserted >= 1, 'the restarted sink inserted the rest');
  } finally {
    await admin.disconnect();
  }

  // Only now does this process open the data dir the sink processes wrote.
  const ch = newClient(database, join(dataDir, 'clickhouse'));
  const rs = await ch.query({
    query: `SELECT
      (SELECT count() FROM ${database}.decisions) AS rows,
      (SELECT uniqExact(event_id) FROM ${database}.decisions) AS ids,
      (SELECT count() FROM ${database}.signals) AS signal_rows,
      (SELECT uniqExact(event_id) FROM ${database}.signals) AS signal_ids`,
    format: 'JSONEachRow',
  });
  const [c] = await rs.json<Record<string, string | number>>();
  assert.deepEqual(
    { rows: Number(c?.['rows']), ids: Number(c?.['ids']), signal_rows: Number(c?.['signal_rows']), signal_ids: Number(c?.['signal_ids']) },
    { rows: decisions.length, ids: decisions.length, signal_rows: signals.length, signal_ids: signals.length },
    'row counts equal events produced; no row twice (raw count, before any merge)',
  );
});
