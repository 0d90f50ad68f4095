// `trustfold gate`, all real: an SDK client over Streamable HTTP → the gateway
// → two real MCP server processes (the example ledger server over stdio and
// over Streamable HTTP), with the real broker, projector and ingest. A
// destructive call is allowed, an injection signal arrives, and the next one
// is denied by the same running gateway; every call's decision is on the
// decisions topic with the chain, the token and the trust version it met.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { SignJWT } from 'jose';
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import type { DecisionEvent } from '../../schemas/events.ts';
import { parseGateConfig } from '../../services/gate/config.ts';
import { GATE_ERRORS } from '../../services/gate/gateway.ts';
import { startGate, type RunningGate } from '../../services/gate/main.ts';
import { buildIngestApp } from '../../services/ingest/app.ts';
import { createKafkaSink, type EventSink } from '../../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import type { App } from '../../services/lib/http.ts';
import { createKafka, ensureTopics, topicLayout } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createProjector, type Projector } from '../../services/projector/runtime.ts';
import { getTestKafka, type TestKafka } from '../helpers/kafka.ts';
import { readTopic } from '../helpers/ingest-readback.ts';
import { createEventProducer, event, sessionStarted, testConfig, testEnv, waitFor } from '../helpers/projector.ts';

const SECRET = 'gate-integration-secret-of-at-least-32-chars';
const server = fileURLToPath(new URL('../../examples/mcp/ledger-server.ts', import.meta.url));
const ledgerDir = mkdtempSync(join(tmpdir(), 'gate-ledger-'));
const archiveDir = mkdtempSync(join(tmpdir(), 'gate-archive-'));

let broker: TestKafka;
let kafka: Kafka;
let projector: Projector;
let sink: EventSink;
let ingest: App;
let gate: RunningGate;
let archive: ChildProcess;
let env: ReturnType<typeof testEnv>;

/** The example server over Streamable HTTP, as its own process; resolves with the URL it prints. */
const startHttpLedger = (root: string): Promise<{ child: ChildProcess; url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', server, '--root', root, '--http', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`ledger server exited with ${code}`)));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (line) => {
      const url = /(http:\/\/\S+)/.exec(line)?.[1];
      if (url === undefined) reject(new Error(`unexpected first line: ${line}`));
      else resolve({ child, url });
    });
  });

/** A delegated token: U-442 → A-17 → A-17-sub, bound to one session. */
const agentToken = (claims: Record<string, unknown>): Promise<string> =>
  new SignJWT({ tenant: 'acme', scope: 'mcp:tools:read mcp:tools:write', consent_ref: 'C-1', act: { sub: 'A-17-sub', act: { sub: 'A-17' } }, ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('U-442')
    .setJti(`J-${Math.random().toString(36).slice(2)}`)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(SECRET));

const connectAgent = async (token: string): Promise<Client> => {
  const client = new Client({ name: 'agent-it', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(gate.url ?? ''), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return client;
};

/** Where set-up got to, for the message when a hook times out. */
let phase = 'start';
const step = (p: string): void => {
  phase = p;
  if (process.env['GATE_IT_TRACE'] !== undefined) process.stderr.write(`gate-it: ${p}\n`);
};

before(async () => {
  step('broker');
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'gate-it');
  env = testEnv(broker.brokers);
  const config = testConfig({ ...env, TRUSTFOLD_JWT_SECRET: SECRET });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topicLayout(config));
  await admin.disconnect();

  step('projector');
  projector = createProjector({ kafka, config, logger: createLogger('t', 'silent'), groupId: env.TRUSTFOLD_PROJECTOR_GROUP, delivery: 'idempotent' });
  await projector.start();
  step('ingest');
  sink = createKafkaSink({ kafka: createKafka(broker.brokers, 'gate-it-ingest'), timeoutMs: 10_000 });
  ingest = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry: new Registry(),
    sink,
    topics: config.topics,
    activeFreezes: async () => [],
    limits: { maxBodyBytes: 4 * 1024 * 1024, maxEventsPerRequest: 1_000, produceTimeoutMs: 10_000 },
  });
  const ingestUrl = await ingest.listen({ port: 0, host: '127.0.0.1' });

  step('http ledger');
  const http = await startHttpLedger(archiveDir);
  archive = http.child;
  const file = parseGateConfig({
    upstreams: {
      ledger: { command: process.execPath, args: ['--import', 'tsx', server, '--root', ledgerDir] },
      archive: { url: http.url },
    },
    listen: { port: 0 },
    tools: {
      ledger__delete_file: { resource: 'repo:R-payments-ledger/{path}' },
      ledger__read_file: { resource: 'repo:R-payments-ledger/{path}' },
    },
    audit: { url: ingestUrl, pdp_id: 'gate-it' },
  });
  if (!file.ok) throw new Error(JSON.stringify(file.error));
  step('gate');
  gate = await startGate({
    gate: file.value,
    config,
    logger: createLogger('gate-it', 'silent'),
    env: { TRUSTFOLD_TOKEN: await mintToken({ sub: 'gate-it', tenant: 'acme', scopes: ['events:write'] }, SECRET) },
  });
  step('ready');
}, { timeout: 150_000 });

