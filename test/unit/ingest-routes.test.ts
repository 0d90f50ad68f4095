// Every status code of the ingest and freeze routes, through app.inject(),
// with a fake sink (no Kafka here; test/integration has the real one). One
// file over 400 lines: one app and one fake sink for every route's table of cases.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { ActiveFreeze } from '../../schemas/events.ts';
import { buildIngestApp } from '../../services/ingest/app.ts';
import type { EventSink, OutboundRecord } from '../../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { TrustfoldError } from '../../services/lib/errors.ts';
import { EVENT_KIND_SCOPES } from '../../services/lib/auth.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const SECRET = 'unit-test-secret-of-at-least-32-characters';
const topics = { decisions: 'd', signals: 's', sessionTrust: 't', deadLetter: 'dl' };
const codec = createCodec();
const ALL = ['events:write', 'freeze:write', 'freeze:read'];

type FakeSink = EventSink & { sent: OutboundRecord[]; fail?: TrustfoldError | undefined };
const fakeSink = (): FakeSink => {
  const sink: FakeSink = {
    sent: [],
    send: async (records) => {
      if (sink.fail) throw sink.fail;
      sink.sent.push(...records);
    },
    ready: async () => sink.fail === undefined,
    close: async () => undefined,
  };
  return sink;
};

/** After every fixture's time, inside the 30-day horizon. */
const NOW = '2026-06-09T19:00:00.000Z';

const setup = async (opts: { freezes?: ActiveFreeze[]; maxEvents?: number; maxBody?: number } = {}) => {
  const sink = fakeSink();
  const registry = new Registry();
  const asked: string[] = [];
  const app = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry,
    sink,
    topics,
    activeFreezes: async (tenant) => {
      asked.push(tenant);
      return tenant === 'acme' ? (opts.freezes ?? []) : [];
    },
    limits: { maxBodyBytes: opts.maxBody ?? 256 * 1024, maxEventsPerRequest: opts.maxEvents ?? 100, produceTimeoutMs: 1_000 },
    clock: () => new Date(NOW),
  });
  return { app, sink, registry, asked };
};

/** An operator token (tenant "*") carries tenants:all, as the auth policy requires. */
const token = (o: { sub?: string; tenant?: string; scopes?: string[]; ttlSeconds?: number } = {}) =>
  mintToken(
    { sub: o.sub ?? 'gw-1', tenant: o.tenant ?? 'acme', scopes: [...(o.scopes ?? ALL), ...(o.tenant === '*' ? ['tenants:all'] : [])], ttlSeconds: o.ttlSeconds ?? 600 },
    SECRET,
  );

const auth = async (o?: Parameters<typeof token>[0]) => ({ authorization: `Bearer ${await token(o)}` });
const decision = (n: number, extra: Record<string, unknown> = {}) => ({
  ...decisionFixture,
  event_id: `01976d2a-9e1b-7c3a-8d4e-${String(n).padStart(12, '0')}`,
  ...extra,
});
/** The fixture's actor field of a SOC kind, set to the caller. */
const actorOf = (kind: string, actors: Record<string, string>): Record<string, string> => {
  const field = ({ trust_set: 'set_by', change_freeze_raised: 'raised_by', change_freeze_lifted: 'lifted_by' } as Record<string, string>)[kind];
  return field === undefined ? {} : { [field]: actors[field] ?? '' };
};
const decoded = (r: OutboundRecord) => {
  const d = codec.decodeEvent(r.value);
  assert.ok(d.ok);
  return d.value;
};

