// OPA decision-log uploads against the real broker: recorded OPA-shaped gzip
// payloads (single, batched, re-sent, oversized, malformed) give exact statuses
// and exactly the expected events on the decisions topic; then, when an `opa`
// binary is on PATH, a real OPA server uploads its own decision logs here.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { Consumer, Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import { actingAgentOf, delegatorOf, type DecisionEvent } from '../../schemas/events.ts';
import { adapterConfigFrom } from '../../services/adapters/config.ts';
import { OPA_LOGS_PATH, opaRoutes } from '../../services/adapters/opa.ts';
import { createDecisionWriter, type DecisionWriter } from '../../services/adapters/writer.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { createKafka, sessionKey } from '../../services/lib/kafka.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { opaEvent } from '../unit/adapters-fixtures.ts';

const codec = createCodec();
const secret = 'integration-secret-integration-secret-0123456789';
// `opa` on PATH, else the one scripts/opa-fetch.mjs built (npm test runs it first).
const OPA_CACHED = fileURLToPath(new URL('../../.cache/opa/opa', import.meta.url));
const opaBin = ['opa', OPA_CACHED].find((b) => spawnSync(b, ['version'], { encoding: 'utf8' }).status === 0);

let broker: TestKafka;
let kafka: Kafka;
let writer: DecisionWriter;
let app: App;
let topic: string;
let token: string;
const received: { key: string; event: DecisionEvent }[] = [];
let tailer: Consumer;

const waitFor = async <T>(what: string, probe: () => T, done: (v: T) => boolean, timeoutMs = 30_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (done(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last value ${JSON.stringify(v).slice(0, 300)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const upload = (body: Buffer) =>
  app.inject({
    method: 'POST',
    url: OPA_LOGS_PATH,
    payload: body,
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: `Bearer ${token}` },
  });
const gz = (v: unknown): Buffer => gzipSync(Buffer.from(JSON.stringify(v)));

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'adapters-opa-test');
  topic = uniqueName('dec');
  await createTopic(broker.brokers, topic, 3);
  writer = createDecisionWriter({ kafka, topic, timeoutMs: 10_000 });
  app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  const opa = adapterConfigFrom({ TRUSTFOLD_OPA_MAX_UPLOAD_BYTES: String(64 * 1024) }).opa;
  // The recorded uploads are from 2026-06-09: this endpoint is configured as an
  // operator would for a backfill (a year back); the real OPA below sends today's times.
  await app.register(opaRoutes({ writer, opa, registry: new Registry(), eventTime: { maxFutureSkewMs: 60_000, maxAgeMs: 400 * 24 * 3_600_000 } }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  token = await mintToken({ sub: 'opa-gateway', tenant: 'acme', scopes: ['events:write'] }, secret);
  tailer = kafka.consumer({ groupId: uniqueName('tail') });
  await tailer.connect();
  await tailer.subscribe({ topic, fromBeginning: true });
  await tailer.run({
    eachMessage: async ({ message }) => {
      assert.ok(message.value);
      const d = codec.decodeEvent(message.value);
      assert.ok(d.ok && d.value.type === 'decision');
      received.push({ key: String(message.key), event: d.value });
    },
  });
});
after(async () => {
  await tailer?.disconnect();
  await app?.close();
  await writer?.close();
  await broker?.stop();
});

describe('recorded OPA uploads → decisions topic', () => {
  test('single, batched and re-sent uploads: 200s, and exactly those decisions on the topic', { timeout: 60_000 }, async () => {
    const single = await upload(gz([opaEvent()]));
    assert.equal(single.statusCode, 200, single.body);
    assert.deepEqual(single.json(), { accepted: 1, partial: 0, rejected: [] });

    const batch = Array.from({ length: 30 }, (_, i) =>
      opaEvent({ decision_id: `batch-${i}`, input: { ...(opaEvent()['input'] as object), session_id: `S-${i % 3}` }, result: { allow: i % 2 === 0 } }),
    );
    const batched = await upload(gz(batch));
    assert.equal(batched.statusCode, 200, batched.body);
    assert.deepEqual(batched.json(), { accepted: 30, partial: 0, rejected: [] });

    // OPA re-sends a chunk whose 2xx it did not see: same event id, a duplicate for downstream dedupe.
    assert.equal((await upload(gz([opaEvent()]))).statusCode, 200);

    await waitFor('32 records', () => received.length, (n) => n >= 32);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(received.length, 32);
    assert.equal(new Set(received.map((r) => r.event.event_id)).size, 31);
    const first = received.find((r) => r.event.session_id === 'S-9');
    assert.ok(first);
    assert.equal(first.key, sessionKey('acme', 'S-9'));
    assert.equal(delegatorOf(first.event.chain)?.id, 'U-442');
    assert.equal(actingAgentOf(first.event.chain)?.id, 'A-17');
    assert.equal(first.event.decision.effect, 'deny');
    assert.equal(first.event.decision.policy_id, 'agents/authz/decision');
    assert.equal(first.event.decision.policy_version, 'rev-12');
    assert.equal(received.filter((r) => r.event.decision.effect === 'allow').length, 15);
    assert.ok(received.every((r) => r.event.tenant_id === 'acme' && r.event.emitted_by === 'opa-gateway'));
  });

  test('oversized → 413, malformed gzip → 400, malformed JSON → 400, and none of them reach the topic', { timeout: 30_000 }, async () => {
    const before = received.length;
    const big = gz(Array.from({ length: 400 }, (_, i) => opaEvent({ decision_id: `big-${i}`, labels: { id: randomBytes(200).toString('base64') } })));
    assert.ok(big.length > 64 * 1024);
    const tooBig = await upload(big);
    assert.equal(tooBig.statusCode, 413);
    assert.equal(tooBig.json().error.code, 'payload_too_large');
    assert.equal((await upload(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]))).statusCode, 400);
    assert.equal((await upload(gzipSync(Buffer.from('[{"decision_id": "x",')))).statusCode, 400);
    // A good upload after them proves the topic is being read; only its one record is new.
    assert.equal((await upload(gz([opaEvent({ decision_id: 'after-bad' })]))).statusCode, 200);
    await waitFor('the good record', () => received.length, (n) => n > before);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(received.slice(before).map((r) => r.event.session_id), ['S-9']);
  });
});

