// SSF delivery under bad conditions, on a real broker, through two composed
// systems sharing the topics: A (ingest + projector + ssf, tenant acme's
// transmitter) and B (ssf only: tenant beta's receiver, polling A).
//
// - Push to a receiver that answers 400 invalid_key, then 503, then too
//   slowly (past the push timeout), then 202: each SET is retried with
//   backoff and arrives; one SET the receiver refuses with invalid_request
//   is settled as refused and not retried (RFC 8935 §2.3); per session the
//   versions arrive in order. The pushed SETs pass go-jose (when built).
// - B polls A's poll stream (RFC 8936) as tenant beta's receiver: acme's
//   session-revoked ends beta's session as a TrustView sees it.
// - B's push stream, with inactivity_timeout 2 s and no receiver activity,
//   is paused by B with a stream-updated event, which is pushed although
//   the stream is paused; re-enabled, it says so again.
// - /metrics counts what happened.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decodeJwt } from 'jose';
import { mintToken } from '../../services/lib/auth.ts';
import { configFrom } from '../../services/lib/config.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { createTrustView } from '../../services/pdp-client/trust-view.ts';
import { EVENT_TYPES } from '../../services/ssf/caep.ts';
import { startSystem, type System } from '../helpers/system.ts';
import { getTestKafka, topicEnv, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { waitFor } from '../helpers/projector.ts';
import { freePort } from '../helpers/net.ts';
import { goVerify, SSF_VERIFIER_SKIP } from '../ssf-verifier/run.ts';

let broker: TestKafka;
before(async () => {
  broker = await getTestKafka();
});
after(async () => {
  await broker.stop();
});

type Received = { at: number; token: string; claims: Record<string, unknown>; eventType: string; session: string | undefined };
const parse = (token: string): Received => {
  const claims = decodeJwt(token) as Record<string, unknown>;
  const events = claims['events'] as Record<string, unknown>;
  const sub = claims['sub_id'] as { session?: { id?: string } };
  return { at: Date.now(), token, claims, eventType: Object.keys(events)[0] ?? '', session: sub.session?.id };
};
const versionOf = (r: Received): number => {
  const payload = (r.claims['events'] as Record<string, { reason_admin?: { en?: string } }>)[r.eventType];
  return Number(/trust version (\d+)/.exec(payload?.reason_admin?.en ?? '')?.[1] ?? NaN);
};

/** A push receiver answering from a script, then 202; it records every request it read. */
const scriptedReceiver = async (script: ((r: Received, res: ServerResponse) => boolean)[]): Promise<{ server: Server; url: string; seen: Received[] }> => {
  const seen: Received[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const r = parse(body);
      seen.push(r);
      const step = script.find((s) => s(r, res));
      if (step === undefined) res.writeHead(202).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  return { server, url: `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}/events`, seen };
};

test('SSF delivery: retries through invalid_key, 5xx and a slow receiver in order; a refused SET is not retried; beta polls acme; inactivity pauses a stream', { timeout: 120_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-ssf-d-'));
  const [portA, portB] = [await freePort(), await freePort()];
  const [issuerA, issuerB] = [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`];
  const secret = 'ssf-delivery-secret-0123456789-abcdefghij';
  const shared = topicEnv(uniqueName('ssfd'), broker.brokers, 2);
  const common: Record<string, string> = {
    ...shared,
    TRUSTFOLD_DATA_DIR: dataDir,
    TRUSTFOLD_JWT_SECRET: secret,
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    // The receivers here listen on 127.0.0.1 over http.
    TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS: 'true',
    TRUSTFOLD_SSF_PUSH_TIMEOUT_MS: '500',
    TRUSTFOLD_SSF_RETRY_BASE_MS: '50',
    TRUSTFOLD_SSF_RETRY_MAX_MS: '200',
  };
  const envA: Record<string, string> = { ...common, PORT: String(portA), TRUSTFOLD_SSF_ISSUER: issuerA, KAFKA_CLIENT_ID: uniqueName('ssfd-a'), TRUSTFOLD_TOPIC_SSF_STREAMS: `${uniqueName('ssfd')}.streams-a` };
  const token = async (tenant: string, scopes: string[]): Promise<string> => `Bearer ${await mintToken({ sub: `${tenant}-client`, tenant, scopes }, secret)}`;
  const acme = await token('acme', ['ssf:manage', 'events:write']);
  const call = async (issuer: string, method: string, path: string, body?: unknown, authorization = acme): Promise<Response> =>
    fetch(`${issuer}${path}`, { method, headers: { authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const metricsOf = async (issuer: string): Promise<string> => (await fetch(`${issuer}/metrics`)).text();
  const metric = (text: string, line: RegExp): number => Number(new RegExp(`^${line.source} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

  // The push receiver: invalid_key, then 503, then too slow, then 202; it refuses S-2's SETs as invalid_request.
  let step = 0;
  const push = await scriptedReceiver([
    (r, res) => {
      if (r.session !== 'S-2') return false;
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_request', description: 'not for this receiver' }));
      return true;
    },
    (_r, res) => {
      step++;
      if (step === 1) res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_key', description: 'key not yet known' }));
      else if (step === 2) res.writeHead(503).end();
      else if (step === 3) setTimeout(() => res.writeHead(202).end(), 1500);
      else return false;
      return true;
    },
  ]);
  const control = await scriptedReceiver([]);

  const systemA = await startSystem({ config: configFrom(envA), roles: new Set(['ingest', 'projector', 'ssf']), brokers: broker.brokers, logger: createLogger('ssfd-a', 'silent'), env: envA });
  let systemB: System | undefined;
  const kafka = createKafka(broker.brokers, 'ssfd-view');
  const view = await createTrustView({ kafka, topic: shared['TRUSTFOLD_TOPIC_SESSION_TRUST'] ?? '' });
  try {
    const created = async (issuer: string, body: unknown, authorization = acme): Promise<string> => {
      const r = await call(issuer, 'POST', '/v1/ssf/streams', body, authorization);
      assert.equal(r.status, 201, await r.clone().text());
      return ((await r.json()) as { stream_id: string }).stream_id;
    };
    await created(issuerA, { aud: 'pdp-push', delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: push.url }, events_requested: [EVENT_TYPES.riskLevelChange, EVENT_TYPES.sessionRevoked] });
    const pollId = await created(issuerA, { aud: 'trustfold-beta', delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: [EVENT_TYPES.sessionRevoked] });

    const post = async (tenant: string, events: Record<string, unknown>[]): Promise<void> => {
      const r = await call(issuerA, 'POST', '/v1/events', events.map((e) => ({ type: 'signal', event_id: uuidv7(), tenant_id: tenant, occurred_at: new Date().toISOString(), ...e })), await token(tenant, ['events:write']));
      assert.equal(((await r.json()) as { accepted: number }).accepted, events.length);
    };
    const chain = [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-1' }];
    await post('acme', [{ kind: 'session_started', session_id: 'S-1', chain }, { kind: 'session_started', session_id: 'S-2', chain }]);
    await post('beta', [{ kind: 'session_started', session_id: 'S-1', chain }]);

    // B: beta's receiver polls A's poll stream with acme's token; its own transmitter has a 2 s inactivity_timeout.
    const envB: Record<string, string> = {
      ...common,
      PORT: String(portB),
      TRUSTFOLD_SSF_ISSUER: issuerB,
      KAFKA_CLIENT_ID: uniqueName('ssfd-b'),
      TRUSTFOLD_TOPIC_SSF_STREAMS: `${uniqueName('ssfd')}.streams-b`,
      TRUSTFOLD_DATA_DIR: join(dataDir, 'b'),
      TRUSTFOLD_SSF_INACTIVITY_TIMEOUT_S: '2',
      TRUSTFOLD_SSF_RECEIVERS: JSON.stringify([
        { id: 'tf-acme', name: 'trustfold-acme', tenant: 'beta', issuer: issuerA, audience: 'trustfold-beta', jwks_url: `${issuerA}/v1/ssf/jwks`, poll: { url: `${issuerA}/v1/ssf/poll/${pollId}`, authorization_header: acme } },
      ]),
    };
    systemB = await startSystem({ config: configFrom(envB), roles: new Set(['ssf']), brokers: broker.brokers, logger: createLogger('ssfd-b', 'silent'), env: envB });
    const beta = await token('beta', ['ssf:manage']);
    const quietId = await created(issuerB, { aud: 'quiet-pdp', delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: control.url } }, beta);

    await waitFor('sessions known', () => view.get('S-1', 'acme').known && view.get('S-2', 'acme').known && view.get('S-1', 'beta').known, 30_000);
    await post('acme', [{ kind: 'injection_detected', session_id: 'S-1', signal_id: 'SIG-1', severity: 'high', detector: 'prompt-guard' }]);
    await post('acme', [{ kind: 'injection_detected', session_id: 'S-2', signal_id: 'SIG-2', severity: 'high', detector: 'prompt-guard' }]);
    await post('acme', [{ kind: 'session_ended', session_id: 'S-1' }]);

    // Beta's S-1 ends through the poll: acme's session-revoked, verified and admitted by B.
    await waitFor('beta S-1 revoked via poll', () => {
      const r = view.get('S-1', 'beta');
      return r.known && r.state.ended;
    }, 30_000);
    await waitFor('acme S-1 session-revoked pushed', () => push.seen.some((r) => r.session === 'S-1' && r.eventType === EVENT_TYPES.sessionRevoked), 30_000);

    // Push: the first SET went through invalid_key, 503 and a timeout before its 202; nothing of S-1 was skipped; order kept.
    const s1 = push.seen.filter((r) => r.session === 'S-1');
    const firstSeen = new Map<string, Received>();
    for (const r of s1) if (!firstSeen.has(String(r.claims['jti']))) firstSeen.set(String(r.claims['jti']), r);
    const distinct = [...firstSeen.values()];
    assert.deepEqual(distinct.map((r) => r.eventType), [EVENT_TYPES.riskLevelChange, EVENT_TYPES.sessionRevoked]);
    const versions = distinct.map(versionOf);
    assert.deepEqual([...versions].sort((a, b) => a - b), versions, `versions in order: ${versions.join(',')}`);
    assert.ok(s1.length >= distinct.length + 3, 'the first SET was sent again after invalid_key, 503 and the timeout (same jti)');
    assert.equal(s1.filter((r) => r.claims['jti'] === distinct[0]?.claims['jti']).length, 4);
    // S-2's SET was refused with invalid_request: sent once, never again.
    const s2 = push.seen.filter((r) => r.session === 'S-2');
    assert.equal(s2.length, 1, 'a SET refused as invalid_request is not retried');

    // Inactivity: B paused its quiet stream, said so (pushed while paused), and says so again when re-enabled.
    await waitFor('stream-updated paused', () => control.seen.some((r) => r.eventType === EVENT_TYPES.streamUpdated), 15_000);
    const paused = control.seen.find((r) => r.eventType === EVENT_TYPES.streamUpdated);
    assert.deepEqual(paused?.claims['sub_id'], { format: 'opaque', id: quietId });
    const pausedEvent = (paused?.claims['events'] as Record<string, { status: string; reason: string }>)[EVENT_TYPES.streamUpdated];
    assert.equal(pausedEvent?.status, 'paused');
    assert.match(pausedEvent?.reason ?? '', /inactivity_timeout/);
    const status = (await (await call(issuerB, 'GET', `/v1/ssf/streams/status?stream_id=${quietId}`, undefined, beta)).json()) as { status: string };
    assert.equal(status.status, 'paused');
    assert.equal((await call(issuerB, 'POST', '/v1/ssf/streams/status', { stream_id: quietId, status: 'enabled' }, beta)).status, 200);
    await waitFor('stream-updated enabled', () => control.seen.some((r) => (r.claims['events'] as Record<string, { status?: string }>)[EVENT_TYPES.streamUpdated]?.status === 'enabled'), 15_000);
    assert.match(await metricsOf(issuerB), /trustfold_ssf_streams_inactive_total\{action="paused"\} 1/);

    // Metrics on A, as counted.
    let m = await metricsOf(issuerA);
    for (const deadline = Date.now() + 10_000; metric(m, /trustfold_ssf_push_total\{outcome="refused",status="400"\}/) !== 1 && Date.now() < deadline; m = await metricsOf(issuerA)) await new Promise((r) => setTimeout(r, 100));
    assert.equal(metric(m, /trustfold_ssf_push_total\{outcome="refused",status="400"\}/), 1, 'S-2 refused once');
    assert.equal(metric(m, /trustfold_ssf_push_total\{outcome="retry",status="400"\}/), 1, 'invalid_key: retried');
    assert.equal(metric(m, /trustfold_ssf_push_total\{outcome="retry",status="503"\}/), 1);
    assert.ok(metric(m, /trustfold_ssf_push_total\{outcome="retry",status="error"\}/) >= 1, 'the timeout');
    assert.equal(metric(m, /trustfold_ssf_push_retries_total/), metric(m, /trustfold_ssf_push_total\{outcome="retry",status="400"\}/) + metric(m, /trustfold_ssf_push_total\{outcome="retry",status="503"\}/) + metric(m, /trustfold_ssf_push_total\{outcome="retry",status="error"\}/));
    const delivered = metric(m, /trustfold_ssf_push_total\{outcome="delivered",status="202"\}/);
    assert.ok(delivered >= 2);
    assert.equal(metric(m, /trustfold_ssf_delivery_lag_seconds_count\{method="push"\}/), delivered, 'one lag observation per delivered push');
    assert.ok(metric(m, /trustfold_ssf_poll_served_total/) >= 1);
    assert.ok(metric(m, /trustfold_ssf_poll_settled_total\{outcome="acked"\}/) >= 1);
    assert.ok(metric(m, /trustfold_ssf_delivery_lag_seconds_count\{method="poll"\}/) >= 1);
    const signedRisk = metric(m, /trustfold_ssf_sets_signed_total\{event_type="https:\/\/schemas\.openid\.net\/secevent\/caep\/event-type\/risk-level-change"\}/);
    assert.equal(signedRisk, 2, 'S-1 and S-2 on the push stream (the poll stream asked for session-revoked only)');
    assert.match(await metricsOf(issuerB), /trustfold_ssf_received_total\{receiver="tf-acme",delivery="poll",outcome="applied"\} 1/);

    // Independent check of what was really pushed.
    if (SSF_VERIFIER_SKIP === false) {
      const out = await goVerify(`${issuerA}/.well-known/ssf-configuration`, issuerA, distinct.map((r, i) => ({ name: `pushed-${i}`, token: r.token, audience: 'pdp-push', require_txn: true })));
      assert.deepEqual(out.results.map((r) => [r.name, r.ok, r.error]), distinct.map((_r, i) => [`pushed-${i}`, true, undefined]));
    }
  } finally {
    await systemB?.close();
    await view.close();
    // Both systems and this test share one process and one fetch connection pool: a keep-alive
    // connection to A from it (not a request in flight) otherwise holds A's close for fastify's
    // 72 s keepAliveTimeout.
    systemA.app.server.closeAllConnections();
    await systemA.close();
    for (const s of [push.server, control.server]) {
      s.closeAllConnections();
      s.close();
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
