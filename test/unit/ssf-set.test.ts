// SSF/CAEP pure parts: SET signing and verification, the trust → CAEP
// mapping, the CAEP → signal mapping, the outbox's commit positions, stream
// configuration operations, and the receiver's RFC 8935 answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, decodeProtectedHeader } from 'jose';
import { Registry } from 'prom-client';
import type { SessionTrust } from '../../schemas/events.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { configFrom } from '../../services/lib/config.ts';
import { buildBaseApp } from '../../services/lib/http.ts';
import type { EventSink, OutboundRecord } from '../../services/ingest/sink.ts';
import { createCodec } from '../../schemas/codec.ts';
import { EVENT_TYPES, eventsForTransition } from '../../services/ssf/caep.ts';
import { backoffMs, pushOutcomeOf } from '../../services/ssf/delivery.ts';
import { createOutbox } from '../../services/ssf/outbox.ts';
import { mapCaep, receiverRoutes, upstreamSchema } from '../../services/ssf/receiver.ts';
import { signSet, stableJti, verifySet, type SigningKey } from '../../services/ssf/set.ts';
import { addSubject, createStream, removeSubject, streamCovers, updateStream, type StreamDefaults } from '../../services/ssf/streams.ts';

const now = Date.parse('2026-12-01T10:00:00.000Z');
const trust = (o: Partial<SessionTrust> = {}): SessionTrust => ({
  session_id: 'S-9',
  tenant_id: 'acme',
  version: 1,
  tier: 'trusted',
  delegator: 'U-442',
  causes: [],
  revoked_roles: [],
  consent_revoked: false,
  freezes: [],
  ended: false,
  updated_at: '2026-12-01T10:00:00.000Z',
  caused_by: '01976d2a-0000-7000-8000-000000000001',
  ...o,
});
const injected = trust({
  version: 2,
  tier: 'restricted',
  caused_by: '01976d2a-0000-7000-8000-000000000002',
  causes: [{ kind: 'injection_detected', ref: 'SIG-INJ-8821', event_id: '01976d2a-0000-7000-8000-000000000002', since: '2026-12-01T10:00:00.000Z', tier: 'restricted' }],
});

const keyPair = async (): Promise<{ key: SigningKey; jwks: ReturnType<typeof createLocalJWKSet>; publicJwk: Record<string, unknown> }> => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const publicJwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  return { key: { alg: 'ES256', kid: 'k1', key: privateKey }, jwks: createLocalJWKSet({ keys: [publicJwk] }), publicJwk };
};

test('a tier change becomes risk-level-change with both levels and the cause; an end becomes session-revoked', () => {
  const [risk] = eventsForTransition(trust(), injected);
  assert.equal(risk?.type, EVENT_TYPES.riskLevelChange);
  assert.deepEqual([risk?.payload['principal'], risk?.payload['current_level'], risk?.payload['previous_level'], risk?.payload['risk_reason']], ['SESSION', 'HIGH', 'LOW', 'injection_detected SIG-INJ-8821']);
  assert.equal(risk?.payload['initiating_entity'], 'policy');
  assert.deepEqual(risk?.subject, { format: 'complex', session: { format: 'opaque', id: 'S-9' }, tenant: { format: 'opaque', id: 'acme' }, user: { format: 'opaque', id: 'U-442' } });
  const ended = eventsForTransition(injected, { ...injected, version: 3, ended: true, tier: 'revoked' });
  assert.deepEqual(ended.map((e) => e.type), [EVENT_TYPES.sessionRevoked]);
  // Nothing that matters changed: nothing sent. Unknown previous: no previous_level guessed.
  assert.deepEqual(eventsForTransition(injected, { ...injected, version: 3, revoked_roles: ['x'] }), []);
  assert.equal(eventsForTransition(undefined, injected)[0]?.payload['previous_level'], undefined);
  const frozen = eventsForTransition(injected, { ...injected, version: 3, freezes: [{ freeze_id: 'INC-77', scope: { resource_prefix: 'repo:' }, reason: 'incident' }] });
  assert.deepEqual(frozen.map((e) => e.type), [EVENT_TYPES.changeFreezeRaised]);
});

