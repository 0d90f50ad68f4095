// Detector benchmark. Not a test: prints figures. `npm run bench -- detect`
// (KAFKA_BROKERS to use an existing broker).
//
// One decisions topic of BENCH_DECISIONS decisions over BENCH_SESSIONS
// sessions (a deny every 7th call, a shared token every 1000th session, PDPs
// stamping trust versions, tool schema digests), and a session-trust topic with
// two versions per session. Measured in the same run, on the same topic:
//   raw consume: a kafkajs consumer in a fresh group reading the topic to its
//     end, no decoding (the ceiling of any consumer of this topic here);
//   detector: the detect role (services/detect/role.ts) with every rule on,
//     from its consumer's start to the last decision folded and committed:
//     decode, rules, and the detections emitted through admission to Kafka.
// TARGET: detector ≥ 0.5 × raw consume. Why 0.5: the detector does a
// consumer's work plus an Avro decode per record (the codec bench puts that
// within the same order as fetching it) plus the rules; a detector at half
// the raw rate keeps up with any decision rate the topic itself can be read
// at on one consumer, so it is never what bounds detection latency.
//
//   BENCH_DECISIONS (200000)  BENCH_SESSIONS (5000)  BENCH_PARTITIONS (6)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Partitioners, type Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../schemas/codec.ts';
import type { DecisionEvent, SessionTrust } from '../schemas/events.ts';
import { parseDetectConfig } from '../services/detect/config.ts';
import { createDetectRole } from '../services/detect/role.ts';
import { createKafkaSink } from '../services/ingest/sink.ts';
import { configFrom } from '../services/lib/config.ts';
import { createKafka, partitionKeyOf, sessionKey } from '../services/lib/kafka.ts';
import { createLogger } from '../services/lib/log.ts';
import { startKafkaBroker } from '../services/local-kafka/index.ts';
import { printTargets } from './target.ts';

const int = (name: string, def: number): number => {
  const v = Number(process.env[name] ?? def);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
};
const N = int('BENCH_DECISIONS', 200_000);
const SESSIONS = int('BENCH_SESSIONS', 5_000);
const PARTITIONS = int('BENCH_PARTITIONS', 6);
const codec = createCodec();
const now = (): number => performance.now();
const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
const runId = Math.floor(Math.random() * 0xffff);
const eventId = (i: number): string => `01976d2a-${hex(runId, 4)}-7000-8000-${hex(i, 12)}`;

