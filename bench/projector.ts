// Projector benchmark. Not a test: prints figures. `npm run bench:projector`
// (KAFKA_BROKERS to use an existing broker).
//
//   1. Propagation: a probe signal produced here → projector (child process,
//      services/projector/main.ts) → session-trust topic → TrustView.onChange
//      in another child process; p50/p95/p99 under a background of
//      BENCH_RATE signals/s. Side by side, in the same run and under the same
//      background rate: raw two hops with kafkajs (produce → consume → produce
//      → consume, no logic, no transactions), also across two child processes.
//   2. Fold throughput: evolve() over generated signals, in process.
//   3. Memory per live session at 100k and 1M sessions (child with --expose-gc).
//
//   4. `node --import tsx bench/projector.ts restore [100000,1000000]` (with `node --expose-gc` for the folded world's heap): the scale-out
//      takeover's in-memory restore (warm standby, services/projector/scale/): N
//      session changelog records as bytes → decode (JSON + zod) → world, beside a
//      bare JSON.parse of the same bytes, and the folded standby's cost: each record decoded and applied
//      as it is read, then the takeover's hand-over. The Kafka read is not in it.
//
//   5. `node --import tsx bench/projector.ts fence [rounds]`: a takeover's fence when the old owner died
//      mid-transaction (a producer leaves a transaction open; a second one of the same transactional id
//      initialises: kafkajs waits out CONCURRENT_TRANSACTIONS while the coordinator aborts it), with the
//      transaction manager's retry as services/lib/kafka.ts tunes it, beside the library's own defaults in
//      the same run (rounds interleaved).
//
//   BENCH_SECONDS (15)  BENCH_RATE (2000)  BENCH_PROBE_MS (20)  BENCH_MEMORY ("100000,1000000")
//   BENCH_TIMING_MS (0: off; else the projector prints its transaction step timings at that interval)
//   BENCH_PROJECTOR_DELIVERY (the projector's TRUSTFOLD_PROJECTOR_DELIVERY: transactional | idempotent;
//     unset: the projector's default). With idempotent, the TrustView reads uncommitted.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Partitioners, type Kafka, type Producer } from 'kafkajs';
import { createCodec, parseEvent } from '../schemas/codec.ts';
import type { TrustfoldEvent, TrustfoldEventInput } from '../schemas/events.ts';
import { configFrom } from '../services/lib/config.ts';
import { startKafkaBroker } from '../services/local-kafka/index.ts';
import { createKafka, partitionKeyOf } from '../services/lib/kafka.ts';
import { createTrustView } from '../services/pdp-client/trust-view.ts';
import { DEFAULT_DELIVERY, type Delivery } from '../services/projector/config.ts';
import { decodeRecord, encodeRecord, recordOf, snapshotFromRecords, type ChangelogRecord } from '../services/projector/changelog.ts';
import { evolve, initialWorld, restoreWorld } from '../services/projector/evolve.ts';
import { createFolding } from '../services/projector/scale/folded.ts';
import { printTargets } from './target.ts';

const mode = process.argv[2] ?? 'main';
const now = (): number => performance.timeOrigin + performance.now();
const codec = createCodec();
let idSeq = 0;
const idPrefix = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0');
const newId = (): string => {
  const n = ++idSeq;
  return `01976d2a-${idPrefix}-7000-8000-${n.toString(16).padStart(12, '0')}`;
};
const mk = (input: Record<string, unknown>): TrustfoldEvent => {
  const r = parseEvent({ event_id: newId(), tenant_id: 'acme', occurred_at: new Date().toISOString(), ...input } as TrustfoldEventInput);
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
};
const send = (msg: unknown): void => {
  process.send?.(msg);
};

// ---------------------------------------------------------------- children

