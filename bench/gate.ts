// `npm run bench -- gate`: what a tools/call gains through trustfold gate.
// One run, one upstream (the conformance fixture server, its own process,
// Streamable HTTP), one tool (test_simple_text); every phase is a steady open
// loop of RATE calls/s from an SDK client over real HTTP, while trust states
// of the bench session and of SESSIONS others are pushed through Kafka at
// PUSH_RATE/s to the gateway's TrustView:
//
//   direct       client → upstream                              (the baseline)
//   builtin      client → gate (built-in rules) → upstream       the tool is not destructive
//   durable      client → gate, the tool declared destructive → its decision acked by ingest → upstream
//   cerbos       client → gate (Cerbos PDP, examples/mcp/cerbos) → upstream
//
// Latency is request → response at the client. "Added" is the phase's p50/p99
// minus the direct phase's. Target: ≤ 1 ms p50 added, built-in rules.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SignJWT } from 'jose';
import { Partitioners } from 'kafkajs';
import { createCodec } from '../schemas/codec.ts';
import type { SessionTrust } from '../schemas/events.ts';
import { parseGateConfig } from '../services/gate/config.ts';
import { startGate, type RunningGate } from '../services/gate/main.ts';
import { mintToken, OPERATOR_TENANT } from '../services/lib/auth.ts';
import { configFrom } from '../services/lib/config.ts';
import { createKafka, sessionKey } from '../services/lib/kafka.ts';
import { createLogger } from '../services/lib/log.ts';
import { createTrustView, type TrustView } from '../services/pdp-client/trust-view.ts';
import { cerbosBinary, startGateCerbos, type GateCerbos } from '../test/fixtures/gate-cerbos.ts';
import { getTestKafka, uniqueName } from '../test/helpers/kafka.ts';
import { testEnv } from '../test/helpers/projector.ts';
import { startSystem } from '../test/helpers/system.ts';
import { printTargets, type Goal } from './target.ts';

const RATE = 500;
const SECONDS = Number(process.env['GATE_BENCH_SECONDS'] ?? 10);
const WARMUP_S = 1;
const PUSH_RATE = 100;
const SESSIONS = 1000;
const TENANT = 'acme';
const SESSION = 'S-bench';
const SECRET = `gate-bench-${randomBytes(16).toString('hex')}`;
const UPSTREAM = fileURLToPath(new URL('../test/fixtures/gate-conformance-server.ts', import.meta.url));

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const fmt = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : String(n));
const pct = (xs: readonly number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

const startUpstream = (): Promise<{ child: ChildProcess; url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', UPSTREAM, '--http', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', reject);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (line) => {
      const url = /(http:\/\/\S+)/.exec(line)?.[1];
      if (url === undefined) reject(new Error(`unexpected first line: ${line}`));
      else resolve({ child, url });
    });
  });

const trustState = (session: string, version: number): SessionTrust => ({
  session_id: session,
  tenant_id: TENANT,
  version,
  tier: 'trusted',
  delegator: 'U-bench',
  agent: 'A-bench',
  causes: [],
  revoked_roles: [],
  consent_revoked: false,
  freezes: [],
  ended: false,
  updated_at: new Date().toISOString(),
  caused_by: '01976d2a-0000-7000-8000-000000000001',
});

type Phase = { name: string; latencies: number[]; errors: number; firstError?: string; sent: number; seconds: number };

/** An open loop: one call every 1/RATE s whatever the answers, for SECONDS (+ warm-up, not counted). */
const runPhase = async (name: string, client: Client): Promise<Phase> => {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let sent = 0;
  const interval = 1000 / RATE;
  const total = (SECONDS + WARMUP_S) * RATE;
  const t0 = performance.now();
  // Calls in flight are capped: past the cap the loop waits (and falls behind RATE, which the sent/s figure shows).
  const MAX_IN_FLIGHT = 256;
  let inFlight = 0;
  let freed: (() => void) | undefined;
  const pending: Promise<void>[] = [];
  const stopAt = t0 + (SECONDS + WARMUP_S) * 1000;
  for (let i = 0; i < total && performance.now() < stopAt; i++) {
    while (inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => (freed = r));
    const due = t0 + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait - 0.5));
    while (performance.now() < due) await new Promise((r) => setImmediate(r));
    const start = performance.now();
    const counted = start - t0 >= WARMUP_S * 1000;
    sent++;
    inFlight++;
    pending.push(
      client
        .callTool({ name: 'test_simple_text', arguments: {} })
        .then(
          (r) => {
            if (r.isError === true) {
              errors++;
              firstError ??= JSON.stringify(r.content).slice(0, 300);
            } else if (counted) latencies.push(performance.now() - start);
          },
          (e: unknown) => {
            errors++;
            firstError ??= e instanceof Error ? e.message.slice(0, 300) : String(e);
          },
        )
        .finally(() => {
          inFlight--;
          freed?.();
          freed = undefined;
        }),
    );
  }
  await Promise.all(pending);
  return { name, latencies, errors, ...(firstError !== undefined && { firstError }), sent, seconds: (performance.now() - t0) / 1000 };
};

