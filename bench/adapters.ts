// Adapter throughput on this machine, against a real broker and embedded ClickHouse:
//   1. Cerbos end to end: real Cerbos PDP (CheckResources over HTTP) → its Kafka
//      audit backend → the adapter → decisions topic → audit sink → ClickHouse.
//   2. The adapter alone: recorded Cerbos entries already on the topic → decisions topic.
//   3. OPA uploads: gzip batches over HTTP → decisions topic (200 = durable).
// Sizes: BENCH_CERBOS_CALLS (default 2000), BENCH_ADAPTER_ENTRIES (20000),
// BENCH_OPA_EVENTS (50000), BENCH_OPA_BATCH (500), BENCH_CONCURRENCY (16).
import { gzipSync } from 'node:zlib';
import type { Admin, Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import { createAuditSink } from '../services/audit-sink/sink.ts';
import { createCerbosAuditConsumer } from '../services/adapters/cerbos.ts';
import { adapterConfigFrom } from '../services/adapters/config.ts';
import { OPA_LOGS_PATH, opaRoutes } from '../services/adapters/opa.ts';
import { createDecisionWriter } from '../services/adapters/writer.ts';
import { createAuthenticator, mintToken } from '../services/lib/auth.ts';
import type { Topics } from '../services/lib/config.ts';
import { buildBaseApp } from '../services/lib/http.ts';
import { createKafka } from '../services/lib/kafka.ts';
import { createLogger } from '../services/lib/log.ts';
import { closeTestClickHouse, freshAuditDatabase } from '../test/helpers/clickhouse.ts';
import { createTopic, getTestKafka, uniqueName } from '../test/helpers/kafka.ts';
import { cerbosBinary, checkResources, startCerbos, unsignedJwt } from '../test/helpers/cerbos-pdp.ts';
import { CERBOS_ENTRY_JSON, opaEvent } from '../test/unit/adapters-fixtures.ts';

const env = (name: string, def: number): number => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : def;
};
const CERBOS_CALLS = env('BENCH_CERBOS_CALLS', 2_000);
const ADAPTER_ENTRIES = env('BENCH_ADAPTER_ENTRIES', 20_000);
const OPA_EVENTS = env('BENCH_OPA_EVENTS', 50_000);
const OPA_BATCH = env('BENCH_OPA_BATCH', 500);
const CONCURRENCY = env('BENCH_CONCURRENCY', 16);
const log = createLogger('bench-adapters', 'silent');
const secret = 'bench-secret-bench-secret-bench-secret-0123';

// A topic created a moment ago may not be in the admin's metadata yet: count it as empty.
const topicCount = async (admin: Admin, topic: string): Promise<number> =>
  admin
    .fetchTopicOffsets(topic)
    .then((offsets) => offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0))
    .catch(() => 0);

