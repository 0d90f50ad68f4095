// Events/s through POST /v1/events until durable in Kafka (acks=all,
// idempotent producer), side by side with a raw kafkajs producer sending the
// same Avro messages with the same producer settings (acks=all, idempotent,
// one request in flight per producer, as many producers as the ingest sink
// runs, records routed to producers by key the same way). Not a test: prints
// figures, each with the 1-minute load average beside it (the machine is
// shared). `npm run bench:ingest` (KAFKA_BROKERS to use an existing broker).
//
//   BENCH_SECONDS (15)  BENCH_CONNECTIONS (4)  BENCH_BATCH (500)
//   BENCH_PRODUCERS (3, as TRUSTFOLD_INGEST_PRODUCERS: idempotent producers in the sink and the raw baseline; a divisor of the 6 partitions)
//   BENCH_SESSIONS (64: distinct session ids, so records spread over partitions)
//   BENCH_PREPARE_THREADS (1: worker threads that parse, check and encode bodies
//   for the HTTP side, as `prepareThreads` of the ingest routes; 0 = on the event loop)
//   BENCH_ROUNDS (3: raw and HTTP alternate in this many rounds of
//   BENCH_SECONDS/rounds each, so a load swing on the shared machine hits both)
//   BENCH_CPU_PROF (a directory: writes a V8 CPU profile of the main thread
//   for each timed phase, raw-<n>p-r<round> and http-r<round>, for DevTools)
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { CompressionTypes, type Message, type Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../schemas/codec.ts';
import { eventSchema } from '../schemas/events.ts';
import { buildIngestApp } from '../services/ingest/app.ts';
import { uuidv7 } from '../schemas/ids.ts';
import { createKafkaSink, keyPartitioner, murmur2 } from '../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../services/lib/auth.ts';
import { startKafkaBroker } from '../services/local-kafka/index.ts';
import { createKafka, partitionKeyOf } from '../services/lib/kafka.ts';
import { decisionFixture } from '../test/fixtures/events.ts';
import { printTargets } from './target.ts';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 15);
const rounds = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? 3));
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 4);
const batch = Number(process.env['BENCH_BATCH'] ?? 500);
const producers = Number(process.env['BENCH_PRODUCERS'] ?? 3);
const sessions = Number(process.env['BENCH_SESSIONS'] ?? 64);
const prepareThreads = Number(process.env['BENCH_PREPARE_THREADS'] ?? 1);
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
// Ingest refuses event times outside its horizon: the fixture is dated now.
const template = JSON.stringify({ ...decisionFixture, occurred_at: new Date().toISOString(), event_id: '__ID__', session_id: '__SESSION__' });
const codec = createCodec();

// --- raw kafkajs: the same Avro records (encoded in the timed loop, as ingest
// does), the same producer settings and partitioner, the same concurrency.
// With several producers each record goes to producer murmur2(key) mod n, as
// in the sink, so each producer owns a fixed set of partitions.
// cpu: the main thread's CPU seconds over the phase (process.threadCpuUsage):
// the producing side in raw, the server in HTTP (the load generator runs in a
// worker thread and is counted apart as clientCpu). Per event it is a figure
// the other tenants of a shared machine disturb much less than a rate.
// proc: the whole process's CPU seconds (every thread: preparing threads, GC
// helpers, libuv), i.e. everything the producing side costs but the broker;
// the load generator is a child process, its CPU (clientCpu) counted apart.
type Phase = { events: number; elapsed: number; cpu: number; proc: number; clientCpu?: number };
const cpuSeconds = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1e6;
const raw = async (n: number, seconds: number): Promise<Phase> => {
  const ps: Producer[] = Array.from({ length: n }, () => kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: keyPartitioner }));
  await Promise.all(ps.map((p) => p.connect()));
  const base = eventSchema.parse({ ...decisionFixture, occurred_at: new Date().toISOString() });
  let sent = 0;
  let seq = 0;
  const deadline = Date.now() + seconds * 1000;
  const started = Date.now();
  const cpu0 = process.threadCpuUsage();
  const proc0 = process.cpuUsage();
  const lane = async () => {
    while (Date.now() < deadline) {
      const perProducer: Message[][] = ps.map(() => []);
      for (let i = 0; i < batch; i++) {
        const e = { ...base, event_id: uuidv7(), session_id: `S-${seq++ % sessions}`, emitted_by: 'bench' };
        const key = partitionKeyOf(e);
        perProducer[(murmur2(key) & 0x7fffffff) % n]?.push({ key, value: codec.encodeEvent(e) });
      }
      await Promise.all(
        ps.map((p, k) => {
          const messages = perProducer[k] ?? [];
          return messages.length === 0 ? undefined : p.send({ topic: `bench-raw-${run}`, messages, acks: -1, compression: CompressionTypes.None });
        }),
      );
      sent += batch;
    }
  };
  await Promise.all(Array.from({ length: connections }, lane));
  const elapsed = (Date.now() - started) / 1000;
  const cpu = cpuSeconds(process.threadCpuUsage(cpu0));
  const proc = cpuSeconds(process.cpuUsage(proc0));
  await Promise.all(ps.map((p) => p.disconnect()));
  return { events: sent, elapsed, cpu, proc };
};