if (mode === 'view') {
  // TrustView in its own process: reports when each probe's state arrives.
  const [brokers, topic, delivery] = [process.argv[3] ?? '', process.argv[4] ?? '', process.argv[5] ?? ''];
  const view = await createTrustView({ kafka: createKafka(brokers.split(','), 'bench-view'), topic, maxWaitTimeInMs: 100, readUncommitted: delivery === 'idempotent' });
  view.onChange((s) => {
    if (s.session_id === 'PROBE') send({ probe: s.caused_by, at: now() });
  });
  await view.ready();
  send({ ready: true });
} else if (mode === 'forward' || mode === 'rawrecv') {
  const [brokers, from, to] = [process.argv[3] ?? '', process.argv[4] ?? '', process.argv[5] ?? ''];
  const kafka = createKafka(brokers.split(','), `bench-${mode}`);
  const consumer = kafka.consumer({ groupId: `bench-${mode}-${Date.now()}`, maxWaitTimeInMs: 100 });
  let producer: Producer | undefined;
  if (mode === 'forward') {
    producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
  }
  const joined = new Promise<void>((resolve) => {
    consumer.on(consumer.events.GROUP_JOIN, () => resolve());
  });
  await consumer.connect();
  await consumer.subscribe({ topic: from, fromBeginning: false });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      if (producer !== undefined) {
        await producer.send({ topic: to, acks: -1, messages: batch.messages.map((m) => ({ key: m.key, value: m.value, headers: m.headers ?? {} })) });
        return;
      }
      const t = now();
      for (const m of batch.messages) if (m.key?.toString() === 'PROBE') send({ probe: m.value?.toString(), at: t });
    },
  });
  await joined; // assigned partitions before saying ready
  send({ ready: true });
} else if (mode === 'memory') {
  const n = Number(process.argv[3] ?? 100_000);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  const events: TrustfoldEvent[] = [];
  const t0 = Date.parse('2026-06-09T14:00:00.000Z');
  const tpl = mk({ type: 'signal', kind: 'session_started', session_id: 'x', chain: [{ kind: 'human', id: 'U' }, { kind: 'agent', id: 'A-17', version: '3.2' }], token: { jti: 'J', scopes: ['repo:write'], consent_ref: 'C-1' } });
  gc();
  const base = process.memoryUsage().heapUsed;
  let w = initialWorld();
  for (let i = 0; i < n; i++) {
    const e = { ...tpl, event_id: newId(), session_id: `S-${i}`, occurred_at: new Date(t0 + i).toISOString(), chain: [{ kind: 'human' as const, id: `U-${i % 50_000}` }, { kind: 'agent' as const, id: 'A-17', version: '3.2' }] } as TrustfoldEvent;
    w = evolve(w, e).world;
  }
  void events;
  gc();
  const used = process.memoryUsage().heapUsed - base;
  send({ n, bytesPerSession: used / n, sessions: w.sessions.size });
  process.exit(0);
}

if (mode === 'fence') {
  const { createRequire } = await import('node:module');
  const { TRANSACTION_RETRY_DEFAULTS } = await import('../services/lib/kafka.ts');
  const defaults = createRequire(import.meta.url)('kafkajs/src/retry/defaults.js') as Record<string, number>;
  const library = { initialRetryTime: 300, retries: 5 };
  const rounds = Number(process.argv[3] ?? 12);
  const broker = await startKafkaBroker({});
  try {
    const kafka = createKafka(broker.brokers, 'bench-fence');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: 'bench-fence', numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const times = { tuned: [] as number[], library: [] as number[] };
    for (let i = 0; i < 2 * rounds; i++) {
      const which = i % 2 === 0 ? 'tuned' : 'library';
      Object.assign(defaults, which === 'tuned' ? TRANSACTION_RETRY_DEFAULTS : library);
      const id = `bench-fence-${i}`;
      const old = kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
      await old.connect();
      const open = await old.transaction();
      await open.send({ topic: 'bench-fence', messages: [{ value: 'left open' }] });
      const next = kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
      await next.connect();
      const t0 = performance.now();
      await (await next.transaction()).abort();
      times[which].push(performance.now() - t0);
      await next.disconnect();
      await old.disconnect().catch(() => undefined);
    }
    Object.assign(defaults, TRANSACTION_RETRY_DEFAULTS);
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
    const line = (xs: number[]): string => `median ${median(xs).toFixed(1)} ms, min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)} (${xs.map((x) => x.toFixed(0)).join(' ')})`;
    console.log(`fence after an owner died mid-transaction, ${rounds} rounds each, load ${(await import('node:os')).loadavg()[0]?.toFixed(1)}:`);
    console.log(`  library retry defaults (first back-off 300 ms): ${line(times.library)}`);
    console.log(`  tuned (first back-off ${TRANSACTION_RETRY_DEFAULTS.initialRetryTime} ms):               ${line(times.tuned)}`);
  } finally {
    await broker.stop();
  }
  process.exit(0);
}