const waitUntil = async (probe: () => Promise<number>, target: number, timeoutMs: number): Promise<number> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await probe();
    if (n >= target) return Date.now();
    if (Date.now() > deadline) throw new Error(`only ${n}/${target} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const pool = async (n: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> => {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await work(next++);
    }),
  );
};

const rate = (n: number, ms: number): string => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;

const newTopics = async (brokers: string[]): Promise<Topics> => {
  const t: Topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  await Promise.all([createTopic(brokers, t.decisions, 6), createTopic(brokers, t.signals, 1), createTopic(brokers, t.sessionTrust, 1), createTopic(brokers, t.deadLetter, 1)]);
  return t;
};

const benchCerbos = async (kafka: Kafka, brokers: string[], admin: Admin): Promise<void> => {
  const binary = cerbosBinary();
  if (binary === undefined) {
    console.log('cerbos end to end: skipped (no @cerbos/cerbos-linux-x64 binary)');
    return;
  }
  const cerbosTopic = uniqueName('cerbos');
  await createTopic(brokers, cerbosTopic, 6);
  const topics = await newTopics(brokers);
  const pdp = await startCerbos({ brokers, topic: cerbosTopic, binary });
  const cfg = adapterConfigFrom({ TRUSTFOLD_CERBOS_TOPIC: cerbosTopic, TRUSTFOLD_CERBOS_GROUP_ID: uniqueName('cerbos') });
  const adapter = createCerbosAuditConsumer({ kafka, topics, cerbos: cfg.cerbos, registry: new Registry(), logger: log, consumer: { partitionsConsumedConcurrently: 3 } });
  const { database, writer, reader } = await freshAuditDatabase('bench_adapters');
  const sink = createAuditSink({ kafka, clickhouse: writer, database, topics, groupId: uniqueName('sink'), registry: new Registry(), log, subscribe: [topics.decisions] });
  await adapter.start();
  await sink.start();
  const rows = async (): Promise<number> => {
    const r = await reader.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
    return Number((await r.json<{ n: string }>())[0]?.n ?? 0);
  };
  try {
    const jwt = unsignedJwt({ sub: 'U-442', jti: 'J-1', scope: 'repo:write', act: { sub: 'A-17' } });
    const perCall = 2; // read_file + delete_file on one repo
    const t0 = Date.now();
    await pool(CERBOS_CALLS, CONCURRENCY, async (i) => {
      await checkResources(pdp.url, {
        requestId: `b-${i}`,
        principal: { id: 'A-17', roles: ['agent'], attr: { delegator: 'U-442', session_id: `S-${i % 200}`, agent_version: '3.2', trust_tier: i % 3 === 0 ? 'degraded' : 'trusted' } },
        resources: [{ actions: ['read_file', 'delete_file'], resource: { kind: 'git', id: `repo:R-${i}` } }],
        auxData: { jwt: { token: jwt } },
      });
    });
    const tCalls = Date.now();
    const decisions = CERBOS_CALLS * perCall;
    const tTopic = await waitUntil(() => topicCount(admin, topics.decisions), decisions, 120_000);
    const tCh = await waitUntil(rows, decisions, 180_000);
    console.log(
      `cerbos end to end: ${CERBOS_CALLS} CheckResources calls (${decisions} decisions), concurrency ${CONCURRENCY}: ` +
        `PDP calls ${rate(CERBOS_CALLS, tCalls - t0)}; into decisions topic ${rate(decisions, tTopic - t0)} decisions (${tTopic - t0} ms); ` +
        `into ClickHouse ${rate(decisions, tCh - t0)} decisions (${tCh - t0} ms)`,
    );
  } finally {
    await adapter.stop();
    await sink.stop();
    await pdp.stop();
  }

  // The adapter alone: a backlog of recorded entries (2 decisions each) already on the topic.
  const backlogTopic = uniqueName('cerbos-backlog');
  await createTopic(brokers, backlogTopic, 6);
  const topics2 = await newTopics(brokers);
  const entry = JSON.parse(CERBOS_ENTRY_JSON) as { callId: string };
  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < ADAPTER_ENTRIES; i += 1_000) {
    const messages = Array.from({ length: Math.min(1_000, ADAPTER_ENTRIES - i) }, (_, j) => {
      const callId = `BENCH${String(i + j).padStart(21, '0')}`;
      return { key: callId, value: JSON.stringify({ ...entry, callId }), headers: { 'cerbos.audit.kind': 'decision', 'cerbos.audit.encoding': 'json' } };
    });
    await producer.send({ topic: backlogTopic, acks: -1, messages });
  }
  await producer.disconnect();
  const cfg2 = adapterConfigFrom({ TRUSTFOLD_CERBOS_TOPIC: backlogTopic, TRUSTFOLD_CERBOS_GROUP_ID: uniqueName('cerbos') });
  const backlog = createCerbosAuditConsumer({ kafka, topics: topics2, cerbos: cfg2.cerbos, registry: new Registry(), logger: log, consumer: { partitionsConsumedConcurrently: 3 } });
  const t1 = Date.now();
  await backlog.start();
  const t2 = await waitUntil(() => topicCount(admin, topics2.decisions), ADAPTER_ENTRIES * 2, 180_000);
  await backlog.stop();
  console.log(`cerbos adapter alone (backlog of ${ADAPTER_ENTRIES} entries → ${ADAPTER_ENTRIES * 2} decisions): ${rate(ADAPTER_ENTRIES * 2, t2 - t1)} decisions (${t2 - t1} ms, incl. group join)`);
};

const benchOpa = async (kafka: Kafka, brokers: string[], admin: Admin): Promise<void> => {
  const topic = uniqueName('dec-opa');
  await createTopic(brokers, topic, 6);
  const writer = createDecisionWriter({ kafka, topic, timeoutMs: 30_000 });
  const app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(opaRoutes({ writer, opa: adapterConfigFrom({}).opa, registry: new Registry() }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address !== 'object') throw new Error('no address');
  const token = await mintToken({ sub: 'opa', tenant: 'acme', scopes: ['events:write'] }, secret);
  try {
    const batches = Math.ceil(OPA_EVENTS / OPA_BATCH);
    const bodies = Array.from({ length: batches }, (_, b) =>
      gzipSync(Buffer.from(JSON.stringify(Array.from({ length: OPA_BATCH }, (_, i) => opaEvent({ decision_id: `bench-${b}-${i}`, input: { ...(opaEvent()['input'] as object), session_id: `S-${i % 100}` } }))))),
    );
    const t0 = Date.now();
    await pool(batches, Math.min(CONCURRENCY, 8), async (b) => {
      const r = await fetch(`http://127.0.0.1:${address.port}${OPA_LOGS_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: `Bearer ${token}` },
        body: bodies[b] ?? Buffer.alloc(0),
      });
      if (r.status !== 200) throw new Error(`upload ${b}: ${r.status} ${await r.text()}`);
    });
    const ms = Date.now() - t0;
    const onTopic = await topicCount(admin, topic);
    console.log(`opa uploads: ${batches} gzip uploads × ${OPA_BATCH} events (${bodies[0]?.length ?? 0} B each): ${rate(batches * OPA_BATCH, ms)} events durable in Kafka (${ms} ms; ${onTopic} on topic)`);
  } finally {
    await app.close();
    await writer.close();
  }
};

const main = async (): Promise<void> => {
  const broker = await getTestKafka();
  const kafka = createKafka(broker.brokers, 'bench-adapters');
  const admin = kafka.admin();
  await admin.connect();
  try {
    await benchCerbos(kafka, broker.brokers, admin);
    await benchOpa(kafka, broker.brokers, admin);
  } finally {
    await admin.disconnect();
    await closeTestClickHouse();
    await broker.stop();
  }
};

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
