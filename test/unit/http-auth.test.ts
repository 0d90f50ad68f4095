import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { Registry } from 'prom-client';
import { z } from 'zod';
import { canAccessTenant, createAuthenticator, loadOrCreateLocalSecret, mintToken } from '../../services/lib/auth.ts';
import { parseConfig } from '../../services/lib/config.ts';
import { buildBaseApp, callerOf, requireScope, type App } from '../../services/lib/http.ts';

const secret = 'unit-test-secret-unit-test-secret-0123456789';

describe('HTTP shell: auth, errors, health', () => {
  let app: App;
  let ready: true | string = true;
  let throwing = false;
  before(async () => {
    app = await buildBaseApp({
      auth: createAuthenticator({ secret }),
      registry: new Registry(),
      readiness: [
        { name: 'kafka', check: async () => ready },
        {
          name: 'clickhouse',
          check: async () => {
            if (throwing) throw new Error('connect ECONNREFUSED 10.0.0.7:8123');
            return true;
          },
        },
      ],
    });
    app.get(
      '/v1/things/:id',
      {
        onRequest: requireScope('audit:read'),
        schema: { params: z.object({ id: z.string() }), querystring: z.object({ limit: z.coerce.number().int().min(1).max(10).default(5) }) },
      },
      async (req) => ({ id: req.params.id, limit: req.query.limit, tenant: callerOf(req).tenant }),
    );
    await app.ready();
  });
  after(() => app.close());

  const token = (scopes: string[], tenant = 'acme', ttlSeconds = 60) => mintToken({ sub: 'u', tenant, scopes, ttlSeconds }, secret);

  test('no token → 401 with a JSON body and WWW-Authenticate', async () => {
    const r = await app.inject({ url: '/v1/things/1' });
    assert.equal(r.statusCode, 401);
    assert.equal(r.json().error.code, 'unauthorized');
    assert.match(String(r.headers['www-authenticate']), /Bearer/);
  });
  test('bad signature → 401', async () => {
    const forged = await mintToken({ sub: 'u', tenant: 'acme', scopes: ['audit:read'] }, 'another-secret-another-secret-another-secret');
    const r = await app.inject({ url: '/v1/things/1', headers: { authorization: `Bearer ${forged}` } });
    assert.equal(r.statusCode, 401);
    assert.match(r.json().error.message, /signature/);
  });
  test('expired → 401 "token expired"', async () => {
    const expired = await new SignJWT({ scope: 'audit:read', tenant: 'acme' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u')
      .setIssuedAt(Math.floor(Date.now() / 1000) - 120)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(new TextEncoder().encode(secret));
    const r = await app.inject({ url: '/v1/things/1', headers: { authorization: `Bearer ${expired}` } });
    assert.equal(r.statusCode, 401);
    assert.equal(r.json().error.message, 'token expired');
  });
  test('alg none is refused', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ sub: 'u', tenant: '*', scope: 'audit:read' })).toString('base64url');
    const r = await app.inject({ url: '/v1/things/1', headers: { authorization: `Bearer ${header}.${body}.` } });
    assert.equal(r.statusCode, 401);
  });
  test('wrong scope → 403 naming the scope', async () => {
    const r = await app.inject({ url: '/v1/things/1', headers: { authorization: `Bearer ${await token(['events:write'])}` } });
    assert.equal(r.statusCode, 403);
    assert.match(r.json().error.message, /audit:read/);
  });
  test('valid token → 200 with the caller', async () => {
    const r = await app.inject({ url: '/v1/things/7?limit=3', headers: { authorization: `Bearer ${await token(['audit:read'])}` } });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.json(), { id: '7', limit: 3, tenant: 'acme' });
  });
  test('invalid query → 400 naming the parameter', async () => {
    const r = await app.inject({ url: '/v1/things/7?limit=99', headers: { authorization: `Bearer ${await token(['audit:read'])}` } });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().error.errors[0].path, 'querystring.limit');
  });
  test('unknown route → 404 JSON', async () => {
    const r = await app.inject({ url: '/nope' });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().error.code, 'not_found');
  });
  test('healthz, readyz and metrics', async () => {
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
    ready = 'broker unreachable';
    const r = await app.inject({ url: '/readyz' });
    assert.equal(r.statusCode, 503);
    assert.deepEqual(r.json().checks, { kafka: 'broker unreachable', clickhouse: 'ok' });
    ready = true;
    throwing = true;
    const thrown = await app.inject({ url: '/readyz' });
    throwing = false;
    assert.equal(thrown.statusCode, 503);
    assert.doesNotMatch(thrown.body, /10\.0\.0\.7/, 'an exception text (addresses) is logged, not answered');
    const m = await app.inject({ url: '/metrics' });
    assert.match(m.body, /trustfold_http_request_duration_seconds/);
  });
  test('security headers on API answers; /docs carries its own CSP', async () => {
    const r = await app.inject({ url: '/healthz' });
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
    const docs = await app.inject({ url: '/docs/' });
    assert.equal(docs.statusCode, 200);
    assert.match(String(docs.headers['content-security-policy']), /script-src 'self'/);
    assert.doesNotMatch(String(docs.headers['content-security-policy']), /upgrade-insecure-requests/);
  });
  test('OpenAPI document lists the routes', async () => {
    const r = await app.inject({ url: '/docs/json' });
    assert.equal(r.statusCode, 200);
    assert.ok(r.json().paths['/v1/things/{id}']);
  });
});

