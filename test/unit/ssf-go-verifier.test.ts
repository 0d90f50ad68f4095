// Our SETs and our JWKS against an independent JOSE implementation:
// test/ssf-verifier (Go, github.com/go-jose/go-jose/v4), built by
// scripts/ssf-verifier-build.mjs. The Go program reads our discovery
// document, fetches the keys from its jwks_uri (served by ssfRoutes over a
// real socket) and checks every SET as an SSF receiver would. SETs are made
// by the transmitter's own functions (eventsForTransition, setClaimsOf,
// signSet), with both key types trustfold supports (ES256 generated, EdDSA
// configured). Tokens that break one rule each must be refused by it, so a
// verifier that accepted anything would fail here.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Registry } from 'prom-client';
import type { SessionTrust } from '../../schemas/events.ts';
import { createAuthenticator } from '../../services/lib/auth.ts';
import { buildBaseApp } from '../../services/lib/http.ts';
import { EVENT_TYPES, eventsForTransition } from '../../services/ssf/caep.ts';
import { setClaimsOf, streamUpdatedPayload } from '../../services/ssf/delivery.ts';
import { loadOrCreateSigningKey, type LoadedKey } from '../../services/ssf/keys.ts';
import { ssfRoutes } from '../../services/ssf/routes.ts';
import { signSet, stableJti } from '../../services/ssf/set.ts';
import { createMemoryStreamStore } from '../../services/ssf/store.ts';
import { createStream } from '../../services/ssf/streams.ts';
import type { Transmitter } from '../../services/ssf/transmitter.ts';
import { goVerify, SSF_VERIFIER_SKIP, type GoCase } from '../ssf-verifier/run.ts';
import { freePort } from '../helpers/net.ts';

const trust = (o: Partial<SessionTrust>): SessionTrust => ({
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
  updated_at: new Date().toISOString(),
  caused_by: '01976d2a-0000-7000-8000-000000000001',
  ...o,
});

/** The transmitter the JWKS and discovery routes need: no streams are delivered in this test. */
const noDeliveries: Transmitter = { open: async () => {}, delivery: () => undefined, touch: () => {}, outstanding: () => 0, close: async () => {} };

const serveDiscovery = async (key: LoadedKey): Promise<{ issuer: string; close: () => Promise<void> }> => {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const app = await buildBaseApp({ auth: createAuthenticator({ secret: 'g'.repeat(40) }), registry: new Registry() });
  await app.register(
    ssfRoutes({ issuer, publicJwk: key.publicJwk, store: createMemoryStreamStore(), transmitter: noDeliveries, minVerificationIntervalS: 30, inactivityTimeoutS: 600, endpointPolicy: { allowPrivate: false } }),
  );
  await app.listen({ port, host: '127.0.0.1' });
  return { issuer, close: () => app.close() };
};