// --- through HTTP: auth, body parse, zod per event, Avro, group-committed produce.
const http = async (seconds: number): Promise<Phase & { statuses: Record<string, number> }> => {
  const sink = createKafkaSink({ kafka, timeoutMs: 10_000, producers });
  const app = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry: new Registry(),
    sink,
    topics,
    activeFreezes: async () => [],
    limits: { maxBodyBytes: 64 * 1024 * 1024, maxEventsPerRequest: 10_000, produceTimeoutMs: 10_000 },
    prepareThreads,
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const token = await mintToken({ sub: 'bench', tenant: 'acme', scopes: ['events:write'], ttlSeconds: 3600 }, SECRET);
  // Full batches through the whole path before the clock starts: the preparing threads
  // are up and their code optimised (each phase's app starts fresh threads, where a
  // serving instance's are long warm), the producers connected.
  for (let w = 0; w < 4 * connections; w++) {
    const payload = `[${Array.from({ length: batch }, (_, i) => template.replace('"__ID__"', JSON.stringify(uuidv7())).replace('"__SESSION__"', `"S-warm-${i % sessions}"`)).join(',')}]`;
    const warm = await app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload });
    if (warm.statusCode !== 202) throw new Error(`warm-up POST answered ${warm.statusCode}: ${warm.body}`);
  }
  const cpu0 = process.threadCpuUsage();
  const proc0 = process.cpuUsage();
  const result = await new Promise<{ accepted: number; elapsed: number; cpu: number; statuses: Record<string, number> }>((resolve, reject) => {
    // A child process, so that the whole of this process's CPU (every thread, GC helpers
    // included) is the server's; the child is this same node with tsx.
    const w = fork(new URL('./ingest-load.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], serialization: 'advanced' });
    w.send({ url, token, template, batch, connections, seconds, sessions });
    w.once('message', (m) => resolve(m as { accepted: number; elapsed: number; cpu: number; statuses: Record<string, number> }));
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`load generator exited with ${code} before it answered`)));
  });
  const cpu = cpuSeconds(process.threadCpuUsage(cpu0));
  const proc = cpuSeconds(process.cpuUsage(proc0));
  await app.close();
  await sink.close();
  return { events: result.accepted, elapsed: result.elapsed, cpu, proc, clientCpu: result.cpu, statuses: result.statuses };
};

