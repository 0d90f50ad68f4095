// Transmitter parts without Kafka: which push endpoints are refused (SSRF),
// at creation (a 400 naming the field) and at send time (DNS rebinding);
// the push transport's timeout; inactivity_timeout; what a paused or
// disabled stream still sends (its stream-updated event); the settings.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp } from '../../services/lib/http.ts';
import { EVENT_TYPES } from '../../services/ssf/caep.ts';
import { parseSsfConfig } from '../../services/ssf/config.ts';
import { deliverable } from '../../services/ssf/delivery.ts';
import { createPushTransport, endpointProblem, forbiddenRange, type Resolve } from '../../services/ssf/endpoint.ts';
import { createOutbox, type OutboxItem } from '../../services/ssf/outbox.ts';
import { ssfRoutes } from '../../services/ssf/routes.ts';
import { createMemoryStreamStore } from '../../services/ssf/store.ts';
import { createStream, type StreamDefaults } from '../../services/ssf/streams.ts';
import { inactiveStreams, type Transmitter } from '../../services/ssf/transmitter.ts';

const DNS: Record<string, string[]> = {
  'receiver.example': ['93.184.216.34'],
  'dual.example': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
  'rebind.example': ['93.184.216.34', '10.0.0.7'],
  'metadata.example': ['169.254.169.254'],
  'v6-loop.example': ['::1'],
};
const resolve: Resolve = async (host) => {
  const a = DNS[host];
  if (a === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return a;
};

test('forbidden address ranges, IPv4 and IPv6, including addresses carried inside IPv6', () => {
  const cases: [string, string | undefined][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fd12:3456::1', 'unique local (private)'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['[::1]', 'loopback'],
    ['172.32.0.1', undefined],
    ['8.8.8.8', undefined],
    ['93.184.216.34', undefined],
    ['2606:4700:4700::1111', undefined],
  ];
  for (const [ip, range] of cases) assert.equal(forbiddenRange(ip), range, ip);
});

test('endpoint_url: https to public addresses only, every resolved address checked, unless private endpoints are allowed', async () => {
  const strict = { allowPrivate: false, resolve };
  assert.equal(await endpointProblem('https://receiver.example/events', strict), undefined);
  assert.equal(await endpointProblem('https://dual.example/events', strict), undefined);
  assert.equal(await endpointProblem('https://93.184.216.34/events', strict), undefined);
  const refused: [string, RegExp][] = [
    ['http://receiver.example/events', /must be an https URL \(got http\)/],
    ['ftp://receiver.example/x', /https/],
    ['https://user:pw@receiver.example/events', /credentials/],
    ['https://127.0.0.1/events', /127\.0\.0\.1, a loopback address/],
    ['https://[::1]:8443/events', /::1, a loopback address/],
    ['https://[::ffff:169.254.169.254]/latest/meta-data', /link-local/],
    ['https://metadata.example/latest/meta-data', /169\.254\.169\.254, a link-local address/],
    ['https://rebind.example/events', /10\.0\.0\.7, a private address/],
    ['https://v6-loop.example/events', /loopback/],
    ['https://nowhere.example/events', /does not resolve \(ENOTFOUND\)/],
    ['not a url', /not a URL/],
  ];
  for (const [url, why] of refused) assert.match((await endpointProblem(url, strict)) ?? 'accepted', why, url);
  const dev = { allowPrivate: true, resolve };
  assert.equal(await endpointProblem('http://127.0.0.1:8080/events', dev), undefined);
  assert.match((await endpointProblem('https://user:pw@127.0.0.1/', dev)) ?? 'accepted', /credentials/, 'credentials in a URL are refused even in development');
});

const listen = async (handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> => {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  return { server, url: `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}/events` };
};

test('the push transport refuses forbidden addresses at send time (DNS rebinding) and gives up on a slow receiver', async () => {
  let reached = 0;
  const { server, url } = await listen((req, res) => {
    reached++;
    if (req.url === '/slow') return; // never answers
    req.resume();
    req.on('end', () => res.writeHead(202).end());
  });
  try {
    const port = new URL(url).port;
    // A name that resolved to a public address when the stream was created and to loopback now.
    const rebinding = createPushTransport({ allowPrivate: false, resolve: async () => ['127.0.0.1'] });
    await assert.rejects(rebinding(`https://rebind.example:${port}/events`, {}, 'x', 2000), /127\.0\.0\.1, a loopback address; refused/);
    const strict = createPushTransport({ allowPrivate: false, resolve });
    await assert.rejects(strict(url, {}, 'x', 2000), /refusing to push over http:/);
    await assert.rejects(strict(`https://127.0.0.1:${port}/events`, {}, 'x', 2000), /127\.0\.0\.1, a loopback address/);
    assert.equal(reached, 0, 'nothing reached the loopback receiver');

    const dev = createPushTransport({ allowPrivate: true });
    assert.deepEqual(await dev(url, { 'content-type': 'application/secevent+jwt' }, 'a.b.c', 2000), { status: 202, body: '' });
    const t0 = Date.now();
    await assert.rejects(dev(url.replace('/events', '/slow'), {}, 'x', 300), /no answer within 300 ms/);
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

const defaults: StreamDefaults = { issuer: 'https://tf.example', pollUrl: (id) => `https://tf.example/v1/ssf/poll/${id}`, minVerificationIntervalS: 30, inactivityTimeoutS: 600 };

test('management answers 400 naming delivery.endpoint_url for a refused push endpoint; each call naming a stream is activity', async () => {
  const secret = 's'.repeat(40);
  const store = createMemoryStreamStore();
  const touched: string[] = [];
  const opened: string[] = [];
  const transmitter: Transmitter = { open: async (s) => void opened.push(s.stream_id), delivery: () => undefined, touch: (id) => void touched.push(id), outstanding: () => 0, close: async () => {} };
  const app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(ssfRoutes({ issuer: 'https://tf.example', publicJwk: { kty: 'EC' }, store, transmitter, minVerificationIntervalS: 30, inactivityTimeoutS: 600, endpointPolicy: { allowPrivate: false, resolve } }));
  const authorization = `Bearer ${await mintToken({ sub: 'pdp', tenant: 'acme', scopes: ['ssf:manage'] }, secret)}`;
  const call = (method: 'POST' | 'PATCH' | 'PUT' | 'GET', url: string, payload?: unknown) => app.inject({ method, url, headers: { authorization }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });
  const push = (endpoint_url: string) => ({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url } });

  for (const bad of ['https://metadata.example/latest', 'http://receiver.example/events', 'https://10.0.0.1/e']) {
    const r = await call('POST', '/v1/ssf/streams', push(bad));
    assert.equal(r.statusCode, 400, bad);
    const body = r.json<{ error: { errors: { path: string; message: string }[] } }>();
    assert.equal(body.error.errors[0]?.path, 'delivery.endpoint_url', bad);
  }
  assert.deepEqual(opened, [], 'no refused stream was started');
  const ok = await call('POST', '/v1/ssf/streams', push('https://receiver.example/events'));
  assert.equal(ok.statusCode, 201);
  const id = ok.json<{ stream_id: string; inactivity_timeout: number }>().stream_id;
  assert.equal(ok.json<{ inactivity_timeout: number }>().inactivity_timeout, 600);
  for (const method of ['PATCH', 'PUT'] as const) {
    const r = await call(method, '/v1/ssf/streams', { stream_id: id, ...push('https://rebind.example/events') });
    assert.equal(r.statusCode, 400, method);
    assert.equal(r.json<{ error: { errors: { path: string }[] } }>().error.errors[0]?.path, 'delivery.endpoint_url');
  }
  assert.equal(store.get(id)?.delivery.endpoint_url, 'https://receiver.example/events', 'the refused change was not stored');
  touched.length = 0;
  assert.equal((await call('GET', `/v1/ssf/streams/status?stream_id=${id}`)).statusCode, 200);
  assert.equal((await call('GET', `/v1/ssf/streams?stream_id=${id}`)).statusCode, 200);
  assert.deepEqual(touched, [id, id]);
  await app.close();
});

test('inactivity: an enabled stream whose receiver did nothing for inactivity_timeout; paused streams and timeout 0 never', () => {
  const at = (id: string, o: Partial<ReturnType<typeof createStream>> = {}) => ({ ...createStream({}, { streamId: id, tenant: 'acme', defaultAud: 'pdp', now: 'n' }, defaults), ...o });
  const streams = [at('quiet', { inactivity_timeout: 10 }), at('busy', { inactivity_timeout: 10 }), at('paused', { inactivity_timeout: 10, status: 'paused' }), at('never', { inactivity_timeout: 0 })];
  const now = 1_000_000;
  const last = new Map([
    ['quiet', now - 10_000],
    ['busy', now - 9_999],
    ['paused', now - 60_000],
    ['never', now - 1e9],
  ]);
  assert.deepEqual(inactiveStreams(streams, last, now).map((s) => s.stream_id), ['quiet']);
});

test('a paused or disabled stream still sends the stream-updated event saying so, and a disabled one holds nothing else', () => {
  const item = (jti: string, eventType: string, source?: { partition: number; offset: bigint }): Omit<OutboxItem, 'source'> & { source?: { partition: number; offset: bigint } } => ({ jti, set: jti, eventType, ...(source !== undefined ? { source } : {}) });
  const box = createOutbox();
  assert.equal(box.add({ partition: 0, offset: 5n }, [item('t1', EVENT_TYPES.riskLevelChange)]), undefined);
  box.addFree(item('u1', EVENT_TYPES.streamUpdated));
  box.addFree(item('v1', EVENT_TYPES.verification));
  assert.deepEqual(deliverable(box.items(), 'enabled').map((i) => i.jti), ['t1', 'u1', 'v1']);
  assert.deepEqual(deliverable(box.items(), 'paused').map((i) => i.jti), ['u1']);
  assert.deepEqual(box.clear((i) => i.eventType === EVENT_TYPES.streamUpdated), [{ partition: 0, offset: 6n }]);
  assert.deepEqual(box.items().map((i) => i.jti), ['u1']);
  assert.deepEqual(deliverable(box.items(), 'disabled').map((i) => i.jti), ['u1']);
});

test('settings: private endpoints off by default; inactivity action, push timeout and backoff parsed with the field named', () => {
  const d = parseSsfConfig({});
  assert.ok(d.ok);
  assert.deepEqual([d.value.allowPrivateEndpoints, d.value.inactivityAction, d.value.inactivityTimeoutS, d.value.pushTimeoutMs, d.value.retryBaseMs, d.value.retryMaxMs], [false, 'pause', 86_400, 10_000, 250, 30_000]);
  const set = parseSsfConfig({ TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS: 'true', TRUSTFOLD_SSF_INACTIVITY_ACTION: 'disable', TRUSTFOLD_SSF_INACTIVITY_TIMEOUT_S: '0', TRUSTFOLD_SSF_PUSH_TIMEOUT_MS: '500' });
  assert.ok(set.ok);
  assert.deepEqual([set.value.allowPrivateEndpoints, set.value.inactivityAction, set.value.inactivityTimeoutS, set.value.pushTimeoutMs], [true, 'disable', 0, 500]);
  const bad = parseSsfConfig({ TRUSTFOLD_SSF_INACTIVITY_ACTION: 'delete' });
  assert.ok(!bad.ok && bad.error[0]?.path === 'TRUSTFOLD_SSF_INACTIVITY_ACTION');
  const poll = parseSsfConfig({ TRUSTFOLD_SSF_RECEIVERS: JSON.stringify([{ id: 'x', name: 'x', tenant: 't', issuer: 'i', audience: 'a', jwks_url: 'https://i/keys', poll: { url: 'not a url' } }]) });
  assert.ok(!poll.ok && poll.error[0]?.path === 'TRUSTFOLD_SSF_RECEIVERS[0].poll.url', JSON.stringify(poll));
});
