// Shared by the reliability scenarios (test/reliability/scenarios/*) and their
// fast variants (test/integration/reliability-*.test.ts): brokers, child
// processes of `trustfold serve --role …`, event generators, the fresh fold
// of a topic set, and the one-line figures every scenario prints.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent, SignalEvent, TrustfoldEvent } from '../../schemas/events.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { startKafkaBroker, startKafkaCluster, type KafkaBroker, type KafkaCluster } from '../../services/local-kafka/index.ts';
import { decisionFixture } from '../fixtures/events.ts';
import { testKafkaNodes, topicEnv, uniqueName } from '../helpers/kafka.ts';
import { after, before } from 'node:test';
import { exitIfStuck } from '../helpers/exit.ts';

// The topic readers live in topics.ts; every scenario takes its tools from here.
export * from './topics.ts';
export * from './wait.ts';

export const codec = createCodec();
export const SECRET = 'reliability-secret-of-at-least-32-characters';
/** The roles' /metrics token in these scenarios (checked: the harness reads /metrics with it). */
/**
 * The subject of the scenarios' ingest tokens. Actor fields are stamped from
 * the token, so the workload's `trust_set` names this subject, and the token
 * carries `trust:write` (a loosening kind) besides `events:write`.
 */
export const REL_ACTOR = 'rel-soc';
export const REL_SCOPES = ['events:write', 'trust:write'];
export const METRICS_TOKEN = 'reliability-metrics-token-0123456789abcdef';
export const ROOT = join(import.meta.dirname, '../..');


export const envInt = (name: string, fallback: number): number => {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${v}"`);
  return n;
};


// ---------------------------------------------------------------------------
// Figures: one line per scenario; scripts/reliability.mjs collects them into a table.

export type Figure = { scenario: string; fields: Record<string, string | number> };

export const printFigure = (scenario: string, fields: Record<string, string | number>): Figure => {
  const f = { scenario, fields };
  const line = Object.entries(fields)
    .map(([k, v]) => `${k} = ${v}`)
    .join(', ');
  process.stdout.write(`FIGURE ${scenario}: ${line}\n`);
  return f;
};

// ---------------------------------------------------------------------------
// Brokers: small heaps (2 cores, other brokers on the box).

export type TestBroker = {
  brokers: string[];
  dataDir: string;
  restartable: boolean;
  /** With nodes > 1: the cluster, whose nodes a scenario may kill and start one by one. */
  cluster?: KafkaCluster;
  stop(): Promise<void>;
  /** Stops the broker (every node of a cluster); data stays for start(). */
  kill(): Promise<void>;
  start(): Promise<void>;
};

/** Broker options of a scenario: `nodes` defaults to TRUSTFOLD_TEST_KAFKA_NODES (1). */
export type BrokerOptions = { own?: boolean; heapMb?: number; nodes?: number };

/**
 * The broker of one test file: started before its tests, stopped after them,
 * and the file's process made to exit if a client still holds it (see
 * exitIfStuck). Call at the top level; the getter is valid inside tests.
 */
export const brokerForFile = (o: BrokerOptions = {}): (() => TestBroker) => {
  exitIfStuck();
  let broker: TestBroker | undefined;
  before(async () => {
    broker = await startBroker(o);
  });
  after(async () => {
    await broker?.stop();
  });
  return () => {
    if (broker === undefined) throw new Error('the broker starts in before(); use it inside a test');
    return broker;
  };
};

/**
 * A broker of this test (KAFKA_BROKERS is honoured unless `own`), or with
 * nodes > 1 (TRUSTFOLD_TEST_KAFKA_NODES) a cluster; stop() also removes its data.
 */