// Optional: a CPU profile per timed phase, so raw and HTTP can be compared.
const profileDir = process.env['BENCH_CPU_PROF'];
const inspector = profileDir === undefined ? undefined : new Session();
if (inspector && profileDir !== undefined) {
  mkdirSync(profileDir, { recursive: true });
  inspector.connect();
  await inspector.post('Profiler.enable');
}
const profiled = async <T>(name: string, phase: () => Promise<T>): Promise<T> => {
  if (!inspector || profileDir === undefined) return phase();
  await inspector.post('Profiler.start');
  try {
    return await phase();
  } finally {
    const { profile } = await inspector.post('Profiler.stop');
    writeFileSync(join(profileDir, `${name}.cpuprofile`), JSON.stringify(profile));
  }
};

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const load = () => `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
const rate = (p: Phase) => p.events / p.elapsed;
const sum = (ps: Phase[], f: (p: Phase) => number): number => ps.reduce((n, p) => n + f(p), 0);
const total = (ps: Phase[]): Phase => ({
  events: sum(ps, (p) => p.events),
  elapsed: sum(ps, (p) => p.elapsed),
  cpu: sum(ps, (p) => p.cpu),
  proc: sum(ps, (p) => p.proc),
  clientCpu: sum(ps, (p) => p.clientCpu ?? 0),
});
const us = (seconds: number, p: Phase): string => ((1e6 * seconds) / p.events).toFixed(1);
const perEvent = (p: Phase): string =>
  `CPU/event µs: main thread ${us(p.cpu, p)}, all threads ${us(p.proc, p)}${p.clientCpu ? ` (+ client ${us(p.clientCpu, p)})` : ''}`;
try {
  const slice = seconds / rounds;
  console.log(`ingest bench: ${cpus().length} cores, batches of ${batch} decisions over ${sessions} sessions, ${connections} connections/lanes, ${producers} producer(s), ${prepareThreads} preparing thread(s), ${rounds} alternating rounds of ${slice.toFixed(1)}s, Kafka ${brokers.join(',')}${broker ? ' (local, started for this run)' : ''}`);
  console.log(`(${load()} at start)`);
  // Untimed, so that round 1 of the raw side does not run on cold code either.
  await raw(producers, Math.min(2, slice));
  const raws1: Phase[] = [];
  const raws: Phase[] = [];
  const https: Phase[] = [];
  const statuses: Record<string, number> = {};
  for (let r = 1; r <= rounds; r++) {
    if (producers !== 1) {
      const one = await profiled(`raw-1p-r${r}`, () => raw(1, slice));
      raws1.push(one);
      console.log(`  round ${r}: raw kafkajs, 1 producer:    ${fmt(rate(one))} events/s, ${perEvent(one)}   (${load()})`);
    }
    const rr = await profiled(`raw-${producers}p-r${r}`, () => raw(producers, slice));
    raws.push(rr);
    console.log(`  round ${r}: raw kafkajs, ${producers} producer(s): ${fmt(rate(rr))} events/s, ${perEvent(rr)}   (${load()})`);
    const h = await profiled(`http-r${r}`, () => http(slice));
    https.push(h);
    for (const [k, v] of Object.entries(h.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
    console.log(`  round ${r}: POST /v1/events:           ${fmt(rate(h))} events/s, ${perEvent(h)}   (${load()})`);
  }
  if (producers !== 1) console.log(`raw kafkajs, 1 producer  (Avro, acks=all, idempotent): ${fmt(rate(total(raws1)))} events/s`);
  const rawRate = rate(total(raws));
  const httpRate = rate(total(https));
  console.log(`raw kafkajs, ${producers} producer(s) (Avro, acks=all, idempotent): ${fmt(rawRate)} events/s, ${perEvent(total(raws))}`);
  console.log(`POST /v1/events → acked, ${producers} producer(s):              ${fmt(httpRate)} events/s, ${perEvent(total(https))}   (statuses ${JSON.stringify(statuses)})`);
  const perEv = (ps: Phase[], f: (p: Phase) => number): number => f(total(ps)) / total(ps).events;
  const mainRatio = perEv(raws, (p) => p.cpu) / perEv(https, (p) => p.cpu);
  const procRatio = perEv(raws, (p) => p.proc) / perEv(https, (p) => p.proc);
  console.log(`ratio http/raw (same producer count): ${(httpRate / rawRate).toFixed(2)}; CPU per event raw/http: main thread ${mainRatio.toFixed(2)}, all threads ${procRatio.toFixed(2)}   (${load()} at end)`);
  printTargets([
    { what: `POST /v1/events → acked, ${producers} producer(s)`, value: httpRate, unit: 'events/s', bound: 'min', goal: 50_000 },
    { what: 'POST /v1/events ÷ raw kafkajs, same run', value: httpRate / rawRate, unit: '×', bound: 'min', goal: 0.7 },
  ]);
} finally {
  await broker?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
