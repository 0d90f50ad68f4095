import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { Registry } from 'prom-client';
import { z } from 'zod';
import { canAccessTenant, createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, callerOf, requireScope, type App } from '../../services/lib/http.ts';

const secret = 'unit-test-secret-unit-test-secret-0123456789';

describe('HTTP shell: auth, errors, health', () => {
  let app: App;
  let ready: true | string = true;
  before(async () => {
    app = await buildBaseApp({
      auth: createAuthenticator({ secret }),
      registry: new Registry(),
      readiness: [{ name: 'kafka', check: async () => ready }],
    });
    app.get(
      '/v1/things/:id',
      {
        preHandler: requireScope('audit:read'),
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
    assert.deepEqual(r.json().checks, { kafka: 'broker unreachable' });
    ready = true;
    const m = await app.inject({ url: '/metrics' });
    assert.match(m.body, /trustfold_http_request_duration_seconds/);
  });
  test('OpenAPI document lists the routes', async () => {
    const r = await app.inject({ url: '/docs/json' });
    assert.equal(r.statusCode, 200);
    assert.ok(r.json().paths['/v1/things/{id}']);
  });
});

test('tenant access: own tenant or operator only', () => {
  const scopes = new Set<string>();
  assert.equal(canAccessTenant({ sub: 'a', tenant: 'acme', scopes }, 'acme'), true);
  assert.equal(canAccessTenant({ sub: 'a', tenant: 'acme', scopes }, 'globex'), false);
  assert.equal(canAccessTenant({ sub: 'a', tenant: '*', scopes }, 'globex'), true);
});