if (mode === 'restore') {
  for (const n of (process.argv[3] ?? '100000,1000000').split(',').map(Number)) {
    const t0 = Date.parse('2026-06-09T14:00:00.000Z');
    let w = initialWorld();
    for (let i = 0; i < n; i++) {
      const at = new Date(t0 + i).toISOString();
      const session = `S-${i}`;
      w = evolve(w, { ...mk({ type: 'signal', kind: 'session_started', session_id: session, chain: [{ kind: 'human', id: `U-${i % 50_000}` }, { kind: 'agent', id: 'A-17', version: '3.2' }] }), occurred_at: at } as TrustfoldEvent).world;
      w = evolve(w, { ...mk({ type: 'signal', kind: 'injection_detected', session_id: session, signal_id: `SIG-${i}`, severity: 'high', detector: 'd' }), occurred_at: at } as TrustfoldEvent).world;
    }
    const bytes: Buffer[] = [];
    for (const key of [...w.sessions.keys(), ...w.users.keys()]) {
      const r = recordOf(w, key);
      if (r !== undefined) bytes.push(encodeRecord(r));
    }
    const mb = bytes.reduce((a, b) => a + b.length, 0) / 1e6;
    const b0 = performance.now();
    let parsed = 0;
    for (const b of bytes) if (JSON.parse(b.toString('utf8')) !== null) parsed++;
    const baselineMs = performance.now() - b0;
    const r0 = performance.now();
    const records: ChangelogRecord[] = [];
    for (const b of bytes) {
      const d = decodeRecord(b);
      if (d.ok) records.push(d.value);
    }
    const decodedMs = performance.now() - r0;
    const restored = restoreWorld(snapshotFromRecords(records));
    const restoreMs = performance.now() - r0;
    if (restored.sessions.size !== n || parsed !== bytes.length) throw new Error(`restored ${restored.sessions.size} of ${n} sessions`);
    console.log(
      `restore ${n} sessions (${bytes.length} records, ${mb.toFixed(0)} MB): decode + world ${restoreMs.toFixed(0)} ms (decode ${decodedMs.toFixed(0)} ms), baseline JSON.parse of the same bytes ${baselineMs.toFixed(0)} ms (${(restoreMs / baselineMs).toFixed(1)}×)`,
    );
    // The folded standby (scale/folded.ts): each record decoded and applied as it is read — paid while the
    // records arrive, not at the takeover — and the takeover's hand-over itself.
    const gc = (globalThis as { gc?: () => void }).gc;
    const f0 = performance.now();
    const folding = createFolding();
    for (const b of bytes) {
      const d = decodeRecord(b);
      if (d.ok) folding.apply(d.value);
    }
    const foldMs = performance.now() - f0;
    const h0 = performance.now();
    const handed = folding.take();
    const handMs = performance.now() - h0;
    if (handed.world.sessions.size !== n) throw new Error(`folded ${handed.world.sessions.size} of ${n} sessions`);
    // The folded world's heap: with it, then without it (every other structure of this step held throughout).
    gc?.();
    const heapWith = process.memoryUsage().heapUsed;
    handed.world.sessions.clear();
    handed.world.users.clear();
    handed.world.sessionsByUser.clear();
    handed.world.sessionsByTenant.clear();
    handed.world.expiries.length = 0;
    gc?.();
    const worldMb = (heapWith - process.memoryUsage().heapUsed) / 1e6;
    console.log(
      `  folded standby: decode + apply while reading ${foldMs.toFixed(0)} ms (${((foldMs * 1000) / bytes.length).toFixed(1)} µs a record), the folded world ${gc === undefined ? '(heap not measured: run with --expose-gc)' : `${worldMb.toFixed(0)} MB of heap`} beside the ${mb.toFixed(0)} MB of bytes; at the takeover: hand-over ${handMs.toFixed(2)} ms, against decode + world ${restoreMs.toFixed(0)} ms at open with the byte standby (load ${loadavg()[0]?.toFixed(1)})`,
    );
  }
  process.exit(0);
}

// ---------------------------------------------------------------- main

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const fmt = (x: number): string => x.toFixed(2).padStart(8);

const child = (args: string[], extraEnv: Record<string, string> = {}, nodeArgs: string[] = []): { proc: ChildProcess; ready: Promise<void>; messages: (fn: (m: Record<string, unknown>) => void) => void } => {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', ...args], { env: { ...process.env, ...extraEnv }, stdio: ['ignore', process.env['BENCH_DEBUG'] === '1' ? 'inherit' : 'ignore', 'inherit', 'ipc'] });
  const fns: ((m: Record<string, unknown>) => void)[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    proc.on('message', (m: Record<string, unknown>) => {
      if (m['ready'] === true) resolve();
      for (const f of fns) f(m);
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)));
  });
  ready.catch(() => undefined); // a child that only reports (memory) never says ready
  return { proc, ready, messages: (fn) => fns.push(fn) };
};