const connect = async (url: string, token?: string): Promise<Client> => {
  const client = new Client({ name: 'gate-bench', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), token !== undefined ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : {}));
  return client;
};

// The SDK's HTTP client transport hangs every request's abort on one signal: up to MAX_IN_FLIGHT of them.
setMaxListeners(0);

const main = async (): Promise<number> => {
  const work = mkdtempSync(join(tmpdir(), 'gate-bench-'));
  const closers: (() => Promise<unknown>)[] = [];
  const goals: Goal[] = [];
  try {
    const broker = await getTestKafka();
    closers.push(() => broker.stop());
    const env: Record<string, string> = { ...testEnv(broker.brokers), TRUSTFOLD_JWT_SECRET: SECRET, TRUSTFOLD_DATA_DIR: join(work, 'data'), KAFKA_CLIENT_ID: uniqueName('gate-bench'), PORT: '0', LOG_LEVEL: 'warn' };
    const config = configFrom(env);
    const system = await startSystem({ config, roles: new Set(['ingest'] as const), brokers: broker.brokers, logger: createLogger('gate-bench', 'silent', false), env });
    closers.push(() => system.close());
    const upstream = await startUpstream();
    closers.push(async () => upstream.child.kill('SIGTERM'));

    // Trust: the gateways read a real TrustView; a producer pushes states for the bench session and SESSIONS others.
    const kafka = createKafka(broker.brokers, 'gate-bench-trust');
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    await producer.connect();
    closers.push(() => producer.disconnect());
    const codec = createCodec();
    const versions = new Map<string, number>();
    const push = async (session: string): Promise<void> => {
      const v = (versions.get(session) ?? 0) + 1;
      versions.set(session, v);
      await producer.send({ topic: config.topics.sessionTrust, acks: -1, messages: [{ key: sessionKey(TENANT, session), value: codec.encodeTrust(trustState(session, v)) }] });
    };
    await push(SESSION);
    const view: TrustView = await createTrustView({ kafka: createKafka(broker.brokers, 'gate-bench-view'), topic: config.topics.sessionTrust });
    closers.push(() => view.close());
    await view.ready();
    for (const deadline = Date.now() + 30_000; !view.get(SESSION, TENANT).known; ) {
      if (Date.now() > deadline) throw new Error('the bench session never reached the view');
      await new Promise((r) => setTimeout(r, 20));
    }
    let received = 0;
    view.onChange(() => void received++);
    // Shared by the gateways: closing is the bench's, not theirs.
    const sharedView = { get: view.get, ready: () => Promise.resolve(), close: () => Promise.resolve() };

    let pushing = true;
    let pushed = 0;
    const pusher = (async () => {
      let i = 0;
      while (pushing) {
        const t = performance.now();
        // One in ten pushes is the bench session's own state (a new version each time).
        await push(i % 10 === 0 ? SESSION : `S-${i % SESSIONS}`).then(() => void pushed++, () => undefined);
        i++;
        const wait = 1000 / PUSH_RATE - (performance.now() - t);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    })();
    closers.push(async () => {
      pushing = false;
      await pusher;
    });

    const ingestToken = await mintToken({ sub: 'gate-bench', tenant: OPERATOR_TENANT, scopes: ['events:write', 'tenants:all'] }, SECRET);
    const gateAt = async (name: string, extra: Record<string, unknown>): Promise<RunningGate> => {
      const file = parseGateConfig({ upstreams: { bench: { url: upstream.url } }, listen: { port: 0 }, audit: { url: system.url, pdp_id: `gate-bench-${name}` }, ...extra });
      if (!file.ok) throw new Error(JSON.stringify(file.error));
      const g = await startGate({ gate: file.value, config, logger: createLogger(`gate-bench-${name}`, 'silent'), env: { TRUSTFOLD_TOKEN: ingestToken }, view: sharedView });
      closers.push(() => g.close());
      return g;
    };
    // The agent's delegated token, bound to the bench session.
    const token = await new SignJWT({ tenant: TENANT, scope: 'mcp:tools:read mcp:tools:write', session_id: SESSION, act: { sub: 'A-bench' } })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('U-bench')
      .setJti(`J-${randomBytes(4).toString('hex')}`)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(SECRET));

    const builtin = await gateAt('builtin', {});
    const durable = await gateAt('durable', { tools: { test_simple_text: { destructive: true } } });
    const binary = cerbosBinary();
    let cerbos: GateCerbos | undefined;
    let cerbosGate: RunningGate | undefined;
    if (binary !== undefined) {
      cerbos = await startGateCerbos(binary);
      const c = cerbos;
      closers.push(() => c.stop());
      cerbosGate = await gateAt('cerbos', { policy: { engine: 'cerbos', url: cerbos.url, timeout_ms: 2_000 } });
    }

    say(`gate bench: ${RATE} calls/s open loop per phase, ${SECONDS} s measured (+${WARMUP_S} s warm-up); trust pushes ${PUSH_RATE}/s over ${SESSIONS + 1} sessions; SDK client over Streamable HTTP; upstream its own process`);
    const phases: Phase[] = [];
    const run = async (name: string, url: string, tok?: string): Promise<Phase> => {
      const client = await connect(url, tok);
      await client.callTool({ name: 'test_simple_text', arguments: {} });
      const p = await runPhase(name, client);
      await client.close();
      phases.push(p);
      say(`  ${name.padEnd(34)} p50 ${fmt(pct(p.latencies, 50)).padStart(6)} ms  p99 ${fmt(pct(p.latencies, 99)).padStart(6)} ms  (${p.latencies.length} calls, ${(p.sent / p.seconds).toFixed(0)} sent/s, ${p.errors} errors${p.firstError !== undefined ? `, first: ${p.firstError}` : ''}; load average ${loadavg()[0]?.toFixed(1) ?? '?'} on ${cpus().length} cores)`);
      return p;
    };
    const direct = await run('direct (client → upstream)', upstream.url);
    const viaBuiltin = await run('gate, built-in rules', builtin.url ?? '', token);
    const viaDurable = await run('gate, destructive (durable first)', durable.url ?? '', token);
    const viaCerbos = cerbosGate !== undefined ? await run('gate, Cerbos PDP', cerbosGate.url ?? '', token) : undefined;
    // The baseline again, last: the machine's drift over the run shows here.
    const direct2 = await run('direct again', upstream.url);

    // Closed loop, one call at a time, direct and through the built-in gateway alternating: both
    // meet the same machine at the same moments, which an overloaded host makes the fairer pairing.
    const pairs = 400;
    const d = await connect(upstream.url);
    const g = await connect(builtin.url ?? '', token);
    const seqDirect: number[] = [];
    const seqVia: number[] = [];
    for (let i = 0; i < pairs; i++) {
      for (const [c, into] of i % 2 === 0 ? ([[d, seqDirect], [g, seqVia]] as const) : ([[g, seqVia], [d, seqDirect]] as const)) {
        const t = performance.now();
        await c.callTool({ name: 'test_simple_text', arguments: {} });
        into.push(performance.now() - t);
      }
    }
    await Promise.all([d.close(), g.close()]);
    say(`  sequential, alternating (${pairs} pairs): direct p50 ${fmt(pct(seqDirect, 50))} ms, via the gate p50 ${fmt(pct(seqVia, 50))} ms → +${fmt(pct(seqVia, 50) - pct(seqDirect, 50))} ms p50; p99 ${fmt(pct(seqDirect, 99))} vs ${fmt(pct(seqVia, 99))} ms`);

    const base50 = pct([...direct.latencies, ...direct2.latencies], 50);
    const base99 = pct([...direct.latencies, ...direct2.latencies], 99);
    say(`\n  added vs direct (both direct phases pooled: p50 ${fmt(base50)} ms, p99 ${fmt(base99)} ms):`);
    for (const p of [viaBuiltin, viaDurable, viaCerbos]) {
      if (p === undefined) continue;
      say(`  ${p.name.padEnd(34)} +${fmt(pct(p.latencies, 50) - base50)} ms p50   +${fmt(pct(p.latencies, 99) - base99)} ms p99`);
    }
    if (viaCerbos === undefined) say('  (no Cerbos binary: @cerbos/cerbos-linux-x64 not installed; Cerbos phase skipped)');
    say(`  trust pushes during the run: ${pushed} sent, ${received} taken in by the gateways' view`);
    const errors = phases.reduce((a, p) => a + p.errors, 0);
    if (errors > 0) say(`  ${errors} calls failed`);
    const reached = viaBuiltin.sent / viaBuiltin.seconds;
    if (reached < RATE * 0.9) say(`  the load generator reached ${reached.toFixed(0)} of ${RATE} calls/s: the open-loop figures are queueing on this machine, not the gateway's cost alone`);
    goals.push({ what: 'gate: p50 added to a non-destructive tools/call (built-in rules, HTTP, 500 calls/s, trust pushes)', value: pct(viaBuiltin.latencies, 50) - base50, unit: 'ms', bound: 'max', goal: 1 });
    printTargets(goals, say);
    return errors > 0 ? 1 : 0;
  } finally {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
};

process.exitCode = await main();
