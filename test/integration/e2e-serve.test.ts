// `trustfold serve` as a user runs it: child processes against the real
// broker, driven over HTTP only; what PDPs see is checked with a TrustView in
// this process, and the forensic story with the audit API.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { playIncident } from '../../services/demo/index.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import { mintToken } from '../../services/lib/auth.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { createTrustView, type TrustView } from '../../services/pdp-client/trust-view.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const SECRET = 'e2e-secret-of-at-least-32-characters-0123';
const ALL_SCOPES = ['events:write', 'freeze:write', 'freeze:read', 'trust:read', 'audit:read'];

type Server = { url: string; child: ChildProcess; output: () => string; stop(): Promise<number | null> };

/** Starts `node bin/trustfold.js serve --role <roles>` and waits for its banner. */
const serve = async (roles: string, env: Record<string, string>): Promise<Server> => {
  const child = spawn(process.execPath, ['bin/trustfold.js', 'serve', '--role', roles], {
    env: { ...process.env, ...env, PORT: '0', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve ${roles} did not start in 90 s:\n${out}`)), 90_000);
    const poll = setInterval(() => {
      const m = /API\s+(http:\/\/\S+)/.exec(out);
      if (m?.[1]) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve(m[1]);
      }
    }, 50);
    child.once('exit', (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`serve ${roles} exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    child,
    output: () => out,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
};

const topicsEnv = () => {
  const id = uniqueName('e2e');
  return {
    TRUSTFOLD_TOPIC_DECISIONS: `${id}.decisions`,
    TRUSTFOLD_TOPIC_SIGNALS: `${id}.signals`,
    TRUSTFOLD_TOPIC_SESSION_TRUST: `${id}.session-trust`,
    TRUSTFOLD_TOPIC_DEAD_LETTER: `${id}.dead-letter`,
    KAFKA_CLIENT_ID: id,
    TRUSTFOLD_PARTITIONS: '3',
    TRUSTFOLD_JWT_SECRET: SECRET,
  } as const;
};

// A liveness bound, not a timing claim: generous, because a role that rejoins its group right after start recovers first (~10 s) and CI shares two cores.
const waitFor = async <T>(what: string, probe: () => T | undefined, ms = 60_000): Promise<T> => {
  const t0 = Date.now();
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('end to end: trustfold serve', { timeout: 240_000 }, () => {
  let kafka: TestKafka;
  const dirs: string[] = [];
  const servers: Server[] = [];
  const views: TrustView[] = [];
  before(async () => {
    kafka = await getTestKafka();
  });
  after(async () => {
    for (const v of views) await v.close();
    for (const s of servers) await s.stop();
    await kafka.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const dataDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'trustfold-e2e-'));
    dirs.push(d);
    return d;
  };
  const viewOn = async (topic: string): Promise<TrustView> => {
    const view = await createTrustView({ kafka: createKafka(kafka.brokers, 'e2e-view'), topic });
    views.push(view);
    await view.ready();
    return view;
  };

  test('--role all: the seed incident of docs/design.md over HTTP, seen by a TrustView and told by the audit', async () => {
    const env = { ...topicsEnv(), KAFKA_BROKERS: kafka.brokers.join(','), TRUSTFOLD_DATA_DIR: dataDir() };
    const server = await serve('all', env);
    servers.push(server);
    const view = await viewOn(env.TRUSTFOLD_TOPIC_SESSION_TRUST);
    // As the README has a new user do it: the operator token (tenant "*") that `serve` prints.
    const token = await mintToken({ sub: 'e2e', tenant: '*', scopes: [...ALL_SCOPES, 'tenants:all'] }, SECRET);
    const lines: string[] = [];
    const r = await playIncident({ base: server.url, token }, (s) => lines.push(s));

    assert.equal(r.sessionId, 'S-9');
    const state = await waitFor('S-9 restricted with INC-77 in the TrustView', () => {
      const l = view.get('S-9', 'acme');
      return l.known && l.state.freezes.some((f) => f.freeze_id === 'INC-77') ? l.state : undefined;
    });
    assert.equal(state.tier, 'restricted');
    assert.equal(state.delegator, 'U-442');
    assert.equal(state.agent, 'A-17');
    assert.deepEqual(state.causes.map((c) => c.ref), ['SIG-INJ-8821']);
    assert.deepEqual(
      r.transitions.map((s: SessionTrust) => s.version),
      [...r.transitions.map((s: SessionTrust) => s.version)].sort((a, b) => a - b),
      'versions pushed in order',
    );
    for (const id of ['U-442', 'A-17', 'S-9', 'delete_file', 'R-payments-ledger', 'J-1', 'repo:write', 'P-risk-43', '12', 'SIG-INJ-8821', 'INC-77']) {
      assert.ok(r.story.includes(id), `story names ${id}: ${r.story}`);
    }
    assert.match(r.story, /denied/);
    assert.ok(lines.some((l) => /DENY/.test(l)), 'the PDP printed its deny');
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const published = Number(/^trustfold_projector_published_states (\d+)/m.exec(metrics)?.[1] ?? '0');
    assert.ok(published >= r.transitions.length, `the projector's published states are in /metrics (${published})`);

    const code = await server.stop();
    assert.equal(code, 0, `clean exit on SIGTERM:\n${server.output()}`);
  });

  test('roles as separate processes: projector apart from the API and the sink', async () => {
    const env = { ...topicsEnv(), KAFKA_BROKERS: kafka.brokers.join(',') };
    const projector = await serve('projector', { ...env, TRUSTFOLD_DATA_DIR: dataDir() });
    servers.push(projector);
    const api = await serve('ingest,audit-sink,query', { ...env, TRUSTFOLD_DATA_DIR: dataDir() });
    servers.push(api);
    const view = await viewOn(env.TRUSTFOLD_TOPIC_SESSION_TRUST);
    const token = await mintToken({ sub: 'e2e', tenant: 'acme', scopes: ALL_SCOPES }, SECRET);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

    // The API process has no trust routes: the projector process serves them.
    const onApi = await fetch(`${api.url}/v1/sessions/S-1/trust`, { headers });
    assert.equal(onApi.status, 404);

    const r = await playIncident({ base: api.url, token }, () => undefined).catch((e: unknown) => e);
    // The incident needs the trust stream, which lives on the projector process.
    assert.ok(r instanceof Error, 'the API process alone cannot stream trust');

    const sessionId = 'S-sep-1';
    const events = [
      { type: 'signal', kind: 'session_started', event_id: '01976d2a-0000-7000-8000-00000000a001', tenant_id: 'acme', occurred_at: new Date().toISOString(), session_id: sessionId, chain: [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-1' }] },
      { type: 'signal', kind: 'role_revoked', event_id: '01976d2a-0000-7000-8000-00000000a002', tenant_id: 'acme', occurred_at: new Date().toISOString(), user_id: 'U-1', role: 'admin' },
      { type: 'decision', event_id: '01976d2a-0000-7000-8000-00000000a003', tenant_id: 'acme', occurred_at: new Date().toISOString(), session_id: sessionId, chain: [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-1' }], request: { tool: 'db', action: 'drop_table', resource: 'db:orders' }, decision: { effect: 'deny', policy_id: 'P-1', rule_id: 'no-drop' } },
    ];
    const posted = await fetch(`${api.url}/v1/events`, { method: 'POST', headers, body: JSON.stringify(events) });
    assert.equal(posted.status, 202);
    assert.deepEqual(await posted.json(), { accepted: 3, duplicates: 0, rejected: [] });

    const state = await waitFor('role revocation folded by the projector process', () => {
      const l = view.get(sessionId, 'acme');
      return l.known && l.state.revoked_roles.includes('admin') ? l.state : undefined;
    });
    assert.equal(state.tier, 'degraded');
    const trust = await fetch(`${projector.url}/v1/sessions/${sessionId}/trust`, { headers });
    assert.equal(trust.status, 200);
    assert.equal(((await trust.json()) as SessionTrust).version, state.version);

    const t0 = Date.now();
    let found: Response | undefined;
    while (Date.now() - t0 < 20_000) {
      const res = await fetch(`${api.url}/v1/audit/decisions/01976d2a-0000-7000-8000-00000000a003`, { headers });
      if (res.status === 200) {
        found = res;
        break;
      }
      await new Promise((res2) => setTimeout(res2, 100));
    }
    assert.ok(found, 'the sink in the API process stored the decision');
    const body = (await found.json()) as { decision: { request: { action: string } } };
    assert.equal(body.decision.request.action, 'drop_table');

    // The API process has no TrustView: it lists freezes from its own freeze reader of the trust topic.
    const raised = await fetch(`${api.url}/v1/freezes?tenant=acme`, { method: 'POST', headers, body: JSON.stringify({ freeze_id: 'INC-SEP', scope: { resource_prefix: 'db:', actions: ['drop_table'] }, reason: 'split-roles freeze' }) });
    assert.equal(raised.status, 201);
    let listed: string[] = [];
    for (const t1 = Date.now(); !listed.includes('INC-SEP') && Date.now() - t1 < 60_000; await new Promise((res2) => setTimeout(res2, 100))) {
      const res = await fetch(`${api.url}/v1/freezes?tenant=acme`, { headers });
      listed = ((await res.json()) as { freezes: { freeze_id: string }[] }).freezes.map((f) => f.freeze_id);
    }
    assert.deepEqual(listed, ['INC-SEP'], 'the freeze listed by the API process');
  });
});