test('a SET is signed as SSF profiles it and verifies; each bad input gets its RFC 8935 error', async () => {
  const { key, jwks } = await keyPair();
  const claims = { iss: 'https://tf.example', jti: stableJti('s', '1'), iat: Math.floor(now / 1000), aud: 'pdp-1', txn: 'e-1', sub_id: { format: 'opaque', id: 'S-9' }, events: { [EVENT_TYPES.sessionRevoked]: { event_timestamp: 1 } } };
  const set = await signSet(claims, key);
  assert.equal(decodeProtectedHeader(set).typ, 'secevent+jwt');
  const { payload } = await jwtVerify(set, jwks, { issuer: 'https://tf.example', audience: 'pdp-1', typ: 'secevent+jwt', currentDate: new Date(now) });
  assert.equal(payload.sub, undefined);
  assert.equal(payload.exp, undefined);
  const o = { issuer: 'https://tf.example', audience: 'pdp-1', nowMs: now, maxAgeMs: 86_400_000, maxFutureSkewMs: 60_000 };
  const ok = await verifySet(set, jwks, o);
  assert.ok(ok.ok && ok.value.eventType === EVENT_TYPES.sessionRevoked);
  const other = await keyPair();
  const errOf = async (token: string, over: Partial<typeof o> = {}, keys = jwks): Promise<string> => {
    const r = await verifySet(token, keys, { ...o, ...over });
    return r.ok ? 'ok' : r.error.err;
  };
  assert.equal(await errOf(set, {}, other.jwks), 'invalid_key');
  assert.equal(await errOf(set, { audience: 'someone-else' }), 'invalid_audience');
  assert.equal(await errOf(set, { issuer: 'https://other' }), 'invalid_issuer');
  assert.equal(await errOf('not a jws'), 'invalid_request');
  assert.equal(await errOf(await signSet({ ...claims, events: { a: {}, b: {} } }, key)), 'invalid_request');
  assert.equal(await errOf(await signSet({ ...claims, iat: Math.floor(now / 1000) + 3600 }, key)), 'invalid_request');
});

test('CAEP events map to signals; unknown types and subjects are not applied', async () => {
  const u = upstreamSchema.parse({ id: 'okta', name: 'okta', tenant: 'acme', issuer: 'https://idp', audience: 'tf', jwks: { keys: [{ kty: 'EC' }] } });
  const verified = (type: string, event: Record<string, unknown>, sub_id: Record<string, unknown>) => ({ claims: { iss: 'https://idp', jti: 'j', iat: 1, aud: 'tf', sub_id, events: { [type]: event } }, eventType: type, event });
  const sessions = (_t: string, user: string): string[] => (user === 'U-1' ? ['S-1', 'S-2'] : []);
  assert.deepEqual(mapCaep(verified(EVENT_TYPES.sessionRevoked, {}, { format: 'opaque', id: 'S-9' }), u, sessions), { signals: [{ kind: 'session_ended', session_id: 'S-9', reason: 'okta reported the session revoked' }] });
  const byUser = mapCaep(verified(EVENT_TYPES.sessionRevoked, {}, { format: 'iss_sub', iss: 'https://idp', sub: 'U-1' }), u, sessions);
  assert.deepEqual('signals' in byUser ? byUser.signals.map((s) => s['session_id']) : [], ['S-1', 'S-2']);
  assert.deepEqual(mapCaep(verified(EVENT_TYPES.credentialChange, {}, { format: 'email', email: 'U-1' }), u, sessions), { signals: [{ kind: 'consent_revoked', user_id: 'U-1' }] });
  const risk = mapCaep(verified(EVENT_TYPES.riskLevelChange, { current_level: 'HIGH', principal: 'USER' }, { format: 'complex', session: { format: 'opaque', id: 'S-3' } }), u, sessions);
  assert.deepEqual('signals' in risk ? [risk.signals[0]?.['kind'], risk.signals[0]?.['tier']] : [], ['trust_set', 'restricted']);
  assert.deepEqual(mapCaep(verified(EVENT_TYPES.deviceComplianceChange, { current_status: 'compliant' }, { format: 'opaque', id: 'S-3' }), u, sessions), { unapplied: 'not_restrictive' });
  assert.deepEqual(mapCaep(verified('https://example/other', {}, { format: 'opaque', id: 'S-3' }), u, sessions), { unapplied: 'unknown_event_type' });
  assert.deepEqual(mapCaep(verified(EVENT_TYPES.sessionRevoked, {}, { format: 'iss_sub', iss: 'x', sub: 'nobody' }), u, sessions), { unapplied: 'unknown_subject' });
});

test('the outbox commits past a trust record only once all its SETs are settled, in order', () => {
  const box = createOutbox();
  assert.deepEqual(box.add({ partition: 0, offset: 10n }, []), { partition: 0, offset: 11n });
  assert.equal(box.add({ partition: 0, offset: 11n }, [{ jti: 'a', set: 'A', eventType: 't' }, { jti: 'b', set: 'B', eventType: 't' }]), undefined);
  assert.equal(box.add({ partition: 0, offset: 12n }, [{ jti: 'c', set: 'C', eventType: 't' }]), undefined);
  assert.deepEqual(box.settle(['c']), []);
  assert.deepEqual(box.settle(['a']), []);
  assert.deepEqual(box.settle(['b']), [{ partition: 0, offset: 13n }]);
  assert.equal(box.size(), 0);
});

