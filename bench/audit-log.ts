// Audit log benchmark (issue 12): sink throughput with the log writer on vs
// off in the same run, proof latency and rows read per proof at a large tree,
// verify throughput, and the extra bytes per record. Embedded ClickHouse and a
// local Kafka broker unless KAFKA_BROKERS is set.
// Usage: npm run bench:audit-log [-- --sink=50000 --rounds=2 --leaves=10000000 --proofs=300]
// (a quick sink-only look: --leaves=10000 --proofs=20 keeps the 10M-leaf build out)
//
// The large tree for the proofs is built directly: its leaves and tile nodes
// are computed here and bulk-inserted through the store's own write path
// (`append`, the writer's atomic insert), not through Kafka and the sink; the
// sink figures come from the real path.
import type { ClickHouseClient } from '@clickhouse/client';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import { migrate } from '../services/lib/clickhouse-migrate.ts';
import { createCodec } from '../schemas/codec.ts';
import type { DecisionEvent } from '../schemas/events.ts';
import { appendLeaf, emptyFrontier, frontierRoot, hashLeaf, inclusionRanges, perfectNodes, verifyInclusion, type Frontier, type NodeHash } from '../schemas/audit-log/merkle.ts';
import { formatCheckpoint, generateSignerKey, parseSignerKey, parseVerifierKey, signNote, verifierKey } from '../services/audit-log/note.ts';
import { createProver } from '../services/audit-log/proofs.ts';
import { createAuditLogStore, DEFAULT_TILE_CACHE_BYTES, REFS_TABLE, TILE_HEIGHT, TREE_TABLE, type StoredLeaf } from '../services/audit-log/store.ts';
import { createVerifier } from '../services/audit-log/verify.ts';
import { createHookedAuditLogWriter } from '../services/audit-log/writer.ts';
import { createAuditSink } from '../services/audit-sink/sink.ts';
import { createClickHouse } from '../services/lib/clickhouse.ts';
import { createKafka, sessionKey } from '../services/lib/kafka.ts';
import { startKafkaBroker } from '../services/local-kafka/index.ts';
import { createLogger } from '../services/lib/log.ts';
import { printTargets, type Goal } from './target.ts';

const arg = (name: string, def: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const env = process.env[`AUDIT_LOG_BENCH_${name.toUpperCase()}`];
  return a !== undefined ? Number(a.slice(name.length + 3)) : env !== undefined && env !== '' ? Number(env) : def;
};
const N_SINK = arg('sink', 50_000);
const N_LEAVES = arg('leaves', 10_000_000);
const N_PROOFS = arg('proofs', 300);
/** Sink runs of each kind, interleaved off, on, on, off, … so that a change of load during the run weighs on both alike. */
const ROUNDS = Math.max(1, arg('rounds', 2));
const PARTITIONS = 6;

const codec = createCodec();
const log = createLogger('bench', 'silent');
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const fmt = (n: number, d = 1): string => n.toLocaleString('en-US', { maximumFractionDigits: d });
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

const decisionAt = (i: number, at: Date): DecisionEvent => ({
  type: 'decision',
  event_id: randomUUID(),
  tenant_id: 'bench',
  occurred_at: at.toISOString(),
  session_id: `S-${i % 5000}`,
  chain: [
    { kind: 'human', id: `U-${i % 1000}` },
    { kind: 'agent', id: `A-${i % 50}`, version: '3.2', owner: 'team-payments' },
  ],
  request: { tool: 'git', action: ['read_file', 'edit_file', 'delete_file'][i % 3] ?? 'read_file', resource: `repo:R-${i % 200}/file-${i % 997}.ts`, args_digest: `sha256:${randomBytes(32).toString('hex')}` },
  decision: { effect: i % 7 === 0 ? 'deny' : 'allow', policy_id: `P-${i % 20}`, policy_version: '12', rule_id: `rule-${i % 30}`, reasons: ['within scope'], trust_version: 1 + (i % 4), pdp_id: 'pdp-1', latency_us: 300 + (i % 200) },
  outcome: { status: i % 7 === 0 ? 'blocked' : 'executed' },
});