const casesFor = async (key: LoadedKey, issuer: string): Promise<{ good: GoCase[]; bad: (GoCase & { why: RegExp })[] }> => {
  const aud = 'https://pdp.example/caep';
  const stream = createStream({ aud }, { streamId: 'st-1', tenant: 'acme', defaultAud: aud, now: new Date().toISOString() }, { issuer, pollUrl: (id) => `${issuer}/v1/ssf/poll/${id}`, minVerificationIntervalS: 30, inactivityTimeoutS: 600 });
  const injected = trust({
    version: 2,
    tier: 'restricted',
    caused_by: '01976d2a-0000-7000-8000-000000000002',
    causes: [{ kind: 'injection_detected', ref: 'SIG-1', event_id: '01976d2a-0000-7000-8000-000000000002', since: new Date().toISOString(), tier: 'restricted' }],
  });
  const frozen = { ...injected, version: 3, freezes: [{ freeze_id: 'INC-7', scope: { resource_prefix: 'repo:' }, reason: 'incident', ticket: 'T-1' }] };
  const ended = { ...frozen, version: 4, ended: true, tier: 'revoked' as const };
  const transitions: [SessionTrust | undefined, SessionTrust][] = [
    [trust({}), injected],
    [injected, frozen],
    [frozen, ended],
    [undefined, injected],
  ];
  const sign = (claims: Parameters<typeof signSet>[0]) => signSet(claims, key.signing);
  const good: GoCase[] = [];
  for (const [prev, next] of transitions) {
    for (const e of eventsForTransition(prev, next)) {
      const jti = stableJti(stream.stream_id, next.tenant_id, next.session_id, String(next.version), e.type);
      const claims = setClaimsOf({ issuer, aud: stream.aud, jti, nowMs: Date.now(), txn: next.caused_by, subject: e.subject, type: e.type, payload: e.payload });
      good.push({ name: `${e.type.split('/').pop() ?? e.type} v${next.version}`, token: await sign(claims), audience: aud, require_txn: true });
    }
  }
  const control = (type: string, payload: Record<string, unknown>) =>
    setClaimsOf({ issuer, aud: stream.aud, jti: stableJti(type, String(Math.random())), nowMs: Date.now(), subject: { format: 'opaque', id: stream.stream_id }, type, payload });
  good.push({ name: 'stream-updated', token: await sign(control(EVENT_TYPES.streamUpdated, streamUpdatedPayload({ ...stream, status: 'paused', reason: 'inactivity_timeout' }))), audience: aud });
  good.push({ name: 'verification', token: await sign(control(EVENT_TYPES.verification, { state: 'abc' })), audience: aud });
  assert.ok(good.length >= 6, 'every kind of SET is covered');

  const base = setClaimsOf({ issuer, aud, jti: 'j-bad', nowMs: Date.now(), txn: 'e-1', subject: { format: 'opaque', id: 'S-9' }, type: EVENT_TYPES.sessionRevoked, payload: { event_timestamp: Math.floor(Date.now() / 1000) } });
  const other = await generateKeyPair(key.signing.alg, { extractable: true });
  const { txn: _txn, ...noTxn } = base;
  const [header, , signature] = (await sign(base)).split('.');
  const tampered = `${header}.${Buffer.from(JSON.stringify({ ...base, aud: 'attacker' })).toString('base64url')}.${signature}`;
  const bad: (GoCase & { why: RegExp })[] = [
    { name: 'carries sub', token: await sign({ ...base, sub: 'S-9' } as Parameters<typeof signSet>[0]), audience: aud, why: /claim sub/ },
    { name: 'carries exp', token: await sign({ ...base, exp: Math.floor(Date.now() / 1000) + 60 } as Parameters<typeof signSet>[0]), audience: aud, why: /claim exp/ },
    { name: 'two events', token: await sign({ ...base, events: { ...base.events, [EVENT_TYPES.riskLevelChange]: {} } }), audience: aud, why: /exactly 1/ },
    { name: 'typ JWT', token: await new SignJWT({ ...base }).setProtectedHeader({ alg: key.signing.alg, kid: key.signing.kid, typ: 'JWT' }).sign(key.signing.key), audience: aud, why: /typ/ },
    { name: 'another key, our kid', token: await new SignJWT({ ...base }).setProtectedHeader({ alg: key.signing.alg, kid: key.signing.kid, typ: 'secevent+jwt' }).sign(other.privateKey), audience: aud, why: /signature/ },
    { name: 'payload swapped', token: tampered, audience: aud, why: /signature/ },
    { name: 'wrong audience', token: await sign(base), audience: 'https://someone-else', why: /aud/ },
    { name: 'no txn', token: await sign(noTxn), audience: aud, require_txn: true, why: /txn/ },
    { name: 'risk level not CAEP', token: await sign({ ...base, events: { [EVENT_TYPES.riskLevelChange]: { event_timestamp: 1, principal: 'SESSION', current_level: 'SEVERE' } } }), audience: aud, why: /current_level/ },
    { name: 'unknown subject format', token: await sign({ ...base, sub_id: { format: 'session-ish', id: 'S-9' } }), audience: aud, why: /subject format/ },
  ];
  return { good, bad };
};

for (const kind of ['ES256 (generated)', 'EdDSA (configured)'] as const) {
  test(`go-jose verifies our ${kind} SETs against our published JWKS and refuses each broken one`, { skip: SSF_VERIFIER_SKIP }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ssf-go-'));
    try {
      let key: LoadedKey;
      if (kind === 'EdDSA (configured)') {
        const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
        writeFileSync(join(dir, 'ed.json'), JSON.stringify(await exportJWK(privateKey)), { mode: 0o600 });
        key = await loadOrCreateSigningKey(join(dir, 'ed.json'), true);
      } else key = await loadOrCreateSigningKey(join(dir, 'generated.json'), false);
      const server = await serveDiscovery(key);
      try {
        const { good, bad } = await casesFor(key, server.issuer);
        const out = await goVerify(`${server.issuer}/.well-known/ssf-configuration`, server.issuer, [...good, ...bad]);
        assert.deepEqual(out.discovery, { ok: true, keys: 1 });
        const byName = new Map(out.results.map((r) => [r.name, r]));
        for (const g of good) {
          const r = byName.get(g.name);
          assert.equal(r?.ok, true, `${g.name}: ${r?.error ?? 'no result'}`);
          assert.equal(r?.alg, key.signing.alg);
          assert.equal(r?.kid, key.signing.kid);
        }
        for (const b of bad) {
          const r = byName.get(b.name);
          assert.equal(r?.ok, false, `${b.name} must be refused`);
          assert.match(r?.error ?? '', b.why, b.name);
        }
        // The discovery issuer must be ours: the same SETs under another issuer are refused wholesale.
        const wrongIssuer = await goVerify(`${server.issuer}/.well-known/ssf-configuration`, 'https://not-us.example', good.slice(0, 1));
        assert.equal(wrongIssuer.discovery.ok, false);
      } finally {
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
