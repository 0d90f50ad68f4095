// The receiver against the specifications' own examples and as a poller.
//
// test/fixtures/ssf/spec-examples.json holds every SET example of CAEP 1.0
// and SSF 1.0 (openid/sharedsignals, see the README beside it) as printed.
// Each is signed here with an upstream key (the examples are unsigned claim
// sets) and received with the clock at its own `iat`, with the upstream's
// issuer and audience taken from the example: what each one does is the
// documented mapping, one row per example.
//
// The poll loop (RFC 8936) is driven by a transmitter double that records
// every request: acks for what was stored, setErrs with the RFC 8935 `err`
// for what was refused, neither for what Kafka did not take (handed out
// again, then acked), and the acks of a request that failed sent again.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import { configFrom } from '../../services/lib/config.ts';
import type { EventSink, OutboundRecord } from '../../services/ingest/sink.ts';
import { EVENT_TYPES } from '../../services/ssf/caep.ts';
import { createReceiver, upstreamSchema, type SetOutcome, type Upstream } from '../../services/ssf/receiver.ts';
import { signSet, type SetClaims, type SigningKey } from '../../services/ssf/set.ts';

type Example = { source: string; line: number; title: string; claims: SetClaims & Record<string, unknown> };
const examples = JSON.parse(readFileSync(new URL('../fixtures/ssf/spec-examples.json', import.meta.url), 'utf8')) as Example[];