const waitMessage = <T>(c: ReturnType<typeof child>, pick: (m: Record<string, unknown>) => T | undefined): Promise<T> =>
  new Promise((resolve) => c.messages((m) => {
    const v = pick(m);
    if (v !== undefined) resolve(v);
  }));

/** Background load + probes; returns probe latencies (ms). */
const drive = async (
  producer: Producer,
  seconds: number,
  rate: number,
  probeMs: number,
  background: () => { topic: string; key: string; value: Buffer },
  probe: () => { topic: string; key: string; value: Buffer; id: string },
  arrivals: Map<string, number>,
): Promise<{ latencies: number[]; lost: number; sentBackground: number }> => {
  const sent = new Map<string, number>();
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
  let sentBackground = 0;
  const deadline = Date.now() + seconds * 1000;
  const bg = (async () => {
    let next = performance.now();
    while (Date.now() < deadline) {
      const msgs = Array.from({ length: perTick }, background);
      const byTopic = new Map<string, { key: string; value: Buffer }[]>();
      for (const m of msgs) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), { key: m.key, value: m.value }]);
      await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      sentBackground += msgs.length;
      next += tickMs;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  const pr = (async () => {
    while (Date.now() < deadline - 1000) {
      const p = probe();
      sent.set(p.id, now());
      await producer.send({ topic: p.topic, acks: -1, messages: [{ key: p.key, value: p.value }] });
      await new Promise((r) => setTimeout(r, probeMs));
    }
  })();
  await Promise.all([bg, pr]);
  await new Promise((r) => setTimeout(r, 2000));
  const latencies: number[] = [];
  let lost = 0;
  const warm = now() - (seconds - 3) * 1000 - 2000; // skip the first ~3 s
  for (const [id, t] of sent) {
    const a = arrivals.get(id);
    if (a === undefined) lost++;
    else if (t >= warm) latencies.push(a - t);
  }
  return { latencies, lost, sentBackground };
};