const scalar = async (ch: ClickHouseClient, query: string): Promise<number> => {
  const rs = await ch.query({ query, format: 'JSONEachRow' });
  const [row] = await rs.json<Record<string, number | string>>();
  return Number(Object.values(row ?? {})[0]);
};
const tableBytes = (ch: ClickHouseClient, database: string, tables: string[]): Promise<number> =>
  scalar(ch, `SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '${database}' AND table IN (${tables.map((t) => `'${t}'`).join(',')}) AND active`);

const waitFor = async (probe: () => Promise<boolean>, timeoutMs = 900_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await delay(100);
  }
};

/** Stored hashes a proof reads: each perfect node of its ranges costs 2^(level mod tile height) rows. */
const rowsRead = (index: number, size: number): number =>
  inclusionRanges(index, size)
    .flatMap(perfectNodes)
    .reduce((n, id) => n + 2 ** (id.level % TILE_HEIGHT), 0);

const main = async (): Promise<void> => {
  const dir = mkdtempSync(join(tmpdir(), 'trustfold-bench-audit-log-'));
  const external = process.env['KAFKA_BROKERS'];
  const broker = external !== undefined && external !== '' ? undefined : await startKafkaBroker({ dataDir: join(dir, 'kafka'), ephemeral: true, heapMb: 768 });
  const brokers = broker?.brokers ?? (external ?? '').split(',');
  const kafka: Kafka = createKafka(brokers, 'bench-audit-log');
  const target = (database: string) => ({ kind: 'embedded' as const, path: join(dir, 'clickhouse'), database });
  const clients: ClickHouseClient[] = [];
  const client = (database: string): ClickHouseClient => {
    const c = createClickHouse(target(database));
    clients.push(c);
    return c;
  };
  const goals: Goal[] = [];
  const say = (s: string) => void process.stdout.write(`${s}\n`);
  say(`trustfold audit-log bench — ${new Date().toISOString()} — node ${process.version}, chdb embedded, ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const s = parseSignerKey(generateSignerKey('trustfold-bench'));
  if (!s.ok) throw new Error(s.reason);
  const v = parseVerifierKey(verifierKey(s.signer));
  if (!v.ok) throw new Error(v.reason);

  try {
    // ---- 1. sink with the log writer off and on, interleaved (same events, same run) ----
    const stamp = Date.now().toString(36);
    const admin = kafka.admin();
    await admin.connect();
    const runTopics = (name: string) => ({ decisions: `bench-${name}-dec-${stamp}`, signals: `bench-${name}-sig-${stamp}`, sessionTrust: `bench-${name}-trust-${stamp}`, deadLetter: `bench-${name}-dlq-${stamp}` });
    const order = Array.from({ length: ROUNDS }, (_, r): ('off' | 'on')[] => (r % 2 === 0 ? ['off', 'on'] : ['on', 'off'])).flat();
    const runs = order.map((name, i) => ({ name, i, topics: runTopics(`${name}${i}`) }));
    await admin.createTopics({ waitForLeaders: true, topics: [...runs.flatMap((r) => Object.values(r.topics)), `bench-cp-${stamp}`].map((t) => ({ topic: t, numPartitions: t.includes('-dlq-') || t.includes('-cp-') ? 1 : PARTITIONS, replicationFactor: 1 })) });
    await admin.disconnect();
    const base = Date.now() - 3_600_000;
    const events = Array.from({ length: N_SINK }, (_, i) => decisionAt(i, new Date(base + i)));
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    for (const { topics: t } of runs) {
      for (let i = 0; i < events.length; i += 5000) {
        await producer.send({ topic: t.decisions, acks: -1, messages: events.slice(i, i + 5000).map((e) => ({ key: sessionKey(e.tenant_id, e.session_id), value: codec.encodeEvent(e) })) });
      }
    }
    await producer.disconnect();
    say(`\n[sink] ${fmt(N_SINK, 0)} decisions on each of ${runs.length} topics (${PARTITIONS} partitions); runs in the order ${order.join(', ')}`);

    const sinkRun = async (name: 'off' | 'on', i: number, topics: ReturnType<typeof runTopics>): Promise<{ seconds: number; cpuSeconds: number; database: string }> => {
      const database = `sink_${name}${i}`;
      const sinkClient = client(database);
      await migrate(sinkClient, { database, ttlDays: 3650 });
      const store = createAuditLogStore(client(database), database);
      if (name === 'on') await store.ensureTables();
      const reader = client(database);
      // As `--role all` runs them: the writer fed by the sink's hook, in the same process.
      const writer =
        name === 'on' ? createHookedAuditLogWriter({ kafka, store, signer: s.signer, originPrefix: 'bench', checkpointTopic: `bench-cp-${stamp}`, checkpointIntervalMs: 3_600_000, log }) : undefined;
      const sink = createAuditSink({
        kafka,
        clickhouse: sinkClient,
        database,
        topics,
        groupId: `bench-sink-${name}${i}-${stamp}`,
        registry: new Registry(),
        log,
        subscribe: [topics.decisions],
        ...(writer !== undefined ? { onStored: writer.onStored, onAssigned: writer.onAssigned } : {}),
      });
      await writer?.start();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await sink.start();
      let logged = 0;
      await waitFor(async () => {
        if ((await scalar(reader, `SELECT count() FROM ${database}.decisions`)) < N_SINK) return false;
        if (writer === undefined) return true;
        logged = await scalar(reader, `SELECT count() FROM ${database}.audit_log_tree WHERE row = 'leaf'`);
        return logged >= N_SINK;
      });
      const seconds = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      await writer?.checkpoint();
      await sink.stop();
      await writer?.stop();
      return { seconds, cpuSeconds: (c.user + c.system) / 1e6, database };
    };
    const results: { name: 'off' | 'on'; seconds: number; cpuSeconds: number; database: string }[] = [];
    for (const r of runs) {
      const res = await sinkRun(r.name, r.i, r.topics);
      results.push({ name: r.name, ...res });
      say(`  run ${r.i + 1} log ${r.name.padEnd(3)}: ${fmt(res.seconds, 2)} s = ${fmt(N_SINK / res.seconds, 0)} decisions/s; this process's CPU ${fmt((res.cpuSeconds * 1e6) / N_SINK, 0)} µs per decision (load average ${(loadavg()[0] ?? NaN).toFixed(1)})`);
    }
    const total = (name: 'off' | 'on', k: 'seconds' | 'cpuSeconds') => results.filter((x) => x.name === name).reduce((n, x) => n + x[k], 0);
    const r1 = results.filter((x) => x.name === 'on').pop() ?? { database: '' };
    const offRate = (N_SINK * ROUNDS) / total('off', 'seconds');
    const onRate = (N_SINK * ROUNDS) / total('on', 'seconds');
    say(`  log off: sink stored all in ${fmt(total('off', 'seconds'), 2)} s over ${ROUNDS} run(s) = ${fmt(offRate, 0)} decisions/s, ${fmt((total('off', 'cpuSeconds') * 1e6) / (N_SINK * ROUNDS), 0)} µs CPU per decision   (baseline)`);
    say(`  log on : sink stored all and the writer (fed by the sink's hook, same process) logged all in ${fmt(total('on', 'seconds'), 2)} s over ${ROUNDS} run(s) = ${fmt(onRate, 0)} decisions/s, ${fmt((total('on', 'cpuSeconds') * 1e6) / (N_SINK * ROUNDS), 0)} µs CPU per decision   = ${fmt(onRate / offRate, 2)}× off (CPU: ${fmt(total('off', 'cpuSeconds') / total('on', 'cpuSeconds'), 2)}× off)`);
    goals.push({ what: 'sink throughput, log on vs off', value: onRate / offRate, unit: '× off', bound: 'min', goal: 0.9 });

    // ---- 3. verify throughput on the logged run --------------------------------
    const vClient = client(r1.database);
    const verifier = createVerifier({ client: vClient, database: r1.database, store: createAuditLogStore(vClient, r1.database), verifiers: [v.verifier], originPrefix: 'bench' });
    const tv = performance.now();
    const report = await verifier.verify();
    const vSeconds = (performance.now() - tv) / 1000;
    const verified = report.logs.reduce((n, l) => n + l.verified, 0);
    say(`\n[verify] ${fmt(verified, 0)} records verified in ${fmt(vSeconds, 2)} s = ${fmt(verified / vSeconds, 0)} records/s (${report.findings.length} findings)`);
    if (!report.ok) throw new Error(`verify found ${report.findings.length} problems on an untouched log`);
    // Verify must keep up with what the sink ingests: its goal is the log-off sink rate of this run.
    goals.push({ what: 'verify throughput (baseline: sink rate, log off, this run)', value: verified / vSeconds, unit: 'records/s', bound: 'min', goal: Math.round(offRate) });

    // ---- 4. extra bytes per record ---------------------------------------------
    const logBytes = await tableBytes(vClient, r1.database, ['audit_log_tree', 'audit_log_checkpoints', REFS_TABLE]);
    const refsRows = await scalar(vClient, `SELECT count() FROM ${r1.database}.${REFS_TABLE}`);
    const recordBytes = await tableBytes(vClient, r1.database, ['decisions']);
    say(`\n[bytes] log tables ${fmt(logBytes / N_SINK, 1)} B per record, beside ${fmt(recordBytes / N_SINK, 1)} B per stored decision (the baseline), at ${fmt(N_SINK, 0)} records`);
    say(`  of which the lookup aid (${REFS_TABLE}: leaves that are not first copies): ${fmt(refsRows, 0)} rows`);
    // The project's storage budget for a whole decision (README, 10M decisions: ≤ 64 B) is the bound for the log's share.
    goals.push({ what: `extra bytes per record (log tables, ${fmt(N_SINK, 0)} records)`, value: logBytes / N_SINK, unit: 'B', bound: 'max', goal: 64 });

    // ---- 2. proofs at a large tree -------------------------------------------------
    const big = client('biglog');
    // The sink's tables too: the lookup by record id reads the write-once index (record_ids).
    await migrate(big, { database: 'biglog', ttlDays: 3650 });
    const bigStore = createAuditLogStore(big, 'biglog');
    await bigStore.ensureTables();
    const logId = 'bench.decisions/0';
    let f: Frontier = emptyFrontier();
    const tBuild = performance.now();
    const BATCH = 250_000;
    // The leaves the proofs ask for, chosen up front so their record ids are known (the API finds a leaf by id first).
    const sample = Array.from({ length: N_PROOFS + 20 }, () => Math.floor(Math.random() * N_LEAVES));
    const wanted = new Set(sample);
    const refs = new Map<number, string>();
    say(`\n[proofs] building a log of ${fmt(N_LEAVES, 0)} leaves directly: leaves and tile nodes computed here, bulk-inserted through the store's own append (not through Kafka)`);
    for (let start = 0; start < N_LEAVES; start += BATCH) {
      const leaves: StoredLeaf[] = [];
      const created: NodeHash[] = [];
      for (let i = start; i < Math.min(N_LEAVES, start + BATCH); i++) {
        const hash = hashLeaf(createHash('sha256').update(String(i)).digest());
        const ref = randomUUID();
        if (wanted.has(i)) refs.set(i, ref);
        // Every leaf a first copy, as in normal traffic: the lookup aid stays empty.
        leaves.push({ index: i, hash, tenant: 'bench', kind: 'decision', ref, offset: String(i), firstCopy: true });
        f = appendLeaf(f, hash, (n) => created.push(n));
      }
      await bigStore.append(logId, leaves, created);
      const done = Math.min(N_LEAVES, start + BATCH);
      if (done % 1_000_000 === 0 || done === N_LEAVES) {
        const sec = (performance.now() - tBuild) / 1000;
        say(`  … ${fmt(done, 0)} leaves in ${fmt(sec, 0)} s (${fmt(done / sec, 0)}/s, ~${fmt(((N_LEAVES - done) * sec) / done, 0)} s to go)`);
      }
    }
    const root = frontierRoot(f);
    say(`  built in ${fmt((performance.now() - tBuild) / 1000, 1)} s`);
    const bigBytes = await tableBytes(big, 'biglog', ['audit_log_tree']);
    say(`  tree table ${fmt(bigBytes / N_LEAVES, 1)} B per leaf at ${fmt(N_LEAVES, 0)} leaves (leaf rows: tenant, kind, random UUID ref, offset; hash tiles)`);
    // Proofs are against a signed checkpoint, as the API serves them.
    const origin = `bench/${logId}`;
    await bigStore.saveCheckpoint({ log: logId, origin, size: N_LEAVES, root, note: signNote(formatCheckpoint({ origin, size: N_LEAVES, root }), s.signer), signedAt: new Date().toISOString() });
    // Every figure below is taken on a store at rest: the build's background merges are waited for first
    // (merges of a 10M-leaf table running beside them would be their tail otherwise).
    const waitForMerges = async (after: string): Promise<void> => {
      const t = performance.now();
      await waitFor(async () => (await scalar(big, "SELECT count() FROM system.merges WHERE database = 'biglog'")) === 0, 1_200_000);
      say(`  background merges (${after}) finished after ${fmt((performance.now() - t) / 1000, 1)} s more`);
    };
    await waitForMerges('the build');
    // Proofs as the API serves them: its own store and client on the same tables (nothing cached by the
    // build), warmed when it starts (the query role's routes warm the store on ready).
    const apiStore = createAuditLogStore(client('biglog'), 'biglog');
    const prover = createProver(apiStore);
    const tWarm = performance.now();
    const warmed = await apiStore.warm();
    say(`  warm at start (the API's onReady): ${fmt(warmed.tiles, 0)} tiles of ${warmed.logs} log(s) in ${fmt(performance.now() - tWarm, 0)} ms`);
    const times: number[] = [];
    const reads: number[] = [];
    const fetched: number[] = [];
    const queries: number[] = [];
    const queryMs: number[] = [];
    const loadAtProofs = loadavg()[0] ?? NaN;
    for (let k = 0; k < N_PROOFS + 20; k++) {
      const index = sample[k] ?? 0;
      const before = apiStore.readStats();
      const t = performance.now();
      const path = await prover.inclusion(logId, index, N_LEAVES);
      const ms = performance.now() - t;
      const after = apiStore.readStats();
      const leaf = hashLeaf(createHash('sha256').update(String(index)).digest());
      if (!verifyInclusion(index, N_LEAVES, leaf, path, root).ok) throw new Error(`proof of leaf ${index} does not verify`);
      if (k === 0) say(`  first proof after the warm-up: ${fmt(ms, 1)} ms (${fmt(after.rows - before.rows, 0)} tile rows read in ${after.queries - before.queries} query); then ${N_PROOFS} measured after 19 more`);
      if (k >= 20) {
        times.push(ms);
        reads.push(rowsRead(index, N_LEAVES));
        fetched.push(after.rows - before.rows);
        queries.push(after.queries - before.queries);
        queryMs.push(after.queryMs - before.queryMs);
      }
    }
    const label = N_LEAVES % 1_000_000 === 0 ? `${N_LEAVES / 1_000_000}M` : fmt(N_LEAVES, 0);
    const inProcess = times.map((t, i) => t - (queryMs[i] ?? 0));
    const stats = apiStore.readStats();
    say(`  inclusion proof at ${label} leaves (${N_PROOFS} random leaves, load average ${loadAtProofs.toFixed(1)}): p50 ${fmt(pct(times, 50), 2)} ms, p99 ${fmt(pct(times, 99), 2)} ms`);
    say(`    of which the ClickHouse point read: p50 ${fmt(pct(queryMs, 50), 2)} ms, p99 ${fmt(pct(queryMs, 99), 2)} ms; in-process (cache, hashing): p50 ${fmt(pct(inProcess, 50), 2)} ms, p99 ${fmt(pct(inProcess, 99), 2)} ms`);
    say(`  stored hashes a proof uses: median ${fmt(pct(reads, 50), 0)}, max ${fmt(Math.max(...reads), 0)} (O(log n): ≤ ${2 ** (TILE_HEIGHT - 1)} per tile level of the path); ${fmt(Math.ceil(Math.log2(N_LEAVES)), 0)} hashes in the proof`);
    say(`  read from ClickHouse per proof (the rest from the tile cache): median ${fmt(pct(fetched, 50), 0)} tile rows, max ${fmt(Math.max(...fetched), 0)}, in ${fmt(queries.reduce((a, b) => a + b, 0) / Math.max(1, queries.length), 2)} queries on average; ${queries.filter((q) => q === 0).length} of ${N_PROOFS} proofs read nothing`);
    say(`  tile cache: ${fmt(stats.cachedBytes / 1e6, 1)} MB held (bound ${fmt(DEFAULT_TILE_CACHE_BYTES / 1e6, 1)} MB); all level-0 tiles at ${label} leaves would be ${fmt((N_LEAVES * 32) / 1e6, 0)} MB`);
    // The API's step before the proof: the leaves of a record id. The sink would have written the write-once
    // index; here it is filled from the leaf rows in SQL (a first copy per leaf, at the leaf's offset).
    const tIds = performance.now();
    await big.command({
      query: `INSERT INTO biglog.record_ids (tenant, namespace, record_key, digest, occurred_at, kafka_topic, kafka_partition, kafka_offset)
        SELECT tenant, 'event', toString(ref_uuid), repeat('0', 64), now64(3), 'bench.decisions', 0, kafka_offset FROM biglog.${TREE_TABLE} WHERE row = 'leaf'`,
    });
    await big.command({ query: 'OPTIMIZE TABLE biglog.record_ids FINAL' });
    say(`  write-once index (record_ids) filled for ${fmt(N_LEAVES, 0)} records and merged in ${fmt((performance.now() - tIds) / 1000, 1)} s`);
    const bigRefsBytes = await tableBytes(big, 'biglog', [REFS_TABLE]);
    say(`  lookup aid (${REFS_TABLE}) at ${fmt(N_LEAVES, 0)} first copies: ${fmt(bigRefsBytes, 0)} B`);
    // Its worst case: a row for every leaf (the stand-alone writer ahead of the sink records each leaf the index does not name yet).
    await big.command({ query: `CREATE TABLE biglog.refs_worst AS biglog.${REFS_TABLE}` });
    await big.command({ query: `INSERT INTO biglog.refs_worst SELECT tenant, kind, toString(ref_uuid), log, idx, kafka_offset FROM biglog.${TREE_TABLE} WHERE row = 'leaf'` });
    await big.command({ query: 'OPTIMIZE TABLE biglog.refs_worst FINAL' });
    const worstBytes = await tableBytes(big, 'biglog', ['refs_worst']);
    say(`  lookup aid if every leaf had a row (worst case, not this run's): ${fmt(worstBytes / N_LEAVES, 1)} B per leaf`);
    await big.command({ query: 'DROP TABLE biglog.refs_worst' });

    await waitForMerges('record_ids filled');
    // The proof route's step, old and new interleaved id by id (alternating which goes first), each through
    // a store and client of its own (its own tile cache, warmed as the API warms it): the record's leaves,
    // the latest checkpoint, the inclusion proof. The record row itself (recordAt: a point read on the
    // decisions table) is not part of it: the built log has no rows.
    const scanStore = createAuditLogStore(client('biglog'), 'biglog');
    const lookStore = createAuditLogStore(client('biglog'), 'biglog');
    await scanStore.warm();
    await lookStore.warm();
    const variants = [
      { name: 'scan', store: scanStore, find: scanStore.scanLeaves, prover: createProver(scanStore) },
      { name: 'lookup', store: lookStore, find: lookStore.findLeaves, prover: createProver(lookStore) },
    ] as const;
    type Step = { find: number; step: number; cpu: number };
    const steps = new Map<string, Step[]>(variants.map((x) => [x.name, []]));
    const N_STEPS = Math.min(N_PROOFS, 200);
    const loadAtSteps = loadavg()[0] ?? NaN;
    for (let k = 0; k < N_STEPS + 10; k++) {
      const index = sample[k % sample.length] ?? 0;
      for (const x of k % 2 === 0 ? variants : [...variants].reverse()) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const found = await x.find('bench', 'decision', refs.get(index) ?? '');
        const t1 = performance.now();
        const leaf = found[0];
        if (found.length !== 1 || leaf?.index !== index) throw new Error(`${x.name}: leaf ${index} not found by its record id`);
        const cp = (await x.store.latestCheckpoints(leaf.log))[0];
        const path = await x.prover.inclusion(leaf.log, leaf.index, cp?.size ?? 0);
        const t2 = performance.now();
        const cpu = process.cpuUsage(c0);
        if (!verifyInclusion(index, N_LEAVES, leaf.hash, path, root).ok) throw new Error(`${x.name}: proof of leaf ${index} does not verify`);
        if (k >= 10) steps.get(x.name)?.push({ find: t1 - t0, step: t2 - t0, cpu: (cpu.user + cpu.system) / 1000 });
      }
    }
    const of = (name: string, f: (s: Step) => number): number[] => (steps.get(name) ?? []).map(f);
    for (const x of variants) {
      const what = x.name === 'scan' ? 'by a scan of the references (findLeaves before; the baseline)' : 'by record_ids + lookup aid (findLeaves now)';
      say(`  record id → its leaves, ${what}: p50 ${fmt(pct(of(x.name, (q) => q.find), 50), 2)} ms, p99 ${fmt(pct(of(x.name, (q) => q.find), 99), 2)} ms`);
      say(`    the proof route's step (leaves + checkpoint + proof; ${N_STEPS} ids, load average ${loadAtSteps.toFixed(1)}): p50 ${fmt(pct(of(x.name, (q) => q.step), 50), 2)} ms, p99 ${fmt(pct(of(x.name, (q) => q.step), 99), 2)} ms; process CPU p50 ${fmt(pct(of(x.name, (q) => q.cpu), 50), 2)} ms`);
    }
    goals.push({ what: `record id → leaves p50 at ${label} leaves (baseline: the scan, this run, ${fmt(pct(of('scan', (q) => q.find), 50), 1)} ms)`, value: pct(of('lookup', (q) => q.find), 50), unit: 'ms', bound: 'max', goal: 20 });
    goals.push({ what: `proof route step (lookup + proof) p50 at ${label} leaves (baseline: with the scan, this run, ${fmt(pct(of('scan', (q) => q.step), 50), 1)} ms)`, value: pct(of('lookup', (q) => q.step), 50), unit: 'ms', bound: 'max', goal: 20 });
    goals.push({ what: `proof route step (lookup + proof) p99 at ${label} leaves (baseline: with the scan, this run, ${fmt(pct(of('scan', (q) => q.step), 99), 1)} ms)`, value: pct(of('lookup', (q) => q.step), 99), unit: 'ms', bound: 'max', goal: 20 });

    // The export's step before each proof: the leaf of a copy by its Kafka offset (the offset index), 100 records.
    const located: number[] = [];
    for (const index of sample.slice(20, 120)) {
      const t = performance.now();
      const found = await apiStore.leafAt(logId, String(index), 'bench', 'decision', refs.get(index) ?? '');
      located.push(performance.now() - t);
      if (found?.index !== index) throw new Error(`leaf ${index} not found at its offset`);
    }
    say(`  leaf lookup by Kafka offset (the export's step before each proof: tile first offsets, one statement; 100 records): p50 ${fmt(pct(located, 50), 2)} ms, p99 ${fmt(pct(located, 99), 2)} ms`);

    // Where a tile's point read goes: the same read with the per-query settings the store passed before
    // (the embedded engine SETs them and resets them with a second statement), without them (now), and
    // without them but one thread (a SETTINGS clause in the query), interleaved, rotating the order.
    const raw = client('biglog');
    const tileSql = `SELECT level, idx, hex(hashes) AS h FROM biglog.${TREE_TABLE} WHERE log = {log:String} AND row = 'tile' AND level = 0 AND idx = {i:UInt64}`;
    const reads3 = [
      { name: 'with per-query settings (before)', run: (i: number) => raw.query({ query: tileSql, query_params: { log: logId, i }, format: 'JSONCompactEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0, date_time_output_format: 'iso' } }) },
      { name: 'without (now)', run: (i: number) => raw.query({ query: tileSql, query_params: { log: logId, i }, format: 'JSONCompactEachRow' }) },
      { name: 'without, SETTINGS max_threads = 1', run: (i: number) => raw.query({ query: `${tileSql} SETTINGS max_threads = 1`, query_params: { log: logId, i }, format: 'JSONCompactEachRow' }) },
    ];
    const readMs = reads3.map(() => [] as number[]);
    const readCpu = reads3.map(() => [] as number[]);
    for (let k = 0; k < N_PROOFS; k++) {
      const tile = Math.floor(((sample[k % sample.length] ?? 0) / 256));
      for (let j = 0; j < reads3.length; j++) {
        const v3 = (j + k) % reads3.length;
        const r3 = reads3[v3];
        if (r3 === undefined) continue;
        const c0 = process.cpuUsage();
        const t = performance.now();
        const rs = await r3.run(tile);
        const got = await rs.json<unknown[]>();
        readMs[v3]?.push(performance.now() - t);
        const cpu = process.cpuUsage(c0);
        readCpu[v3]?.push((cpu.user + cpu.system) / 1000);
        if (got.length === 0) throw new Error(`tile ${tile} not read`);
      }
    }
    say(`  one level-0 tile's point read (${N_PROOFS} tiles, each read all three ways, order rotated; load average ${(loadavg()[0] ?? NaN).toFixed(1)}):`);
    reads3.forEach((r3, j) => say(`    ${r3.name}: p50 ${fmt(pct(readMs[j] ?? [], 50), 2)} ms, p99 ${fmt(pct(readMs[j] ?? [], 99), 2)} ms; process CPU p50 ${fmt(pct(readCpu[j] ?? [], 50), 2)} ms`));

    goals.push({ what: `proof p50 at ${label} leaves`, value: pct(times, 50), unit: 'ms', bound: 'max', goal: 20 });
    goals.push({ what: `proof p99 at ${label} leaves`, value: pct(times, 99), unit: 'ms', bound: 'max', goal: 20 });

    say('');
    printTargets(goals, say);
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
};

main().catch((e: unknown) => {
  process.stderr.write(`bench:audit-log failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