const main = async (): Promise<void> => {
  const external = process.env['KAFKA_BROKERS']?.split(',').filter((b) => b !== '');
  const dataDir = external ? undefined : mkdtempSync(join(tmpdir(), 'trustfold-bench-detect-'));
  const broker = dataDir === undefined ? undefined : await startKafkaBroker({ dataDir, heapMb: 1024 });
  const brokers = external ?? broker?.brokers ?? [];
  const kafka: Kafka = createKafka(brokers, 'bench-detect');
  const prefix = `bench-detect-${Date.now().toString(36)}`;
  const env: Record<string, string> = {
    KAFKA_BROKERS: brokers.join(','),
    TRUSTFOLD_TOPIC_DECISIONS: `${prefix}.decisions`,
    TRUSTFOLD_TOPIC_SIGNALS: `${prefix}.signals`,
    TRUSTFOLD_TOPIC_SESSION_TRUST: `${prefix}.session-trust`,
    TRUSTFOLD_TOPIC_DEAD_LETTER: `${prefix}.dead-letter`,
    TRUSTFOLD_PARTITIONS: String(PARTITIONS),
    TRUSTFOLD_DETECT_GROUP: `${prefix}-detect`,
    TRUSTFOLD_DETECT_RULES: 'deny-storm,token-replay,out-of-task,stale-pdp,tool-description-changed',
    TRUSTFOLD_DETECT_TASK_TOOLS: '{"refactor":["git:*","fs:read"]}',
  };
  const config = configFrom(env);
  const dc = parseDetectConfig(env);
  if (!dc.ok) throw new Error(JSON.stringify(dc.error));
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic: config.topics.decisions, numPartitions: PARTITIONS },
      { topic: config.topics.signals, numPartitions: PARTITIONS },
      { topic: config.topics.sessionTrust, numPartitions: PARTITIONS, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
    ],
  });
  await admin.disconnect();
  const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const sink = createKafkaSink({ kafka, timeoutMs: 30_000 });
  try {
    const t0 = Date.now() - 120_000;
    const iso = (ms: number): string => new Date(ms).toISOString();
    // Two trust versions per session: v2 from 60 s before the last decision.
    const trust: { key: string; value: Buffer }[] = [];
    for (let s = 0; s < SESSIONS; s++) {
      for (const v of [1, 2]) {
        const state: SessionTrust = {
          session_id: `S-${s}`,
          tenant_id: 'acme',
          version: v,
          tier: v === 1 ? 'trusted' : 'degraded',
          causes: [],
          revoked_roles: [],
          consent_revoked: false,
          freezes: [],
          ended: false,
          updated_at: iso(t0 + (v === 1 ? 0 : 60_000)),
          caused_by: eventId(10_000_000 + s * 2 + v),
        };
        trust.push({ key: sessionKey('acme', `S-${s}`), value: codec.encodeTrust(state) });
      }
    }
    for (let i = 0; i < trust.length; i += 5_000) await producer.send({ topic: config.topics.sessionTrust, acks: -1, messages: trust.slice(i, i + 5_000) });
    const decision = (i: number): DecisionEvent => {
      const s = i % SESSIONS;
      const at = t0 + Math.floor((i / N) * 110_000);
      return {
        type: 'decision',
        event_id: eventId(i),
        tenant_id: 'acme',
        occurred_at: iso(at),
        session_id: `S-${s}`,
        chain: [{ kind: 'human', id: `U-${s % 500}` }, { kind: 'agent', id: 'A-17', version: '3.2' }],
        token: { jti: s % 1000 === 999 ? 'J-shared' : `J-${s}`, scopes: ['repo:write'] },
        intent: { task_class: 'refactor' },
        request: { tool: 'git', action: i % 997 === 0 ? 'force_push' : 'read_file', resource: `repo:R-${s % 50}` },
        decision: { effect: i % 7 === 0 ? 'deny' : 'allow', policy_id: 'P-risk-43', reasons: [], pdp_id: `pdp-${s % 8}`, trust_version: at < t0 + 60_000 || s % 8 === 0 ? 1 : 2 },
        provenance: { tool_schema_digest: i % 5_003 === 0 ? 'sha256:changed' : 'sha256:git-v1' },
      };
    };
    const batch = 2_000;
    const tp = now();
    for (let i = 0; i < N; i += batch) {
      const messages = Array.from({ length: Math.min(batch, N - i) }, (_, k) => {
        const d = decision(i + k);
        return { key: partitionKeyOf(d), value: codec.encodeEvent(d) };
      });
      await producer.send({ topic: config.topics.decisions, acks: -1, messages });
    }
    console.log(`produced ${N.toLocaleString('en')} decisions over ${SESSIONS.toLocaleString('en')} sessions, ${PARTITIONS} partitions, in ${((now() - tp) / 1000).toFixed(1)} s`);

    // Raw consume: fresh group, no decoding, to the end.
    const raw = kafka.consumer({ groupId: `${prefix}-raw`, maxWaitTimeInMs: 200 });
    await raw.connect();
    await raw.subscribe({ topic: config.topics.decisions, fromBeginning: true });
    let seen = 0;
    let bytes = 0;
    let rawDone!: () => void;
    const rawFinished = new Promise<void>((r) => (rawDone = r));
    const tr = now();
    await raw.run({
      autoCommit: false,
      eachBatch: async ({ batch: b }) => {
        for (const m of b.messages) bytes += m.value?.length ?? 0;
        seen += b.messages.length;
        if (seen >= N) rawDone();
      },
    });
    await rawFinished;
    const rawSeconds = (now() - tr) / 1000;
    await raw.disconnect();
    const rawRate = N / rawSeconds;
    console.log(`raw consume (kafkajs, no decode): ${Math.round(rawRate).toLocaleString('en')} decisions/s (${rawSeconds.toFixed(2)} s, ${(bytes / N).toFixed(0)} B/record)`);

    // The detector, every rule on.
    const role = createDetectRole({ kafka, topics: config.topics, config: dc.value, sink, registry: new Registry(), logger: createLogger('bench-detect', 'warn', false), eventTime: config.eventTime });
    const ts = now();
    await role.start();
    const started = now();
    for (;;) {
      if (role.stats().folded >= N) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const detSeconds = (now() - started) / 1000;
    const detRate = N / detSeconds;
    const st = role.stats();
    await role.stop();
    console.log(`detector start (context: ${SESSIONS * 2} trust records, signals): ${((started - ts) / 1000).toFixed(2)} s`);
    console.log(`detector (decode + 5 rules + emit): ${Math.round(detRate).toLocaleString('en')} decisions/s (${detSeconds.toFixed(2)} s); detections ${st.detections}, signals emitted ${st.emitted}, context timeouts ${st.contextTimeouts}`);
    console.log(`detector ÷ raw consume, same topic, same run: ${(detRate / rawRate).toFixed(2)}×`);
    printTargets([
      { what: 'detector throughput on the decisions topic ÷ raw consume of the same topic, same run', value: detRate / rawRate, unit: '×', bound: 'min', goal: 0.5 },
    ]);
  } finally {
    await sink.close();
    await producer.disconnect();
    await broker?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  }
};

await main();
process.exit(0);