if (mode === 'main') {
  const seconds = Number(process.env['BENCH_SECONDS'] ?? 15);
  const rate = Number(process.env['BENCH_RATE'] ?? 2000);
  const probeMs = Number(process.env['BENCH_PROBE_MS'] ?? 20);
  const memorySizes = (process.env['BENCH_MEMORY'] ?? '100000,1000000').split(',').filter((x) => x !== '').map(Number);
  const deliveryEnv = process.env['BENCH_PROJECTOR_DELIVERY'];
  if (deliveryEnv !== undefined && deliveryEnv !== 'transactional' && deliveryEnv !== 'idempotent') throw new Error('BENCH_PROJECTOR_DELIVERY: transactional | idempotent');
  const delivery: Delivery = deliveryEnv ?? DEFAULT_DELIVERY;

  // --- fold throughput (pure, in process)
  {
    const sessions = 10_000;
    const events: TrustfoldEvent[] = [];
    for (let i = 0; i < sessions; i++) {
      events.push(mk({ type: 'signal', kind: 'session_started', session_id: `S-${i}`, chain: [{ kind: 'human', id: `U-${i % 1000}` }, { kind: 'agent', id: 'A-17' }] }));
    }
    const n = 300_000;
    for (let i = 0; i < n; i++) {
      const s = `S-${(i * 7919) % sessions}`;
      const k = i % 10;
      events.push(
        k < 6
          ? mk({ type: 'signal', kind: 'injection_detected', session_id: s, signal_id: `SIG-${i % 50}`, severity: (['low', 'medium', 'high', 'critical'] as const)[i % 4], detector: 'd' })
          : k < 8
            ? mk({ type: 'signal', kind: 'trust_set', session_id: s, tier: 'trusted', reason: 'r', set_by: 'soc' })
            : k < 9
              ? mk({ type: 'signal', kind: i % 2 === 0 ? 'role_revoked' : 'role_granted', user_id: `U-${i % 1000}`, role: 'admin' })
              : mk({ type: 'signal', kind: 'step_up_requested', session_id: s, request_id: 'R', scope: 'x' }),
      );
    }
    const encoded = events.map((e) => codec.encodeEvent(e));
    let w = initialWorld();
    let t = performance.now();
    let changes = 0;
    for (const e of events) changes += evolve(w, e).changed.length;
    const foldMs = performance.now() - t;
    w = initialWorld();
    t = performance.now();
    for (const b of encoded) {
      const r = codec.decodeEvent(b);
      if (r.ok) w = evolve(w, r.value).world;
    }
    const decodeFoldMs = performance.now() - t;
    console.log(`fold throughput: ${Math.round((events.length / foldMs) * 1000).toLocaleString('en')} signals/s (evolve only; ${events.length.toLocaleString('en')} signals, ${changes.toLocaleString('en')} state changes, 10% fan-out to ~10 sessions)`);
    console.log(`                 ${Math.round((events.length / decodeFoldMs) * 1000).toLocaleString('en')} signals/s (Avro decode + zod + evolve)`);
  }

  // --- memory per session
  for (const n of memorySizes) {
    const c = child(['bench/projector.ts', 'memory', String(n)], {}, ['--expose-gc', '--max-old-space-size=16000']);
    const r = await waitMessage(c, (m) => (typeof m['bytesPerSession'] === 'number' ? (m as { bytesPerSession: number; sessions: number }) : undefined));
    console.log(`memory: ${n.toLocaleString('en')} live sessions → ${Math.round(r.bytesPerSession)} B/session (heap after GC; ${r.sessions.toLocaleString('en')} sessions, 50k delegators)`);
  }

  // --- propagation
  const external = process.env['KAFKA_BROKERS']?.split(',').filter((b) => b !== '');
  const dataDir = external ? undefined : mkdtempSync(join(tmpdir(), 'trustfold-bench-'));
  const broker = dataDir === undefined ? undefined : await startKafkaBroker({ dataDir, heapMb: 1024 });
  const brokers = external ?? broker?.brokers ?? [];
  const kafka: Kafka = createKafka(brokers, 'bench');
  const run = Date.now().toString(36);
  const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const children: ChildProcess[] = [];
  try {
    // Raw two hops.
    const rawA = `bench-raw-a-${run}`;
    const rawB = `bench-raw-b-${run}`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [rawA, rawB].map((topic) => ({ topic, numPartitions: 6 })) });
    await admin.disconnect();
    const fwd = child(['bench/projector.ts', 'forward', brokers.join(','), rawA, rawB]);
    const recv = child(['bench/projector.ts', 'rawrecv', brokers.join(','), rawB]);
    children.push(fwd.proc, recv.proc);
    await Promise.all([fwd.ready, recv.ready]);
    const rawArrivals = new Map<string, number>();
    recv.messages((m) => {
      if (typeof m['probe'] === 'string' && typeof m['at'] === 'number') rawArrivals.set(m['probe'], m['at']);
    });
    const bgEvent = mk({ type: 'signal', kind: 'injection_detected', session_id: 'S-0', signal_id: 'SIG', severity: 'low', detector: 'd' });
    let bgN = 0;
    const raw = await drive(
      producer,
      seconds,
      rate,
      probeMs,
      () => {
        const e = { ...bgEvent, event_id: newId(), session_id: `S-${bgN++ % 5000}` } as TrustfoldEvent;
        return { topic: rawA, key: partitionKeyOf(e), value: codec.encodeEvent(e) };
      },
      () => {
        const id = newId();
        return { topic: rawA, key: 'PROBE', value: Buffer.from(id), id };
      },
      rawArrivals,
    );
    fwd.proc.kill('SIGTERM');
    recv.proc.kill('SIGTERM');

    // Projector.
    const p = `bench-${run}`;
    const env = {
      KAFKA_BROKERS: brokers.join(','),
      TRUSTFOLD_TOPIC_DECISIONS: `${p}.decisions`,
      TRUSTFOLD_TOPIC_SIGNALS: `${p}.signals`,
      TRUSTFOLD_TOPIC_SESSION_TRUST: `${p}.session-trust`,
      TRUSTFOLD_TOPIC_DEAD_LETTER: `${p}.dlq`,
      TRUSTFOLD_PROJECTOR_GROUP: `${p}-projector`,
      LOG_LEVEL: 'warn',
      // BENCH_TIMING_MS: the projector logs its transactions' step timings (stderr) at this interval.
      TRUSTFOLD_PROJECTOR_TIMING_LOG_MS: process.env['BENCH_TIMING_MS'] ?? '0',
      TRUSTFOLD_PROJECTOR_DELIVERY: delivery,
    };
    const config = configFrom(env);
    const proj = child(['services/projector/main.ts'], env);
    children.push(proj.proc);
    // main.ts prints "projector ready" on stdout; it has no IPC ready message, so poll the topic instead.
    const view = child(['bench/projector.ts', 'view', brokers.join(','), config.topics.sessionTrust, delivery]);
    children.push(view.proc);
    const viewArrivals = new Map<string, number>();
    view.messages((m) => {
      if (typeof m['probe'] === 'string' && typeof m['at'] === 'number') viewArrivals.set(m['probe'], m['at']);
    });
    // The topic exists once the projector started; the view needs it to exist.
    for (let i = 0; ; i++) {
      const a = kafka.admin();
      await a.connect();
      const topics = await a.listTopics();
      await a.disconnect();
      if (topics.includes(config.topics.sessionTrust)) break;
      if (i > 600) throw new Error('projector did not create its topics');
      await new Promise((r) => setTimeout(r, 100));
    }
    await view.ready;
    // Start the probe session, then wait until the whole pipeline answers.
    const start = mk({ type: 'signal', kind: 'session_started', session_id: 'PROBE', chain: [{ kind: 'human', id: 'U-probe' }, { kind: 'agent', id: 'A' }] });
    await producer.send({ topic: config.topics.signals, messages: [{ key: partitionKeyOf(start), value: codec.encodeEvent(start) }] });
    for (let i = 0; !viewArrivals.has(start.event_id); i++) {
      if (i > 600) throw new Error('no propagation within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    let flip = 0;
    const proj2 = await drive(
      producer,
      seconds,
      rate,
      probeMs,
      () => {
        const e = { ...bgEvent, event_id: newId(), session_id: `S-${bgN++ % 5000}`, signal_id: `SIG-${bgN % 7}`, occurred_at: new Date().toISOString() } as TrustfoldEvent;
        return { topic: config.topics.signals, key: partitionKeyOf(e), value: codec.encodeEvent(e) };
      },
      () => {
        const e = mk({ type: 'signal', kind: 'trust_set', session_id: 'PROBE', tier: flip++ % 2 === 0 ? 'degraded' : 'trusted', reason: 'probe', set_by: 'bench' });
        return { topic: config.topics.signals, key: partitionKeyOf(e), value: codec.encodeEvent(e), id: e.event_id };
      },
      viewArrivals,
    );

    console.log('');
    console.log(`propagation, ${seconds} s at ${rate} background signals/s, probe every ${probeMs} ms, projector delivery ${delivery} (ms):`);
    console.log(`                          n      p50      p95      p99      max   lost`);
    const line = (name: string, r: { latencies: number[]; lost: number }): void =>
      console.log(`${name.padEnd(22)}${String(r.latencies.length).padStart(5)} ${fmt(pct(r.latencies, 50))} ${fmt(pct(r.latencies, 95))} ${fmt(pct(r.latencies, 99))} ${fmt(Math.max(...r.latencies))} ${String(r.lost).padStart(6)}`);
    line('raw kafkajs two hops', raw);
    line('projector → TrustView', proj2);
    console.log(`ratio p50 ${(pct(proj2.latencies, 50) / pct(raw.latencies, 50)).toFixed(2)}×, p99 ${(pct(proj2.latencies, 99) / pct(raw.latencies, 99)).toFixed(2)}×`);
    printTargets([
      { what: 'signal → TrustView p50', value: pct(proj2.latencies, 50), unit: 'ms', bound: 'max', goal: 5 },
      { what: 'signal → TrustView p99', value: pct(proj2.latencies, 99), unit: 'ms', bound: 'max', goal: 25 },
      { what: 'signal → TrustView p50 ÷ raw two hops, same run', value: pct(proj2.latencies, 50) / pct(raw.latencies, 50), unit: '×', bound: 'max', goal: 2 },
      { what: 'signal → TrustView p99 ÷ raw two hops, same run', value: pct(proj2.latencies, 99) / pct(raw.latencies, 99), unit: '×', bound: 'max', goal: 2 },
    ]);
    console.log(`background actually sent: raw ${Math.round(raw.sentBackground / seconds)}/s, projector ${Math.round(proj2.sentBackground / seconds)}/s`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await producer.disconnect();
    await broker?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  }
  process.exit(0);
}
