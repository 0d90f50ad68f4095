// Events/s through POST /v1/events until durable in Kafka (acks=all,
// idempotent producer), side by side with a raw kafkajs producer sending the
// same Avro messages with the same producer settings. Not a test: prints
// figures. `npm run bench:ingest` (KAFKA_BROKERS to use an existing broker).
//
//   BENCH_SECONDS (15)  BENCH_CONNECTIONS (4)  BENCH_BATCH (500)
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CompressionTypes, Partitioners } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../schemas/codec.ts';
import { eventSchema } from '../schemas/events.ts';
import { buildIngestApp } from '../services/ingest/app.ts';
import { uuidv7 } from '../services/ingest/ids.ts';
import { createKafkaSink } from '../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../services/lib/auth.ts';
import { startKafkaBroker } from '../services/lib/kafka-broker.ts';
import { createKafka, eventHeaders, partitionKeyOf } from '../services/lib/kafka.ts';
import { decisionFixture } from '../test/fixtures/events.ts';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 15);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 4);
const batch = Number(process.env['BENCH_BATCH'] ?? 500);
const SECRET = 'bench-secret-of-at-least-32-characters!!';

const external = process.env['KAFKA_BROKERS']?.split(',').filter((b) => b !== '');
const dataDir = external ? undefined : mkdtempSync(join(tmpdir(), 'trustfold-bench-'));
const broker = external ? undefined : await startKafkaBroker({ dataDir: dataDir!, heapMb: 1024 });
const brokers = external ?? broker!.brokers;
const kafka = createKafka(brokers, 'bench');
const run = Date.now().toString(36);
const topics = { decisions: `bench-decisions-${run}`, signals: `bench-signals-${run}`, sessionTrust: `bench-trust-${run}`, deadLetter: `bench-dlq-${run}` };
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ waitForLeaders: true, topics: [topics.decisions, topics.signals, `bench-raw-${run}`].map((topic) => ({ topic, numPartitions: 6 })) });
await admin.disconnect();

// Sessions vary so records spread over partitions like real traffic.
const template = JSON.stringify({ ...decisionFixture, event_id: '__ID__' });
const codec = createCodec();

// --- raw kafkajs: the same Avro records, same producer settings, same concurrency.
const raw = async (): Promise<number> => {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const base = eventSchema.parse(decisionFixture);
  let sent = 0;
  const deadline = Date.now() + seconds * 1000;
  const started = Date.now();
  const lane = async () => {
    while (Date.now() < deadline) {
      const messages = [];
      for (let i = 0; i < batch; i++) {
        const e = { ...base, event_id: uuidv7(), session_id: `S-${i % 64}`, emitted_by: 'bench' };
        messages.push({ key: partitionKeyOf(e), value: codec.encodeEvent(e), headers: eventHeaders(e) });
      }
      await producer.send({ topic: `bench-raw-${run}`, messages, acks: -1, compression: CompressionTypes.None });
      sent += batch;
    }
  };
  await Promise.all(Array.from({ length: connections }, lane));
  const rate = sent / ((Date.now() - started) / 1000);
  await producer.disconnect();
  return rate;
};

// --- through HTTP: auth, body parse, zod per event, Avro, group-committed produce.
const http = async (): Promise<{ rate: number; statuses: Record<string, number> }> => {
  const sink = createKafkaSink({ kafka, timeoutMs: 10_000 });
  const app = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry: new Registry(),
    sink,
    topics,
    activeFreezes: async () => [],
    limits: { maxBodyBytes: 64 * 1024 * 1024, maxEventsPerRequest: 10_000, produceTimeoutMs: 10_000 },
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const token = await mintToken({ sub: 'bench', tenant: 'acme', scopes: ['events:write'], ttlSeconds: 3600 }, SECRET);
  const result = await new Promise<{ accepted: number; elapsed: number; statuses: Record<string, number> }>((resolve, reject) => {
    // Node 20 workers do not inherit tsx's loader for their entry file: register it first.
    const entry = new URL('./ingest-load.ts', import.meta.url).href;
    const w = new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`, {
      eval: true,
      workerData: { url, token, template, batch, connections, seconds },
    });
    w.once('message', resolve);
    w.once('error', reject);
  });
  await app.close();
  await sink.close();
  return { rate: result.accepted / result.elapsed, statuses: result.statuses };
};

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
try {
  console.log(`ingest bench: ${cpus().length} cores, batches of ${batch} decisions, ${connections} connections/lanes, ${seconds}s each, Kafka ${brokers.join(',')}${broker ? ' (local, started for this run)' : ''}`);
  const rawRate = await raw();
  console.log(`raw kafkajs producer (Avro, acks=all, idempotent): ${fmt(rawRate)} events/s`);
  const h = await http();
  console.log(`POST /v1/events → acked by Kafka:                  ${fmt(h.rate)} events/s  (statuses ${JSON.stringify(h.statuses)})`);
  console.log(`ratio http/raw: ${(h.rate / rawRate).toFixed(2)}   target: ≥ 50,000 events/s and ≥ 0.5× raw`);
} finally {
  await broker?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