export const startBroker = async (o: BrokerOptions = {}): Promise<TestBroker> => {
  const external = process.env['KAFKA_BROKERS']?.trim();
  if (o.own !== true && external !== undefined && external !== '') {
    return { brokers: external.split(','), dataDir: '', restartable: false, stop: async () => undefined, kill: async () => undefined, start: async () => undefined };
  }
  const nodes = o.nodes ?? testKafkaNodes();
  if (nodes > 1) return startClusterBroker(nodes, o.heapMb ?? 256);
  const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-rel-kafka-'));
  let current: KafkaBroker | undefined = await startKafkaBroker({ dataDir, heapMb: o.heapMb ?? 256, ephemeral: false, javaHome: process.env['JAVA_HOME'] });
  const brokers = current.brokers;
  return {
    brokers,
    dataDir,
    restartable: true,
    /** Stops the JVM (SIGTERM); data stays for start(). */
    kill: async () => {
      await current?.stop();
      current = undefined;
    },
    start: async () => {
      if (current !== undefined) return;
      current = await startKafkaBroker({ dataDir, heapMb: o.heapMb ?? 256, ephemeral: false, javaHome: process.env['JAVA_HOME'] });
      if (current.brokers.join(',') !== brokers.join(',')) throw new Error(`broker came back on ${current.brokers.join(',')}, not ${brokers.join(',')}`);
    },
    stop: async () => {
      await current?.stop();
      current = undefined;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
};

const startClusterBroker = async (nodes: number, heapMb: number): Promise<TestBroker> => {
  const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-rel-kafka-cluster-'));
  const cluster = await startKafkaCluster({ nodes, dataDir, heapMb, ephemeral: false, javaHome: process.env['JAVA_HOME'] });
  return {
    brokers: cluster.brokers,
    dataDir,
    restartable: true,
    cluster,
    kill: async () => {
      await Promise.all(cluster.nodes.map((n) => n.stop()));
    },
    // Together: a node alone cannot form the quorum it waits to be listed by.
    start: async () => {
      await Promise.all(cluster.nodes.filter((n) => !n.running()).map((n) => n.start()));
    },
    stop: async () => {
      await cluster.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
};

/** A fresh set of topic names, client id (→ audit-sink group), projector group and ClickHouse database. */
export const uniqueEnv = (brokers: string[], partitions = 3): Record<string, string> => {
  const p = uniqueName('rel');
  return {
    ...topicEnv(p, brokers, partitions),
    KAFKA_CLIENT_ID: p,
    CLICKHOUSE_DATABASE: p.replace(/[^A-Za-z0-9_]/g, '_'),
    TRUSTFOLD_JWT_SECRET: SECRET,
    TRUSTFOLD_METRICS_TOKEN: METRICS_TOKEN,
    LOG_LEVEL: 'silent',
    PORT: '0',
  };
};

// ---------------------------------------------------------------------------
// `trustfold serve --role …` as a child process, for SIGKILL.

export type RoleProcess = {
  role: string;
  child: ChildProcess;
  /** Resolves once the process printed "trustfold is running". */
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
};

export const spawnRole = (role: string, env: Record<string, string>): RoleProcess => {
  // RELIABILITY_LOG_DIR keeps every child's whole output (one file per process, LOG_LEVEL info or RELIABILITY_LOG_LEVEL) for diagnosis.
  const logDir = process.env['RELIABILITY_LOG_DIR'];
  const child = spawn(process.execPath, [join(ROOT, 'bin/trustfold.js'), 'serve', '--role', role], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env, ...(logDir !== undefined && logDir !== '' && { LOG_LEVEL: process.env['RELIABILITY_LOG_LEVEL'] ?? 'info' }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  // The banner (the API address) stays readable however much a diagnostic LOG_LEVEL prints after it.
  let head = '';
  if (logDir !== undefined && logDir !== '') mkdirSync(logDir, { recursive: true });
  const logFile = logDir === undefined || logDir === '' ? undefined : join(logDir, `${role}-${Date.now()}-${child.pid ?? 0}.log`);
  const keep = (b: Buffer): void => {
    if (head.length < 20_000) head += b.toString().slice(0, 20_000 - head.length);
    out = (out + b.toString()).slice(-20_000);
    if (logFile !== undefined) appendFileSync(logFile, b);
  };
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      keep(b);
      if (out.includes('trustfold is running')) resolve();
    });
    void exited.then(({ code, signal }) => reject(new Error(`${role} exited (${code ?? signal}) before ready: ${out}`)));
  });
  ready.catch(() => undefined);
  return { role, child, ready, exited, output: () => (head.length < 20_000 ? out : `${head}\n…\n${out}`) };
};

/** Busy-looping node processes that take the CPU away from everything else until `stop()`. */
export const startCpuBurners = (count: number): { count: number; stop(): void } => {
  const children = Array.from({ length: count }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  return {
    count,
    stop: () => {
      for (const c of children) c.kill('SIGKILL');
    },
  };
};

/** A role's API address, from the banner it printed ("API  http://…"). */
export const apiOf = (p: RoleProcess): string => {
  const m = /API\s+(http:\/\/[^\s]+)/.exec(p.output());
  if (m?.[1] === undefined) throw new Error(`${p.role} printed no API address: ${p.output().slice(-500)}`);
  return m[1];
};

/** The projector's `trustfold_projector_unpublished_states` from its /metrics. */
export const projectorUnpublished = async (p: RoleProcess | undefined): Promise<number> => {
  if (p === undefined) throw new Error('no projector process');
  const res = await fetch(`${apiOf(p)}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`projector /metrics answered ${res.status}: ${text.slice(0, 200)}`);
  const m = /^trustfold_projector_unpublished_states\s+(\d+)/m.exec(text);
  if (m?.[1] === undefined) throw new Error('projector /metrics has no trustfold_projector_unpublished_states');
  return Number(m[1]);
};

export const killHard = async (p: RoleProcess | undefined): Promise<void> => {
  if (p === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGKILL');
  await p.exited;
};

export const stopGracefully = async (p: RoleProcess | undefined, ms = 20_000): Promise<void> => {
  if (p === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
  await p.exited;
  clearTimeout(t);
};

// ---------------------------------------------------------------------------
// Events. Every trust-relevant event is session-scoped (keyed by session, so it
// stays in order on one partition): the fold of the topics is then the same
// whatever order the partitions are read in.

export type Workload = { tenant: string; sessions: number; signalEvery: number };

const CHAIN = (session: string) => [
  { kind: 'human' as const, id: `U-${session}` },
  { kind: 'agent' as const, id: 'A-17', version: '3.2', owner: 'team-payments' },
];

/**
 * A decision of the session, with the same chain and token as its
 * session_started: decisions then teach the fold nothing new, so the order in
 * which the decisions and signals topics are read cannot change a state.
 */
export const decisionEvent = (tenant: string, session: string, i: number, now = Date.now()): DecisionEvent =>
  ({
    ...decisionFixture,
    chain: CHAIN(session),
    token: { ...decisionFixture.token, scopes: [...decisionFixture.token.scopes] },
    decision: { ...decisionFixture.decision, reasons: [...decisionFixture.decision.reasons], effect: i % 3 === 0 ? 'deny' : 'allow' },
    event_id: uuidv7(now),
    tenant_id: tenant,
    session_id: session,
    occurred_at: new Date(now).toISOString(),
  }) as DecisionEvent;

const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;

export const sessionStartedEvent = (tenant: string, session: string, now = Date.now()): SignalEvent => ({
  type: 'signal',
  kind: 'session_started',
  event_id: uuidv7(now),
  tenant_id: tenant,
  occurred_at: new Date(now).toISOString(),
  session_id: session,
  chain: CHAIN(session),
  token: { ...decisionFixture.token, scopes: [...decisionFixture.token.scopes] },
});

export const riskSignal = (tenant: string, session: string, i: number, now = Date.now()): SignalEvent => {
  const base = { type: 'signal' as const, event_id: uuidv7(now), tenant_id: tenant, occurred_at: new Date(now).toISOString(), session_id: session };
  if (i % 7 === 0) return { ...base, kind: 'trust_set', tier: 'trusted', reason: 'soc reset', set_by: REL_ACTOR };
  return { ...base, kind: 'injection_detected', signal_id: `SIG-${i}`, severity: SEVERITIES[i % 4] ?? 'low', detector: 'rel' };
};

/** A stream of events: sessions are started first, then decisions with a risk signal every `signalEvery`. */
export const createWorkload = (w: Workload) => {
  const started = new Set<number>();
  let i = 0;
  return {
    next(): TrustfoldEvent {
      const s = i % w.sessions;
      const session = `S-${s}`;
      i++;
      if (!started.has(s)) {
        started.add(s);
        return sessionStartedEvent(w.tenant, session);
      }
      return i % w.signalEvery === 0 ? riskSignal(w.tenant, session, i) : decisionEvent(w.tenant, session, i);
    },
    batch(n: number): TrustfoldEvent[] {
      return Array.from({ length: n }, () => this.next());
    },
  };
};

export const rssMb = (): number => Math.round(process.memoryUsage().rss / 1024 / 1024);

export const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), prefix));