const POLICY = `package agents.authz

import rego.v1

default decision := {"allow": false, "rule_id": "default-deny", "reasons": ["no rule allowed it"]}

decision := {"allow": true, "rule_id": "allow-read", "reasons": ["read allowed"]} if {
  input.action == "read_file"
}

decision := {"allow": false, "rule_id": "deny-destructive-when-degraded", "reasons": ["session trust is degraded"]} if {
  input.action == "delete_file"
  input.trust_tier != "trusted"
}
`;

describe('real OPA → its decision-log plugin → this endpoint', { skip: opaBin !== undefined ? false : 'no `opa` binary: not on PATH, and scripts/opa-fetch.mjs could not build one (needs Go)' }, () => {
  test('OPA uploads its decision logs (gzip, bearer token) and they arrive as trustfold decisions', { timeout: 90_000 }, async (t) => {
    const address = app.server.address();
    assert.ok(address !== null && typeof address === 'object');
    const dir = mkdtempSync(join(tmpdir(), 'trustfold-opa-'));
    writeFileSync(join(dir, 'policy.rego'), POLICY);
    writeFileSync(
      join(dir, 'opa.yaml'),
      `services:
  trustfold:
    url: http://127.0.0.1:${address.port}/v1/ingest/opa
    credentials:
      bearer:
        token: "${token}"
labels:
  app: agent-gateway
decision_logs:
  service: trustfold
  reporting:
    min_delay_seconds: 1
    max_delay_seconds: 2
`,
    );
    const out = openSync(join(dir, 'opa.log'), 'a');
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const child = spawn(opaBin ?? 'opa', ['run', '--server', `--addr=127.0.0.1:${port}`, `--config-file=${join(dir, 'opa.yaml')}`, join(dir, 'policy.rego')], { stdio: ['ignore', out, out] });
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitForAsync(() => fetch(`${url}/health`).then((r) => r.ok).catch(() => false), 20_000, () => readFileSync(join(dir, 'opa.log'), 'utf8'));
      const S = uniqueName('S-opa');
      const ask = async (action: string, tier: string) => {
        const r = await fetch(`${url}/v1/data/agents/authz/decision`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ input: { session_id: S, delegator: 'U-442', agent: { id: 'A-17', version: '3.2' }, tool: 'git', action, resource: 'repo:R-payments-ledger', trust_tier: tier } }),
        });
        const body = (await r.json()) as { decision_id?: string; result: { allow: boolean } };
        assert.equal(r.status, 200);
        assert.ok(body.decision_id, 'decision logging is on, so OPA returns a decision_id');
        return body;
      };
      const read = await ask('read_file', 'degraded');
      const del = await ask('delete_file', 'degraded');
      assert.equal(read.result.allow, true);
      assert.equal(del.result.allow, false);
      const mine = () => received.filter((r) => r.event.session_id === S).map((r) => r.event);
      const got = await waitFor('OPA to upload 2 decisions', mine, (xs) => xs.length >= 2, 30_000);
      t.diagnostic(`OPA uploaded ${got.length} decisions`);
      const byAction = new Map(got.map((d) => [d.request.action, d]));
      assert.equal(byAction.get('read_file')?.decision.effect, 'allow');
      const denied = byAction.get('delete_file');
      assert.equal(denied?.decision.effect, 'deny');
      assert.equal(denied?.decision.rule_id, 'deny-destructive-when-degraded');
      assert.equal(denied?.decision.policy_id, 'agents/authz/decision');
      assert.equal(delegatorOf(denied?.chain ?? [])?.id, 'U-442');
      assert.ok(denied?.decision.pdp_id, 'OPA labels.id is the PDP id');
      assert.equal(denied?.tenant_id, 'acme');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const waitForAsync = async (probe: () => Promise<boolean>, timeoutMs: number, diag: () => string): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) assert.fail(`opa not healthy: ${diag().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
