// The console's server side with app.inject(): the page and its script under a
// strict CSP, no inline script, and whoami saying who a token is.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { CONSOLE_CSP, consoleRoutes } from '../../services/console/plugin.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';

const SECRET = 'console-unit-secret-0123456789-abcdefghij';
let app: App;

before(async () => {
  app = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
  await app.register(consoleRoutes());
  await app.ready();
});
after(() => app.close());

test('the page: HTML under a CSP with no inline script or style and nothing from elsewhere', async () => {
  const res = await app.inject({ url: '/console' });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/html/);
  const csp = String(res.headers['content-security-policy']);
  assert.equal(csp, CONSOLE_CSP);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|http/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers['x-frame-options'], 'DENY', 'the shared security headers are still set');
  assert.equal(res.headers['referrer-policy'], 'no-referrer');
  assert.doesNotMatch(res.body, /<script(?![^>]*\ssrc=)[^>]*>/, 'every script element has a src');
  assert.doesNotMatch(res.body, /\son[a-z]+=|style=|https?:\/\//i, 'no inline handlers, inline styles or absolute URLs');
  assert.match(res.body, /<script type="module" src="\/console\/app.js"><\/script>/);
});

test('the script and the stylesheet, bundled and revalidated by ETag', async () => {
  const js = await app.inject({ url: '/console/app.js' });
  assert.equal(js.statusCode, 200);
  assert.match(String(js.headers['content-type']), /^text\/javascript/);
  assert.ok(js.body.length > 1000);
  assert.doesNotMatch(js.body, /from\s*["'](\.|\/|[a-z@])/, 'one self-contained module: no imports left');
  assert.doesNotMatch(js.body, /\binnerHTML\b|insertAdjacentHTML|document\.write|\beval\(/, 'no HTML is parsed from data');
  const etag = String(js.headers.etag);
  const again = await app.inject({ url: '/console/app.js', headers: { 'if-none-match': etag } });
  assert.equal(again.statusCode, 304);
  const css = await app.inject({ url: '/console/console.css' });
  assert.match(String(css.headers['content-type']), /^text\/css/);
  assert.equal((await app.inject({ url: '/console/favicon.svg' })).statusCode, 200);
  assert.equal((await app.inject({ url: '/console/' })).headers.location, '/console');
});

test('whoami: subject, tenant, scopes and expiry of the token; 401 says why', async () => {
  const token = await mintToken({ sub: 'soc-1', tenant: 'acme', scopes: ['freeze:write', 'freeze:read'], ttlSeconds: 600 }, SECRET);
  const res = await app.inject({ url: '/console/api/whoami', headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.statusCode, 200);
  const body = res.json() as { sub: string; tenant: string; scopes: string[]; expires_at: string };
  assert.deepEqual({ ...body, expires_at: undefined }, { sub: 'soc-1', tenant: 'acme', scopes: ['freeze:read', 'freeze:write'], expires_at: undefined });
  assert.ok(Date.parse(body.expires_at) > Date.now());

  const none = await app.inject({ url: '/console/api/whoami' });
  assert.equal(none.statusCode, 401);
  const expired = await createAuthenticator({ secret: SECRET, now: () => Date.now() + 3600_000 }).verify(`Bearer ${token}`);
  assert.deepEqual(expired.ok ? undefined : expired.error.message, 'token expired');
  const noScopes = await mintToken({ sub: 'x', tenant: 'acme', scopes: [] }, SECRET);
  assert.equal((await app.inject({ url: '/console/api/whoami', headers: { authorization: `Bearer ${noScopes}` } })).statusCode, 403);
});