const keyPair = async (): Promise<{ key: SigningKey; publicJwk: Record<string, unknown> }> => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { key: { alg: 'ES256', kid: 'idp-1', key: privateKey }, publicJwk: { ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' } };
};

const codec = createCodec();
const decoded = (r: OutboundRecord): Record<string, unknown> => {
  const e = codec.decodeEvent(r.value);
  assert.ok(e.ok);
  return e.value as unknown as Record<string, unknown>;
};

/** What each example comes to: the outcome, and the signals (kind + target) it became. */
const EXPECTED: Record<number, { outcome: string; signals?: string[] }> = {
  273: { outcome: 'applied', signals: ['session_ended dMTlD|1600802906337.16|16008.16'] },
  294: { outcome: 'applied', signals: ['session_ended dMTlD|1600802906337.16|16008.16'] }, // the complex subject's session, not all of the user's
  335: { outcome: 'applied', signals: ['session_ended S-jane'] }, // user + device: each live session of the user
  401: { outcome: 'unapplied_unknown_subject' }, // jwt_id: a token trustfold does not hold
  426: { outcome: 'unapplied_unknown_subject' },
  459: { outcome: 'unapplied_unknown_subject' }, // saml_assertion_id
  553: { outcome: 'applied', signals: ['consent_revoked jane.smith@example.com'] },
  652: { outcome: 'unapplied_not_restrictive' }, // assurance increase
  679: { outcome: 'unapplied_not_restrictive' }, // no change_direction
  739: { outcome: 'unapplied_unknown_subject' }, // device + tenant: no user, no session
  827: { outcome: 'unapplied_unknown_event_type' }, // session-established
  881: { outcome: 'unapplied_unknown_event_type' }, // session-presented
  958: { outcome: 'applied', signals: ['trust_set S-doe trusted'] }, // risk LOW
  517: { outcome: 'unapplied_ssf_control' }, // verification, array aud
  572: { outcome: 'unapplied_unknown_event_type' }, // RISC account-enabled
  591: { outcome: 'unapplied_unknown_event_type' }, // RISC account-disabled
  612: { outcome: 'applied', signals: ['consent_revoked user@example.com'] },
  635: { outcome: 'applied', signals: ['session_ended S-jane'] },
  673: { outcome: 'applied', signals: ['consent_revoked foo@example2.com'] },
  697: { outcome: 'unapplied_unknown_subject' }, // catalog_item
  2318: { outcome: 'unapplied_ssf_control' }, // verification
  2380: { outcome: 'unapplied_ssf_control' }, // stream-updated
};

const sessions: Record<string, string[]> = { 'jane.smith@example.com': ['S-jane'], 'jane.doe@example.com': ['S-doe'] };
const sessionsOfUser = (_tenant: string, user: string): string[] => sessions[user] ?? [];

test('every CAEP 1.0 and SSF 1.0 example SET is received as the mapping documents', async () => {
  assert.equal(examples.length, Object.keys(EXPECTED).length, 'one expectation per example in the fixture');
  const { key, publicJwk } = await keyPair();
  for (const ex of examples) {
    const want = EXPECTED[ex.line];
    assert.ok(want !== undefined, `no expectation for line ${ex.line}`);
    const sent: OutboundRecord[] = [];
    const sink: EventSink = { send: async (r) => void sent.push(...r), ready: async () => true, close: async () => {} };
    const aud = Array.isArray(ex.claims.aud) ? (ex.claims.aud[0] ?? '') : ex.claims.aud;
    const u: Upstream = upstreamSchema.parse({ id: 'ex', name: 'example-idp', tenant: 'acme', issuer: ex.claims.iss, audience: aud, jwks: { keys: [publicJwk] }, scopes: ['events:write', 'trust:write'] });
    const receiver = createReceiver({ upstreams: [u], sink, topics: configFrom({}).topics, registry: new Registry(), sessionsOfUser, clock: () => ex.claims.iat * 1000 + 1000 });
    const r = await receiver.process(u, await signSet(ex.claims, key), 'push');
    const label = `${ex.source} line ${ex.line} (${ex.title})`;
    assert.equal(r.kind, 'accepted', `${label}: ${JSON.stringify(r)}`);
    assert.equal(r.kind === 'accepted' ? r.outcome : '', want.outcome, label);
    const got = sent.map(decoded).map((e) => [e['kind'], e['session_id'] ?? e['user_id'], e['tier']].filter((x) => x !== undefined).join(' '));
    assert.deepEqual(got, want.signals ?? [], label);
    for (const e of sent.map(decoded)) assert.equal(e['emitted_by'], 'example-idp', `${label}: the signal names the upstream`);
    // The same SET again: accepted (RFC 8935 §2), not applied twice.
    const again = await receiver.process(u, await signSet(ex.claims, key), 'push');
    assert.deepEqual(again.kind === 'accepted' ? again.outcome : again.kind, 'replay', label);
    assert.equal(sent.length, (want.signals ?? []).length, `${label}: nothing more stored for the replay`);
  }
});

test('the spec examples are refused when they do not verify: another key, another audience, an unsigned copy', async () => {
  const { key, publicJwk } = await keyPair();
  const ex = examples.find((e) => e.line === 273);
  assert.ok(ex !== undefined);
  const sink: EventSink = { send: async () => {}, ready: async () => true, close: async () => {} };
  const u: Upstream = upstreamSchema.parse({ id: 'ex', name: 'example-idp', tenant: 'acme', issuer: ex.claims.iss, audience: 'https://trustfold.example/acme', jwks: { keys: [publicJwk] } });
  const receiver = createReceiver({ upstreams: [u], sink, topics: configFrom({}).topics, registry: new Registry(), sessionsOfUser, clock: () => ex.claims.iat * 1000 });
  const errOf = (r: SetOutcome): string => (r.kind === 'rejected' ? r.error.err : r.kind);
  assert.equal(errOf(await receiver.process(u, await signSet(ex.claims, key), 'push')), 'invalid_audience', 'the example names https://sp.example.com/caep');
  const ours = { ...ex.claims, aud: u.audience };
  assert.equal(errOf(await receiver.process(u, await signSet(ours, (await keyPair()).key), 'push')), 'invalid_key');
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'secevent+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(ours)).toString('base64url')}.`;
  assert.equal(errOf(await receiver.process(u, unsigned, 'push')), 'invalid_key', 'alg none is never accepted');
  assert.equal(errOf(await receiver.process(u, await signSet({ ...ours, iss: 'https://idp.example.com/other/' }, key), 'push')), 'invalid_issuer');
  assert.equal(errOf(await receiver.process(u, await signSet(ours, key), 'push')), 'accepted');
});

test('polling an upstream (RFC 8936): ack what was stored, setErrs for refusals, neither for what Kafka did not take; acks survive a failed poll', async () => {
  const { key, publicJwk } = await keyPair();
  const iss = 'https://tf-acme.example';
  const u: Upstream = upstreamSchema.parse({
    id: 'acme-poll',
    name: 'trustfold-acme',
    tenant: 'beta',
    issuer: iss,
    audience: 'trustfold-beta',
    jwks: { keys: [publicJwk] },
    poll: { url: 'https://tf-acme.example/v1/ssf/poll/st-1', authorization_header: 'Bearer acme-token', max_events: 50 },
  });
  const nowS = Math.floor(Date.now() / 1000);
  const revoke = (jti: string, session: string): SetClaims => ({
    iss,
    jti,
    iat: nowS,
    aud: 'trustfold-beta',
    txn: `e-${jti}`,
    sub_id: { format: 'complex', session: { format: 'opaque', id: session }, tenant: { format: 'opaque', id: 'acme' } },
    events: { [EVENT_TYPES.sessionRevoked]: { event_timestamp: nowS } },
  });
  const A = await signSet(revoke('A', 'S-1'), key);
  const B = await signSet(revoke('B', 'S-2'), (await keyPair()).key);
  const C = await signSet(revoke('C', 'S-3'), key);

  const sent: OutboundRecord[] = [];
  let failNext = 0;
  const sink: EventSink = {
    send: async (r) => {
      if (r.some((x) => decoded(x)['session_id'] === 'S-3') && failNext++ === 0) throw new Error('Kafka did not ack');
      sent.push(...r);
    },
    ready: async () => true,
    close: async () => {},
  };
  const requests: { body: Record<string, unknown>; authorization: string | undefined }[] = [];
  let finished!: () => void;
  const done = new Promise<void>((r) => (finished = r));
  const answers: (() => Response)[] = [
    () => Response.json({ sets: { A, B, C }, moreAvailable: false }),
    () => new Response('down', { status: 500 }),
    () => Response.json({ sets: { C } }),
    () => {
      finished();
      return Response.json({ sets: {}, moreAvailable: false });
    },
  ];
  const pollFetch = (async (url: string | URL | Request, init?: RequestInit) => {
    assert.equal(String(url), 'https://tf-acme.example/v1/ssf/poll/st-1');
    requests.push({ body: JSON.parse(String(init?.body)) as Record<string, unknown>, authorization: new Headers(init?.headers).get('authorization') ?? undefined });
    const answer = answers[requests.length - 1];
    if (answer !== undefined) return answer();
    // Past the script: a long poll that returns nothing when the loop is stopped.
    await new Promise<void>((resolve) => init?.signal?.addEventListener('abort', () => resolve()));
    throw new Error('aborted');
  }) as typeof fetch;

  const registry = new Registry();
  const receiver = createReceiver({ upstreams: [u], sink, topics: configFrom({}).topics, registry, sessionsOfUser, pollFetch, pollRetryBaseMs: 5, pollRetryMaxMs: 20 });
  receiver.startPolling();
  await done;
  await receiver.close();

  assert.ok(requests.length >= 4);
  const [r1, r2, r3, r4] = requests;
  assert.deepEqual(r1?.body, { maxEvents: 50, returnImmediately: false, ack: [], setErrs: {} });
  assert.equal(r1?.authorization, 'Bearer acme-token');
  const expectedAfterFirst = { maxEvents: 50, returnImmediately: false, ack: ['A'], setErrs: { B: { err: 'invalid_key', description: 'the signature does not verify with any key of the issuer' } } };
  assert.deepEqual(r2?.body, expectedAfterFirst, 'A acked, B refused, C neither (Kafka did not take it)');
  assert.deepEqual(r3?.body, expectedAfterFirst, 'the failed request\u2019s acks are sent again');
  assert.deepEqual(r4?.body, { maxEvents: 50, returnImmediately: false, ack: ['C'], setErrs: {} }, 'C, handed out again, is stored and acked');
  assert.deepEqual(sent.map((r) => decoded(r)['session_id']), ['S-1', 'S-3']);
  const metrics = await registry.getSingleMetricAsString('trustfold_ssf_received_total');
  assert.match(metrics, /receiver="acme-poll",delivery="poll",outcome="applied"} 2/);
  assert.match(metrics, /outcome="rejected_invalid_key"} 1/);
  assert.match(metrics, /outcome="unavailable"} 1/);
  assert.match(await registry.getSingleMetricAsString('trustfold_ssf_receiver_polls_total'), /result="failed"} 1/);
});