after(async () => {
  step(`closing after ${phase}`);
  await gate?.close();
  step('gate closed');
  archive?.kill('SIGTERM');
  await ingest?.close();
  await sink?.close();
  await projector?.stop();
  step('stopping broker');
  await broker?.stop();
  rmSync(ledgerDir, { recursive: true, force: true });
  rmSync(archiveDir, { recursive: true, force: true });
}, { timeout: 60_000 });

const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;
const decisionId = (r: unknown): string => ((r as CallToolResult)._meta?.['trustfold/decision'] as { event_id: string }).event_id;

test('allowed, then denied after an injection signal, by the same running gateway; every decision audited', { timeout: 180_000 }, async () => {
  writeFileSync(join(ledgerDir, 'old.csv'), 'x\n');
  writeFileSync(join(ledgerDir, 'q3.csv'), 'a,b\n');
  const producer = await createEventProducer(kafka, testConfig(env));
  try {
    await producer.send(sessionStarted('S-gate', 'U-442'));
    await waitFor('the gateway’s view knows the session', () => gate.view.get('S-gate', 'acme').known);
    const agent = await connectAgent(await agentToken({ session_id: 'S-gate', intent: 'close the quarter' }));

    const names = (await agent.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['archive__delete_file', 'archive__list_files', 'archive__read_file', 'archive__write_file', 'ledger__delete_file', 'ledger__list_files', 'ledger__read_file', 'ledger__write_file']);

    const written = await agent.callTool({ name: 'archive__write_file', arguments: { path: 'q3-summary.txt', content: 'closed' } });
    assert.equal(textOf(written), 'wrote q3-summary.txt');
    assert.equal(readFileSync(join(archiveDir, 'q3-summary.txt'), 'utf8'), 'closed');

    const deleted = await agent.callTool({ name: 'ledger__delete_file', arguments: { path: 'old.csv' } });
    assert.equal(textOf(deleted), 'deleted old.csv');
    assert.equal(existsSync(join(ledgerDir, 'old.csv')), false);

    await producer.send(event({ type: 'signal', kind: 'injection_detected', session_id: 'S-gate', signal_id: 'SIG-INJ-8821', severity: 'high', detector: 'prompt-guard' }));
    let restrictedAt = 0;
    await waitFor('restricted in the gateway’s view', () => {
      const t = gate.view.get('S-gate', 'acme');
      if (t.known && t.state.tier === 'restricted') restrictedAt = t.version;
      return restrictedAt > 0;
    });

    const denied = await agent.callTool({ name: 'ledger__delete_file', arguments: { path: 'q3.csv' } });
    assert.equal(denied.isError, true);
    assert.match(textOf(denied), /restricted \(SIG-INJ-8821\)/);
    assert.equal(existsSync(join(ledgerDir, 'q3.csv')), true, 'a denied call never reaches the upstream');
    const read = await agent.callTool({ name: 'ledger__read_file', arguments: { path: 'q3.csv' } });
    assert.equal(textOf(read), 'a,b\n');

    const reader = await agent.callTool({ name: 'archive__read_file', arguments: { path: 'q3-summary.txt' } });
    assert.equal(textOf(reader), 'closed');

    // A token for another tenant sees its own (unknown) session: destructive calls fail closed.
    const other = await connectAgent(
      await new SignJWT({ tenant: 'globex', scope: 'mcp:tools:read mcp:tools:write', session_id: 'S-gate' }).setProtectedHeader({ alg: 'HS256' }).setSubject('U-9').setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET)),
    );
    const foreign = await other.callTool({ name: 'ledger__delete_file', arguments: { path: 'q3.csv' } });
    assert.equal(((foreign._meta?.['trustfold/decision'] ?? {}) as { rule_id?: string }).rule_id, 'deny-destructive-when-trust-unknown');
    // No scope to call: refused with the gateway's forbidden code.
    const readOnly = await connectAgent(await agentToken({ session_id: 'S-gate', scope: 'mcp:tools:read' }));
    await assert.rejects(readOnly.callTool({ name: 'ledger__read_file', arguments: { path: 'q3.csv' } }), (e: unknown) => e instanceof McpError && e.code === GATE_ERRORS.forbidden);
    await Promise.all([agent.close(), other.close(), readOnly.close()]);

    const ids = [written, deleted, denied, read, reader].map(decisionId);
    let decisions: DecisionEvent[] = [];
    for (const deadline = Date.now() + 60_000; ; ) {
      decisions = (await readTopic(broker.brokers, testConfig(env).topics.decisions)).filter((e): e is DecisionEvent => e.type === 'decision');
      if (ids.every((id) => decisions.some((x) => x.event_id === id))) break;
      if (Date.now() > deadline) throw new Error(`decisions missing from the topic: ${ids.filter((id) => !decisions.some((x) => x.event_id === id)).join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const byId = new Map(decisions.map((d) => [d.event_id, d]));
    const summary = ids.map((id) => {
      const d = byId.get(id);
      return [d?.request.tool, d?.decision.effect, d?.decision.rule_id, d?.outcome?.status];
    });
    assert.deepEqual(summary, [
      ['archive__write_file', 'allow', 'allow', 'executed'],
      ['ledger__delete_file', 'allow', 'allow', undefined], // durable before forwarding: stored before the upstream ran
      ['ledger__delete_file', 'deny', 'deny-destructive-when-restricted', 'blocked'],
      ['ledger__read_file', 'allow', 'allow', 'executed'],
      ['archive__read_file', 'allow', 'allow', 'executed'],
    ]);
    // The trust version each call met: before the injection below the restricted state, after it at least that one.
    // (Decisions fill session facts too, so how many versions lie between depends on the projector's timing.)
    const versions = ids.map((id) => byId.get(id)?.decision.trust_version ?? -1);
    assert.ok(versions.slice(0, 2).every((v) => v >= 1 && v < restrictedAt), `${versions.join(',')} vs ${restrictedAt}`);
    assert.ok(versions.slice(2).every((v) => v >= restrictedAt), `${versions.join(',')} vs ${restrictedAt}`);
    const d = byId.get(ids[2] ?? '');
    assert.deepEqual(d?.chain, [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: 'A-17' }, { kind: 'agent', id: 'A-17-sub' }]);
    assert.equal(d?.request.resource, 'repo:R-payments-ledger/q3.csv');
    assert.equal(d?.token?.consent_ref, 'C-1');
    assert.deepEqual(d?.intent, { statement: 'close the quarter' });
    assert.equal(d?.decision.pdp_id, 'gate-it');
    assert.equal(d?.emitted_by, 'gate-it');
    assert.match(d?.provenance?.tool_schema_digest ?? '', /^sha256:/);
    assert.ok(decisions.some((x) => x.decision.rule_id === 'deny-missing-scope'));
  } finally {
    await producer.close();
  }
});

test('HTTP: no token → 401; an MCP session is bound to the caller that opened it', async () => {
  const url = gate.url ?? '';
  const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const anonymous = await fetch(url, { method: 'POST', headers, body: JSON.stringify(init) });
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer');
  const owner = new Client({ name: 'owner', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${await agentToken({ session_id: 'S-owner' })}` } } });
  await owner.connect(transport);
  const intruder = await new SignJWT({ tenant: 'acme', scope: 'mcp:tools:read mcp:tools:write' }).setProtectedHeader({ alg: 'HS256' }).setSubject('U-1').setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));
  const hijack = await fetch(url, {
    method: 'POST',
    headers: { ...headers, authorization: `Bearer ${intruder}`, 'mcp-session-id': transport.sessionId ?? '', 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }),
  });
  assert.equal(hijack.status, 403);
  await owner.close();
});
