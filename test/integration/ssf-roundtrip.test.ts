// SSF end to end on a real broker, through the composed system (ingest +
// projector + ssf): streams created over the management API; an injection
// signal posted to /v1/events becomes a CAEP risk-level-change SET pushed to a
// test receiver (which first answers 503: retried) and pulled by a poller
// (acked, then gone), each verified with jose against the published JWKS;
// the acme transmitter's session-revoked, pushed to trustfold's own receiver
// for tenant beta, revokes beta's session as a TrustView sees it; and the
// streams survive a restart.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
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

let broker: TestKafka;
before(async () => {
  broker = await getTestKafka();
});
after(async () => {
  await broker.stop();
});

const readBody = async (req: IncomingMessage): Promise<string> => {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return body;
};

test('SSF: push with retry, poll with ack, our receiver revoking a session from our transmitter, streams kept across a restart', { timeout: 240_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-ssf-'));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const secret = 'ssf-test-secret-0123456789-abcdefghijklmnop';
  const env: Record<string, string> = {
    ...topicEnv(uniqueName('ssf'), broker.brokers, 2),
    TRUSTFOLD_TOPIC_SSF_STREAMS: `${uniqueName('ssf')}.streams`,
    KAFKA_CLIENT_ID: uniqueName('ssf-client'),
    PORT: String(port),
    HOST: '127.0.0.1',
    TRUSTFOLD_DATA_DIR: dataDir,
    TRUSTFOLD_JWT_SECRET: secret,
    TRUSTFOLD_SSF_ISSUER: issuer,
    // The test's receivers listen on 127.0.0.1 over http.
    TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS: 'true',
    LOG_LEVEL: 'silent',
    TRUSTFOLD_SSF_RECEIVERS: JSON.stringify([{ id: 'tf-acme', name: 'trustfold-acme', tenant: 'beta', issuer, audience: 'trustfold-beta', jwks_url: `${issuer}/v1/ssf/jwks` }]),
  };
  const start = (): Promise<System> =>
    startSystem({ config: configFrom(env), roles: new Set(['ingest', 'projector', 'ssf']), brokers: broker.brokers, logger: createLogger('ssf-test', 'silent'), env });

  // The push receiver: answers its first request 503, then 202.
  const pushed: string[] = [];
  let requests = 0;
  const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
    void readBody(req).then((body) => {
      requests++;
      if (requests === 1) {
        res.writeHead(503).end();
        return;
      }
      assert.equal(req.headers['content-type'], 'application/secevent+jwt');
      assert.equal(req.headers['authorization'], 'Bearer receiver-secret');
      pushed.push(body);
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const ra = receiver.address();
  const receiverUrl = `http://127.0.0.1:${typeof ra === 'object' && ra !== null ? ra.port : 0}/events`;

  let system = await start();
  const kafka = createKafka(broker.brokers, 'ssf-test-view');
  const view = await createTrustView({ kafka, topic: env['TRUSTFOLD_TOPIC_SESSION_TRUST'] ?? '' });
  try {
    const token = async (tenant: string, scopes: string[]): Promise<string> => `Bearer ${await mintToken({ sub: `${tenant}-client`, tenant, scopes }, secret)}`;
    const acme = await token('acme', ['ssf:manage', 'events:write']);
    const call = async (method: string, path: string, body?: unknown, authorization = acme): Promise<Response> =>
      fetch(`${issuer}${path}`, { method, headers: { authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

    const discovery = (await (await fetch(`${issuer}/.well-known/ssf-configuration`)).json()) as Record<string, unknown>;
    assert.deepEqual(discovery['delivery_methods_supported'], ['urn:ietf:rfc:8935', 'urn:ietf:rfc:8936']);
    const jwks = createRemoteJWKSet(new URL(String(discovery['jwks_uri'])));

    const created = async (body: unknown): Promise<Record<string, unknown>> => {
      const r = await call('POST', '/v1/ssf/streams', body);
      assert.equal(r.status, 201);
      return (await r.json()) as Record<string, unknown>;
    };
    const push = await created({ aud: 'pdp-push', delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: receiverUrl, authorization_header: 'Bearer receiver-secret' }, events_requested: [EVENT_TYPES.riskLevelChange, EVENT_TYPES.sessionRevoked] });
    assert.equal((push['delivery'] as Record<string, unknown>)['authorization_header'], undefined, 'the push secret is never read back');
    const poll = await created({ aud: 'pdp-poll', delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: [EVENT_TYPES.riskLevelChange] });
    const selfPush = await created({
      aud: 'trustfold-beta',
      events_requested: [EVENT_TYPES.sessionRevoked],
      delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${issuer}/v1/ssf/receivers/tf-acme`, authorization_header: await token('beta', ['ssf:receive']) },
    });
    // Another tenant does not see acme's streams.
    assert.equal((await call('GET', `/v1/ssf/streams?stream_id=${String(push['stream_id'])}`, undefined, await token('beta', ['ssf:manage']))).status, 404);

    const post = async (tenant: string, events: Record<string, unknown>[]): Promise<void> => {
      const r = await call('POST', '/v1/events', events.map((e) => ({ type: 'signal', event_id: uuidv7(), tenant_id: tenant, occurred_at: new Date().toISOString(), ...e })), await token(tenant, ['events:write']));
      const body = (await r.json()) as { accepted: number };
      assert.equal(body.accepted, events.length, JSON.stringify(body));
    };
    const chain = [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-17' }];
    await post('acme', [{ kind: 'session_started', session_id: 'S-1', chain }]);
    await post('beta', [{ kind: 'session_started', session_id: 'S-1', chain }]);
    await waitFor('sessions known', () => view.get('S-1', 'acme').known && view.get('S-1', 'beta').known, 60_000);
    await post('acme', [{ kind: 'injection_detected', session_id: 'S-1', signal_id: 'SIG-1', severity: 'high', detector: 'prompt-guard' }]);

    // Push: retried after the 503, then delivered and verifiable.
    await waitFor('a pushed SET', () => pushed.length >= 1, 60_000);
    assert.ok(requests >= 2);
    const { payload, protectedHeader } = await jwtVerify(pushed[0] ?? '', jwks, { issuer, audience: 'pdp-push', typ: 'secevent+jwt' });
    assert.equal(protectedHeader.alg, 'ES256');
    const risk = (payload['events'] as Record<string, Record<string, unknown>>)[EVENT_TYPES.riskLevelChange];
    assert.deepEqual([risk?.['current_level'], risk?.['previous_level'], risk?.['principal']], ['HIGH', 'LOW', 'SESSION']);
    assert.deepEqual((payload['sub_id'] as Record<string, unknown>)['session'], { format: 'opaque', id: 'S-1' });
    assert.equal(typeof payload['txn'], 'string');

    // Poll (RFC 8936): a long poll returns the SET; acked, it is not returned again.
    const pollPath = new URL(String((poll['delivery'] as Record<string, unknown>)['endpoint_url'])).pathname;
    const first = (await (await call('POST', pollPath, { maxEvents: 10, returnImmediately: false })).json()) as { sets: Record<string, string>; moreAvailable: boolean };
    const jtis = Object.keys(first.sets);
    assert.equal(jtis.length, 1);
    const polled = await jwtVerify(first.sets[jtis[0] ?? ''] ?? '', jwks, { issuer, audience: 'pdp-poll', typ: 'secevent+jwt' });
    assert.equal(polled.payload.jti, jtis[0]);
    const second = (await (await call('POST', pollPath, { ack: jtis, returnImmediately: true })).json()) as { sets: Record<string, string> };
    assert.deepEqual(second.sets, {});

    // Verification: once, then 429 within min_verification_interval.
    assert.equal((await call('POST', '/v1/ssf/streams/verify', { stream_id: push['stream_id'], state: 'v-1' })).status, 204);
    const again = await call('POST', '/v1/ssf/streams/verify', { stream_id: push['stream_id'] });
    assert.equal(again.status, 429);
    assert.ok(Number(again.headers.get('retry-after')) > 0);
    await waitFor('the verification event', () => pushed.some((s) => s.split('.')[1] !== undefined && Buffer.from(s.split('.')[1] ?? '', 'base64url').toString().includes('verification')), 30_000);

    // Our transmitter (acme) → our receiver (beta): session-revoked ends beta's S-1.
    await post('acme', [{ kind: 'session_ended', session_id: 'S-1' }]);
    await waitFor('beta S-1 revoked', () => {
      const r = view.get('S-1', 'beta');
      return r.known && r.state.tier === 'revoked' && r.state.ended;
    }, 60_000);
    const beta = view.get('S-1', 'beta');
    assert.ok(beta.known && beta.state.causes.some((c) => c.kind === 'session_ended'));
    assert.ok(pushed.some((s) => Buffer.from(s.split('.')[1] ?? '', 'base64url').toString().includes('session-revoked')), 'the push stream got session-revoked too');

    // Restart: the streams are read back from their topic.
    await system.close();
    system = await start();
    const listed = (await (await call('GET', '/v1/ssf/streams')).json()) as { stream_id: string }[];
    assert.deepEqual(listed.map((s) => s.stream_id).sort(), [push['stream_id'], poll['stream_id'], selfPush['stream_id']].map(String).sort());
    assert.equal((await call('DELETE', `/v1/ssf/streams?stream_id=${String(poll['stream_id'])}`)).status, 204);
    assert.equal((await call('GET', `/v1/ssf/streams?stream_id=${String(poll['stream_id'])}`)).status, 404);
  } finally {
    await view.close();
    await system.close();
    receiver.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