test('tenant access: own tenant or operator only', () => {
  const scopes = new Set<string>();
  const expiresAt = 0;
  assert.equal(canAccessTenant({ sub: 'a', tenant: 'acme', scopes, expiresAt }, 'acme'), true);
  assert.equal(canAccessTenant({ sub: 'a', tenant: 'acme', scopes, expiresAt }, 'globex'), false);
  assert.equal(canAccessTenant({ sub: 'a', tenant: '*', scopes, expiresAt }, 'globex'), true);
});

describe('JWT policy', () => {
  const key = new TextEncoder().encode(secret);
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: { iat?: number; exp?: number; tenant?: string; scope?: string }) => {
    let jwt = new SignJWT({ scope: claims.scope ?? 'audit:read', tenant: claims.tenant ?? 'acme' }).setProtectedHeader({ alg: 'HS256' }).setSubject('u');
    if (claims.iat !== undefined) jwt = jwt.setIssuedAt(claims.iat);
    if (claims.exp !== undefined) jwt = jwt.setExpirationTime(claims.exp);
    return jwt.sign(key);
  };
  const verify = async (token: string, cfg: Parameters<typeof createAuthenticator>[0] = { secret }) => createAuthenticator(cfg).verify(`Bearer ${token}`);
  const refusal = (r: Awaited<ReturnType<typeof verify>>): string => (r.ok ? 'accepted' : r.error.message);

  test('a token without exp is refused', async () => {
    assert.match(refusal(await verify(await sign({ iat: now }))), /exp/);
  });
  test('a lifetime over the maximum (24 h by default) is refused unless long-lived tokens are opted in', async () => {
    const long = await sign({ iat: now, exp: now + 30 * 24 * 3600 });
    assert.match(refusal(await verify(long)), /lifetime .* exceeds the maximum of 86400 s/);
    assert.equal((await verify(long, { secret, allowLongLived: true })).ok, true);
    assert.match(refusal(await verify(await sign({ exp: now + 2 * 3600 }), { secret, maxTtlSeconds: 3600 })), /exceeds/);
    assert.equal((await verify(await sign({ iat: now, exp: now + 3600 }))).ok, true);
  });
  test('iat in the future beyond the skew is refused', async () => {
    assert.match(refusal(await verify(await sign({ iat: now + 600, exp: now + 900 }))), /iat is \d+ s in the future/);
    assert.equal((await verify(await sign({ iat: now + 30, exp: now + 900 }))).ok, true);
  });
  test('tenant "*" needs the tenants:all scope, and from a JWKS issuer an explicit setting', async () => {
    assert.match(refusal(await verify(await sign({ iat: now, exp: now + 60, tenant: '*' }))), /tenants:all/);
    const caller = await verify(await sign({ iat: now, exp: now + 60, tenant: '*', scope: 'audit:read tenants:all' }));
    assert.ok(caller.ok && caller.value.tenant === '*' && caller.value.expiresAt === (now + 60) * 1000);
  });
  test('JWKS needs an issuer and an audience, in the authenticator and in the configuration', () => {
    assert.throws(() => createAuthenticator({ jwksUrl: 'https://idp.example/jwks' }), /TRUSTFOLD_JWT_ISSUER and TRUSTFOLD_JWT_AUDIENCE/);
    const r = parseConfig({ TRUSTFOLD_JWKS_URL: 'https://idp.example/jwks', TRUSTFOLD_JWT_ISSUER: 'https://idp.example' });
    assert.deepEqual(r.ok ? [] : r.error.map((e) => e.path), ['TRUSTFOLD_JWT_AUDIENCE']);
  });
  test('a weak TRUSTFOLD_JWT_SECRET is a configuration error', () => {
    for (const weak of ['short', 'a'.repeat(64), 'abab'.repeat(10)]) {
      const r = parseConfig({ TRUSTFOLD_JWT_SECRET: weak });
      assert.equal(r.ok, false, weak);
      assert.equal(!r.ok && r.error[0]?.path, 'TRUSTFOLD_JWT_SECRET');
    }
    assert.equal(parseConfig({ TRUSTFOLD_JWT_SECRET: secret }).ok, true);
  });
});

describe('local secret file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trustfold-secret-'));
  test('created 0600; a looser mode is tightened; a weak secret is refused, not replaced', () => {
    const file = join(dir, 'new', 'jwt-secret');
    const created = loadOrCreateLocalSecret(file);
    assert.equal(created.created, true);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    chmodSync(file, 0o644);
    const again = loadOrCreateLocalSecret(file);
    assert.deepEqual([again.secret, again.tightened], [created.secret, true]);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const weak = join(dir, 'weak');
    writeFileSync(weak, 'x'.repeat(40), { mode: 0o600 });
    assert.throws(() => loadOrCreateLocalSecret(weak), /distinct characters/);
    writeFileSync(weak, 'short', { mode: 0o600 });
    assert.throws(() => loadOrCreateLocalSecret(weak), /at least 32/);
  });
});

describe('/metrics with TRUSTFOLD_METRICS_TOKEN', () => {
  test('answers only the configured bearer', async () => {
    const metricsToken = 'metrics-token-metrics-token-metrics-token';
    const app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry(), metricsToken });
    try {
      assert.equal((await app.inject({ url: '/metrics' })).statusCode, 401);
      assert.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode, 401);
      assert.equal((await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } })).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});