describe('POST /v1/events', () => {
  test('202: valid events go to Kafka stamped with the caller; bad ones are listed by index', async () => {
    const { app, sink } = await setup();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: await auth(),
      payload: [decision(1), { ...decision(2), tenant_id: 'globex' }, { type: 'decision', event_id: 'nope' }, signalFixtures.injection_detected],
    });
    assert.equal(res.statusCode, 202);
    const body = res.json();
    assert.equal(body.accepted, 2);
    assert.equal(body.duplicates, 0);
    assert.deepEqual(body.rejected.map((r: { index: number }) => r.index), [1, 2]);
    assert.equal(body.rejected[0].event_id, decision(2).event_id);
    assert.deepEqual(body.rejected[0].errors[0].path, 'tenant_id');
    assert.ok(body.rejected[1].errors.some((e: { path: string }) => e.path === 'event_id'));
    assert.equal(sink.sent.length, 2);
    assert.deepEqual(sink.sent.map((r) => r.topic), ['d', 's']);
    const first = decoded(sink.sent[0]!);
    assert.equal(first.event_id, decision(1).event_id);
    assert.equal(first.emitted_by, 'gw-1');
    assert.equal(sink.sent[0]!.key, JSON.stringify(['acme', 'session', 'S-9']));
    assert.equal(sink.sent[0]!.headers, undefined, 'no per-message headers: the Avro fingerprint names the type');
  });

  test('emitted_by is the token subject: absent is stamped, the sub itself passes, another value is rejected naming the field', async () => {
    const { app, sink, registry } = await setup();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: await auth({ sub: 'pdp-7' }),
      payload: [decision(1), decision(2, { emitted_by: 'pdp-7' }), decision(3, { emitted_by: 'someone-else' })],
    });
    assert.equal(res.statusCode, 202);
    assert.equal(res.json().accepted, 2);
    assert.deepEqual(res.json().rejected.map((r: { index: number; errors: { path: string }[] }) => [r.index, r.errors[0]?.path]), [[2, 'emitted_by']]);
    assert.deepEqual(sink.sent.map((r) => decoded(r).emitted_by), ['pdp-7', 'pdp-7']);
    assert.match(await registry.metrics(), /trustfold_ingest_events_rejected_total\{reason="actor_mismatch"\} 1/);
  });

  test('202: NDJSON body', async () => {
    const { app, sink } = await setup();
    const payload = [decision(1), decision(2)].map((e) => JSON.stringify(e)).join('\n') + '\n';
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...(await auth()), 'content-type': 'application/x-ndjson' }, payload });
    assert.equal(res.statusCode, 202);
    assert.equal(res.json().accepted, 2);
    assert.equal(sink.sent.length, 2);
  });

  test('duplicates: within a request and recently acked ones are counted, not produced again', async () => {
    const { app, sink, registry } = await setup();
    const headers = await auth();
    const r1 = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [decision(1), decision(1), decision(2)] });
    assert.deepEqual(r1.json(), { accepted: 2, duplicates: 1, rejected: [] });
    const r2 = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [decision(2), decision(3)] });
    assert.deepEqual(r2.json(), { accepted: 1, duplicates: 1, rejected: [] });
    assert.deepEqual(sink.sent.map((r) => decoded(r).event_id), [decision(1), decision(2), decision(3)].map((e) => e.event_id));
    const metrics = await registry.metrics();
    assert.match(metrics, /trustfold_ingest_events_duplicate_total\{where="request"\} 1/);
    assert.match(metrics, /trustfold_ingest_events_duplicate_total\{where="recent"\} 1/);
    assert.match(metrics, /trustfold_ingest_events_accepted_total\{kind="decision"\} 3/);
  });

  test('each kind needs its scope: loosening signals need trust:write or freeze:write, and a refusal names the scope', async () => {
    const { app, sink, registry } = await setup();
    const kinds = Object.entries(signalFixtures).map(([kind, e]) => ({ kind, event: e as Record<string, unknown> }));
    const soc = { set_by: 'gw-1', raised_by: 'gw-1', lifted_by: 'gw-1' };
    const payload: Record<string, unknown>[] = [decision(1), ...kinds.map(({ kind, event }) => ({ ...event, ...actorOf(kind, soc) }))];
    const gateway = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth({ scopes: ['events:write'] }), payload });
    const body = gateway.json();
    const refused = body.rejected.map((r: { index: number; errors: { path: string; message: string }[] }) => ({ kind: payload[r.index]?.['kind'], path: r.errors[0]?.path, message: r.errors[0]?.message }));
    const needSoc = Object.entries(EVENT_KIND_SCOPES).filter(([, s]) => s !== 'events:write').map(([k]) => k).sort();
    assert.deepEqual(refused.map((r: { kind: string }) => r.kind).sort(), needSoc);
    for (const r of refused) {
      assert.equal(r.path, 'kind');
      assert.match(r.message, new RegExp(`need scope ${EVENT_KIND_SCOPES[r.kind as keyof typeof EVENT_KIND_SCOPES]}`));
    }
    assert.equal(body.accepted, payload.length - needSoc.length);
    assert.match(await registry.metrics(), new RegExp(`trustfold_ingest_events_rejected_total\\{reason="missing_scope"\\} ${needSoc.length}`));
    // A SOC token with trust:write and freeze:write (and no events:write) posts exactly those kinds.
    const socToken = await auth({ scopes: ['trust:write', 'freeze:write'] });
    const socRes = await app.inject({ method: 'POST', url: '/v1/events', headers: socToken, payload });
    assert.equal(socRes.json().accepted, needSoc.length);
    assert.equal(socRes.json().rejected.length, payload.length - needSoc.length);
    assert.equal(sink.sent.length, payload.length);
  });

  test('actor fields are the token sub: absent is stamped, another value is refused naming the field', async () => {
    const { app, sink } = await setup();
    const headers = await auth({ sub: 'soc-7', scopes: ['trust:write', 'freeze:write', 'events:write'] });
    const { set_by: _s, ...trustSet } = signalFixtures.trust_set;
    const payload = [trustSet, signalFixtures.trust_set, { ...signalFixtures.change_freeze_lifted, lifted_by: 'soc-7' }, { ...signalFixtures.change_freeze_raised, raised_by: 'mallory' }];
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers, payload });
    assert.deepEqual(
      res.json().rejected.map((r: { index: number; errors: { path: string }[] }) => [r.index, r.errors.map((e) => e.path)]),
      [[1, ['set_by']], [3, ['raised_by']]],
    );
    const stored = sink.sent.map((r) => decoded(r));
    assert.equal(stored.length, 2);
    assert.ok(stored[0]?.type === 'signal' && stored[0].kind === 'trust_set' && stored[0].set_by === 'soc-7');
    assert.ok(stored[1]?.type === 'signal' && stored[1].kind === 'change_freeze_lifted' && stored[1].lifted_by === 'soc-7');
  });

  test('occurred_at is bounded: 60 s ahead and 30 days old at most, refusals name occurred_at', async () => {
    const { app, sink, registry } = await setup();
    const at = (ms: number) => new Date(Date.parse(NOW) + ms).toISOString();
    const payload = [
      decision(1, { occurred_at: '2099-01-01T00:00:00.000Z' }),
      decision(2, { occurred_at: at(61_000) }),
      decision(3, { occurred_at: at(59_000) }),
      decision(4, { occurred_at: at(-29 * 86_400_000) }),
      decision(5, { occurred_at: at(-31 * 86_400_000) }),
      decision(6, { occurred_at: '1970-01-01T00:00:00.000Z' }),
    ];
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth(), payload });
    const rejected = res.json().rejected as { index: number; errors: { path: string; message: string }[] }[];
    assert.deepEqual(rejected.map((r) => r.index), [0, 1, 4, 5]);
    assert.ok(rejected.every((r) => r.errors[0]?.path === 'occurred_at'));
    assert.match(rejected[0]?.errors[0]?.message ?? '', /ahead of the server clock.*TRUSTFOLD_MAX_FUTURE_SKEW_MS/);
    assert.match(rejected[2]?.errors[0]?.message ?? '', /old.*TRUSTFOLD_MAX_EVENT_AGE_MS/);
    assert.equal(sink.sent.length, 2);
    assert.match(await registry.metrics(), /trustfold_ingest_events_rejected_total\{reason="occurred_at_out_of_bounds"\} 4/);
  });

  test('the duplicate cache is keyed by (tenant, event_id): another tenant reusing an id is not a duplicate', async () => {
    const { app, sink } = await setup();
    const first = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth({ tenant: 'globex' }), payload: [decision(1, { tenant_id: 'globex' })] });
    assert.equal(first.json().accepted, 1);
    const acme = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth(), payload: [decision(1)] });
    assert.deepEqual(acme.json(), { accepted: 1, duplicates: 0, rejected: [] });
    assert.deepEqual(sink.sent.map((r) => decoded(r).tenant_id), ['globex', 'acme']);
  });

  test('the same id with other content is a conflict, rejected naming event_id, never counted as a duplicate', async () => {
    const { app, sink, registry } = await setup();
    const headers = await auth();
    await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [decision(1)] });
    const forged = { ...decision(1), decision: { ...decisionFixture.decision, effect: 'allow' } };
    const later = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [forged] });
    assert.equal(later.json().duplicates, 0);
    assert.equal(later.json().rejected[0]?.errors[0]?.path, 'event_id');
    assert.match(later.json().rejected[0]?.errors[0]?.message, /different content/);
    const inOne = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [decision(2), { ...decision(2), session_id: 'S-other' }] });
    assert.deepEqual([inOne.json().accepted, inOne.json().duplicates, inOne.json().rejected[0]?.index], [1, 0, 1]);
    assert.equal(sink.sent.length, 2);
    assert.match(await registry.metrics(), /trustfold_ingest_events_rejected_total\{reason="id_conflict"\} 2/);
  });

  test('401 before the body is read: no token with malformed JSON, or with a body over the limit', async () => {
    const { app } = await setup({ maxBody: 4_096 });
    const malformed = await app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'application/json' }, payload: '[{"type":' });
    assert.equal(malformed.statusCode, 401);
    const big = await app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'application/json' }, payload: `[${'1,'.repeat(10_000)}1]` });
    assert.equal(big.statusCode, 401);
    const freeze = await app.inject({ method: 'POST', url: '/v1/freezes', headers: { 'content-type': 'application/json' }, payload: '{' });
    assert.equal(freeze.statusCode, 401);
  });

  test('400, not 500: 20 000 nested brackets in JSON and in NDJSON', async () => {
    const { app } = await setup({ maxBody: 256 * 1024 });
    const headers = await auth();
    const deep = '['.repeat(20_000);
    for (const [type, payload] of [['application/json', deep], ['application/x-ndjson', `${JSON.stringify(decision(1))}\n${deep}`], ['application/json', `${deep}${']'.repeat(20_000)}`]] as const) {
      const res = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...headers, 'content-type': type }, payload });
      assert.ok(res.statusCode === 400 || (res.statusCode === 202 && res.json().accepted === 0), `${type}: ${res.statusCode} ${res.body.slice(0, 200)}`);
    }
  });

  test('an operator token (tenant "*") may write any tenant', async () => {
    const { app, sink } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth({ tenant: '*' }), payload: [decision(1, { tenant_id: 'globex' }), decision(2)] });
    assert.deepEqual(res.json(), { accepted: 2, duplicates: 0, rejected: [] });
    assert.deepEqual(sink.sent.map((r) => decoded(r).tenant_id), ['globex', 'acme']);
  });

  test('a rejected-only batch produces nothing', async () => {
    const { app, sink, registry } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth(), payload: [{ ...decision(1), tenant_id: 'globex' }] });
    assert.equal(res.statusCode, 202);
    assert.equal(res.json().accepted, 0);
    assert.equal(sink.sent.length, 0);
    assert.match(await registry.metrics(), /trustfold_ingest_events_rejected_total\{reason="tenant_mismatch"\} 1/);
  });

  test('400: malformed JSON names line and column, and nothing is produced', async () => {
    const { app, sink } = await setup();
    const payload = `[\n${JSON.stringify(decision(1))},\n{"type": "decision",, }\n]`;
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...(await auth()), 'content-type': 'application/json' }, payload });
    assert.equal(res.statusCode, 400);
    const body = res.json();
    assert.equal(body.error.code, 'bad_request');
    assert.match(body.error.message, /line 3, column 21/);
    assert.equal(body.error.errors[0].path, 'line 3, column 21');
    assert.equal(sink.sent.length, 0);
  });

  test('400: a malformed NDJSON line is named and refuses the whole request', async () => {
    const { app, sink } = await setup();
    const payload = `${JSON.stringify(decision(1))}\n${JSON.stringify(decision(2))}\n{"type":\n`;
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...(await auth()), 'content-type': 'application/x-ndjson' }, payload });
    assert.equal(res.statusCode, 400);
    assert.match(res.json().error.message, /line 3, column 9/);
    assert.equal(sink.sent.length, 0);
  });

  test('400: a JSON scalar is not a batch', async () => {
    const { app } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...(await auth()), 'content-type': 'application/json' }, payload: '"hello"' });
    assert.equal(res.statusCode, 400);
    assert.match(res.json().error.message, /expected a JSON array/);
  });

  test('401: no token, a bad signature, an expired token — each with a JSON body', async () => {
    const { app, sink } = await setup();
    const none = await app.inject({ method: 'POST', url: '/v1/events', payload: [decision(1)] });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().error.code, 'unauthorized');
    const forged = await mintToken({ sub: 'x', tenant: 'acme', scopes: ALL }, 'another-secret-of-at-least-32-characters!!');
    const bad = await app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${forged}` }, payload: [decision(1)] });
    assert.equal(bad.statusCode, 401);
    assert.match(bad.json().error.message, /signature/);
    const expired = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth({ ttlSeconds: -10 }), payload: [decision(1)] });
    assert.equal(expired.statusCode, 401);
    assert.match(expired.json().error.message, /expired/);
    assert.equal(sink.sent.length, 0);
  });

  test('403: a token without events:write', async () => {
    const { app, sink } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth({ scopes: ['freeze:read'] }), payload: [decision(1)] });
    assert.equal(res.statusCode, 403);
    assert.match(res.json().error.message, /events:write/);
    assert.equal(sink.sent.length, 0);
  });

  test('413: a body over the byte limit', async () => {
    const { app, sink } = await setup({ maxBody: 4_096 });
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth(), payload: Array.from({ length: 10 }, (_, i) => decision(i)) });
    assert.equal(res.statusCode, 413);
    assert.equal(res.json().error.code, 'payload_too_large');
    assert.match(res.json().error.message, /4096 bytes/);
    assert.equal(sink.sent.length, 0);
  });

  test('413: more events than allowed per request', async () => {
    const { app, sink } = await setup({ maxEvents: 2 });
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: await auth(), payload: [decision(1), decision(2), decision(3)] });
    assert.equal(res.statusCode, 413);
    assert.match(res.json().error.message, /3 events in one request; the limit is 2/);
    assert.equal(sink.sent.length, 0);
  });

  test('415: an unsupported media type', async () => {
    const { app } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...(await auth()), 'content-type': 'text/csv' }, payload: 'a,b' });
    assert.equal(res.statusCode, 415);
    assert.equal(res.json().error.code, 'unsupported_media_type');
  });

  test('503 + Retry-After when Kafka does not acknowledge; nothing reported accepted or remembered', async () => {
    const { app, sink, registry } = await setup();
    const headers = await auth();
    sink.fail = new TrustfoldError('kafka_timeout', 'Kafka did not acknowledge within 1000 ms', true);
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [decision(1), decision(2)] });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '2');
    assert.equal(res.json().error.code, 'kafka_timeout');
    assert.doesNotMatch(res.body, /within 1000 ms/, "Kafka's own text stays in the log");
    assert.equal('accepted' in res.json(), false);
    assert.match(await registry.metrics(), /trustfold_ingest_events_rejected_total\{reason="unavailable"\} 2/);
    // The retry is produced, not waved through as a duplicate of the failed attempt.
    sink.fail = undefined;
    const retry = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: [decision(1), decision(2)] });
    assert.deepEqual(retry.json(), { accepted: 2, duplicates: 0, rejected: [] });
    assert.equal(sink.sent.length, 2);
  });
});

describe('freezes', () => {
  const freeze: ActiveFreeze = { freeze_id: 'INC-77', scope: { resource_prefix: 'repo:' }, reason: 'incident' };

  test('201: raising emits change_freeze_raised with the caller as raiser', async () => {
    const { app, sink } = await setup();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/freezes',
      headers: await auth({ sub: 'soc-oncall' }),
      payload: { scope: { resource_prefix: 'repo:', actions: ['delete_file'] }, reason: 'INC-77', ticket: 'INC-77', expires_at: '2026-06-10T00:00:00+02:00' },
    });
    assert.equal(res.statusCode, 201);
    const { freeze_id, event_id } = res.json();
    assert.match(freeze_id, /^frz-/);
    assert.equal(res.headers.location, `/v1/freezes/${freeze_id}`);
    assert.equal(sink.sent.length, 1);
    assert.equal(sink.sent[0]!.topic, 's');
    const e = decoded(sink.sent[0]!);
    assert.ok(e.type === 'signal' && e.kind === 'change_freeze_raised');
    assert.equal(e.event_id, event_id);
    assert.equal(e.freeze_id, freeze_id);
    assert.equal(e.raised_by, 'soc-oncall');
    assert.equal(e.emitted_by, 'soc-oncall');
    assert.equal(e.tenant_id, 'acme');
    assert.equal(e.expires_at, '2026-06-09T22:00:00.000Z');
    assert.deepEqual(e.scope, { resource_prefix: 'repo:', actions: ['delete_file'] });
  });

  test('400: invalid body, expiry in the past, operator without a tenant', async () => {
    const { app, sink } = await setup();
    const bad = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth(), payload: { scope: {}, reason: '' } });
    assert.equal(bad.statusCode, 400);
    assert.ok(bad.json().error.errors.some((e: { path: string }) => e.path === 'body.reason'));
    const past = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth(), payload: { scope: {}, reason: 'x', expires_at: '2020-01-01T00:00:00Z' } });
    assert.equal(past.statusCode, 400);
    assert.match(past.json().error.message, /past/);
    const op = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth({ tenant: '*' }), payload: { scope: {}, reason: 'x' } });
    assert.equal(op.statusCode, 400);
    assert.match(op.json().error.message, /must name the tenant/);
    assert.equal(sink.sent.length, 0);
  });

  test('403: raising for another tenant, or without freeze:write', async () => {
    const { app, sink } = await setup();
    const other = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth(), payload: { tenant_id: 'globex', scope: {}, reason: 'x' } });
    assert.equal(other.statusCode, 403);
    const noScope = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth({ scopes: ['freeze:read'] }), payload: { scope: {}, reason: 'x' } });
    assert.equal(noScope.statusCode, 403);
    assert.match(noScope.json().error.message, /freeze:write/);
    assert.equal(sink.sent.length, 0);
  });

  test('an operator names the tenant it freezes', async () => {
    const { app, sink } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth({ tenant: '*' }), payload: { tenant_id: 'globex', freeze_id: 'INC-9', scope: {}, reason: 'x' } });
    assert.equal(res.statusCode, 201);
    assert.equal(res.json().freeze_id, 'INC-9');
    assert.equal(decoded(sink.sent[0]!).tenant_id, 'globex');
    // Or with ?tenant=, as the other freeze routes (and the demo) name it.
    const byQuery = await app.inject({ method: 'POST', url: '/v1/freezes?tenant=acme', headers: await auth({ tenant: '*' }), payload: { freeze_id: 'INC-77', scope: {}, reason: 'x' } });
    assert.equal(byQuery.statusCode, 201, byQuery.body);
    assert.equal(decoded(sink.sent[1]!).tenant_id, 'acme');
    const both = await app.inject({ method: 'POST', url: '/v1/freezes?tenant=acme', headers: await auth({ tenant: '*' }), payload: { tenant_id: 'globex', scope: {}, reason: 'x' } });
    assert.equal(both.statusCode, 400);
    assert.equal(both.json().error.errors[0].path, 'tenant_id');
    assert.equal(sink.sent.length, 2);
  });

  test('503 + Retry-After when the freeze cannot be stored', async () => {
    const { app, sink } = await setup();
    sink.fail = new TrustfoldError('kafka_unavailable', 'broker down', true);
    const res = await app.inject({ method: 'POST', url: '/v1/freezes', headers: await auth(), payload: { scope: {}, reason: 'x' } });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '2');
  });

  test('GET lists the projected active freezes of the caller tenant only', async () => {
    const { app, asked } = await setup({ freezes: [freeze] });
    const res = await app.inject({ method: 'GET', url: '/v1/freezes', headers: await auth() });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { tenant_id: 'acme', freezes: [freeze] });
    const other = await app.inject({ method: 'GET', url: '/v1/freezes?tenant=globex', headers: await auth() });
    assert.equal(other.statusCode, 403);
    const op = await app.inject({ method: 'GET', url: '/v1/freezes?tenant=globex', headers: await auth({ tenant: '*' }) });
    assert.deepEqual(op.json(), { tenant_id: 'globex', freezes: [] });
    assert.deepEqual(asked, ['acme', 'globex']);
    const noScope = await app.inject({ method: 'GET', url: '/v1/freezes', headers: await auth({ scopes: ['events:write'] }) });
    assert.equal(noScope.statusCode, 403);
  });

  test('DELETE: 404 for a freeze that is not active, 200 + change_freeze_lifted for one that is', async () => {
    const { app, sink } = await setup({ freezes: [freeze] });
    const headers = await auth({ sub: 'soc-2' });
    const unknown = await app.inject({ method: 'DELETE', url: '/v1/freezes/INC-1', headers });
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().error.code, 'not_found');
    assert.equal(sink.sent.length, 0);
    const lifted = await app.inject({ method: 'DELETE', url: '/v1/freezes/INC-77?reason=resolved', headers });
    assert.equal(lifted.statusCode, 200);
    assert.equal(lifted.json().freeze_id, 'INC-77');
    const e = decoded(sink.sent[0]!);
    assert.ok(e.type === 'signal' && e.kind === 'change_freeze_lifted');
    assert.equal(e.lifted_by, 'soc-2');
    assert.equal(e.reason, 'resolved');
  });

  test('DELETE right after a raise on this instance is not refused while the projector catches up', async () => {
    const { app, sink } = await setup();
    const headers = await auth();
    const raised = await app.inject({ method: 'POST', url: '/v1/freezes', headers, payload: { scope: {}, reason: 'x' } });
    const id = raised.json().freeze_id as string;
    const lifted = await app.inject({ method: 'DELETE', url: `/v1/freezes/${id}`, headers });
    assert.equal(lifted.statusCode, 200);
    const again = await app.inject({ method: 'DELETE', url: `/v1/freezes/${id}`, headers });
    assert.equal(again.statusCode, 404);
    assert.equal(sink.sent.length, 2);
  });
});

describe('operational endpoints', () => {
  test('/readyz reflects Kafka, /metrics exposes ingest counters, /docs documents the routes', async () => {
    const { app, sink } = await setup();
    assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    sink.fail = new TrustfoldError('kafka_unavailable', 'down', true);
    const notReady = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(notReady.statusCode, 503);
    assert.match(notReady.body, /Kafka cluster unreachable/);
    assert.equal(notReady.headers['x-content-type-options'], 'nosniff');
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /trustfold_ingest_produce_duration_seconds/);
    const docs = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    assert.ok(docs.paths['/v1/events'].post);
    assert.ok(docs.paths['/v1/freezes'].post.requestBody);
    assert.ok(docs.paths['/v1/freezes/{id}'].delete);
  });
});