test('push answers: only a refusal of the SET itself is final; the rest is retried with capped backoff', () => {
  assert.equal(pushOutcomeOf(202, undefined), 'delivered');
  assert.equal(pushOutcomeOf(400, 'invalid_request'), 'refused');
  for (const e of ['invalid_key', 'invalid_issuer', 'invalid_audience', 'authentication_failed', 'access_denied']) assert.equal(pushOutcomeOf(400, e), 'retry');
  for (const s of [401, 403, 429, 500, 503]) assert.equal(pushOutcomeOf(s, undefined), 'retry');
  assert.deepEqual([1, 2, 3, 10].map((a) => backoffMs(a, 250, 2000)), [250, 500, 1000, 2000]);
});

test('streams: events_delivered is requested ∩ supported; removed subjects are not covered', () => {
  const d: StreamDefaults = { issuer: 'https://tf', pollUrl: (id) => `https://tf/poll/${id}`, minVerificationIntervalS: 30, inactivityTimeoutS: 600 };
  const s = createStream({ events_requested: [EVENT_TYPES.sessionRevoked, 'urn:unknown'] }, { streamId: 'st', tenant: 'acme', defaultAud: 'pdp', now: 'n' }, d);
  assert.deepEqual(s.events_delivered, [EVENT_TYPES.sessionRevoked]);
  assert.deepEqual(s.delivery, { method: 'urn:ietf:rfc:8936', endpoint_url: 'https://tf/poll/st' });
  assert.deepEqual(updateStream(s, { events_requested: [EVENT_TYPES.riskLevelChange] }, 'n2', d).events_delivered, [EVENT_TYPES.riskLevelChange]);
  const removed = removeSubject(s, { format: 'opaque', id: 'S-9' }, 'n3');
  assert.equal(streamCovers(removed, trust()), false);
  assert.equal(streamCovers(addSubject(removed, { format: 'opaque', id: 'S-9' }, 'n4'), trust()), true);
  assert.equal(streamCovers(s, trust({ tenant_id: 'other' })), false);
});

test('the receiver answers per RFC 8935, applies through ingest admission, and ignores a replay', async () => {
  const { key, publicJwk } = await keyPair();
  const sent: OutboundRecord[] = [];
  const sink: EventSink = { send: async (r) => void sent.push(...r), ready: async () => true, close: async () => {} };
  const secret = 'r'.repeat(20) + 'abcdefghijklmnopqrst';
  const app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  const upstream = upstreamSchema.parse({ id: 'idp', name: 'okta', tenant: 'acme', issuer: 'https://idp', audience: 'trustfold', jwks: { keys: [publicJwk] } });
  const config = configFrom({});
  await app.register(receiverRoutes({ upstreams: [upstream], sink, topics: config.topics, registry: new Registry(), sessionsOfUser: () => [], clock: () => now }));
  const auth = `Bearer ${await mintToken({ sub: 'idp-push', tenant: 'acme', scopes: ['ssf:receive'] }, secret)}`;
  const claims = { iss: 'https://idp', jti: 'j-1', iat: Math.floor(now / 1000), aud: 'trustfold', sub_id: { format: 'opaque', id: 'S-9' }, events: { [EVENT_TYPES.sessionRevoked]: { event_timestamp: Math.floor(now / 1000) } } };
  const post = (body: string, authorization = auth) => app.inject({ method: 'POST', url: '/v1/ssf/receivers/idp', headers: { 'content-type': 'application/secevent+jwt', authorization }, payload: body });
  const good = await signSet(claims, key);
  assert.equal((await post(good)).statusCode, 202);
  assert.equal((await post(good)).statusCode, 202, 'a replay is accepted and not applied again');
  assert.equal(sent.length, 1);
  const e = createCodec().decodeEvent(sent[0]!.value);
  assert.ok(e.ok && e.value.type === 'signal' && e.value.kind === 'session_ended' && e.value.emitted_by === 'okta' && e.value.session_id === 'S-9');
  const wrongAud = await post(await signSet({ ...claims, jti: 'j-2', aud: 'other' }, key));
  assert.deepEqual([wrongAud.statusCode, wrongAud.json<{ err: string }>().err], [400, 'invalid_audience']);
  const forged = await post(await signSet({ ...claims, jti: 'j-3' }, (await keyPair()).key));
  assert.deepEqual([forged.statusCode, forged.json<{ err: string }>().err], [400, 'invalid_key']);
  // trust_set needs trust:write, which this upstream was not granted: refused by ingest's admission.
  const risk = await post(await signSet({ ...claims, jti: 'j-4', events: { [EVENT_TYPES.riskLevelChange]: { current_level: 'HIGH' } } }, key));
  assert.deepEqual([risk.statusCode, risk.json<{ err: string }>().err], [400, 'access_denied']);
  assert.equal((await post('x'.repeat(70_000))).statusCode, 413);
  assert.equal((await post(good, 'Bearer nope')).statusCode, 401);
  assert.equal(sent.length, 1);
  await app.close();
});
