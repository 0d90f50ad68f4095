// The one-time sign-in link: a code, not the token, in the link; traded once
// by POST /console/api/sign-in for the token; a second use, a late one and an
// unknown one each refused saying which; and neither the code nor the token
// in the server's request log.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { consoleRoutes } from '../../services/console/plugin.ts';
import { createSignInCodes, SIGN_IN_CODE_PATTERN, SIGN_IN_CODE_TTL_MS } from '../../services/console/signin.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';

const SECRET = 'console-signin-secret-0123456789-abcdefghij';

describe('sign-in codes', () => {
  test('a code is 43 base64url characters, new each time, and gives its token once', () => {
    const codes = createSignInCodes();
    const a = codes.issue('tok-a');
    const b = codes.issue('tok-a');
    assert.match(a.code, SIGN_IN_CODE_PATTERN);
    assert.notEqual(a.code, b.code);
    assert.doesNotMatch(a.code, /tok-a/);
    assert.deepEqual(codes.redeem(a.code), { ok: true, token: 'tok-a' });
    const again = codes.redeem(a.code);
    assert.equal(again.ok ? 'ok' : again.reason, 'used');
    assert.match(again.ok ? '' : again.message, /already used \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); a link works once/);
    assert.deepEqual(codes.redeem(b.code), { ok: true, token: 'tok-a' }, 'each code on its own');
  });

  test('past its expiry a code is refused as expired (and spent), an unknown one as unknown', () => {
    let now = Date.parse('2026-12-01T14:00:00Z');
    const codes = createSignInCodes({ now: () => now });
    const { code, expiresAt } = codes.issue('tok', SIGN_IN_CODE_TTL_MS);
    assert.equal(expiresAt, now + SIGN_IN_CODE_TTL_MS);
    now = expiresAt;
    const late = codes.redeem(code);
    assert.deepEqual(late.ok ? undefined : [late.reason, late.message], ['expired', 'this sign-in link expired at 2026-12-01 14:05:00 UTC (a link works for 5 min after it is printed)']);
    now = expiresAt - 1;
    assert.equal(codes.redeem(code).ok, false, 'a refused code stays spent, even if the clock goes back');
    const unknown = codes.redeem('b'.repeat(43));
    assert.equal(unknown.ok ? 'ok' : unknown.reason, 'unknown');
  });

  test('used and expired entries are kept for an hour past expiry to say why, then dropped; at most max entries', () => {
    let now = 0;
    const codes = createSignInCodes({ now: () => now, keepMs: 3_600_000, max: 3 });
    const first = codes.issue('t1', 1000);
    now = 1000 + 3_600_000;
    const kept = codes.redeem(first.code);
    assert.equal(kept.ok ? 'ok' : kept.reason, 'expired');
    now += 1;
    const gone = codes.redeem(first.code);
    assert.equal(gone.ok ? 'ok' : gone.reason, 'unknown');
    const issued = ['a', 'b', 'c', 'd'].map((t) => codes.issue(t, 60_000));
    assert.equal(codes.size(), 3);
    const oldest = codes.redeem(issued[0]?.code ?? '');
    assert.equal(oldest.ok ? 'ok' : oldest.reason, 'unknown', 'the oldest went first');
    assert.deepEqual(codes.redeem(issued[3]?.code ?? ''), { ok: true, token: 'd' });
  });

  test('an empty token or a non-positive lifetime is refused at issue', () => {
    const codes = createSignInCodes();
    assert.throws(() => codes.issue(''), /empty token/);
    assert.throws(() => codes.issue('t', 0), /ttlMs/);
  });
});

describe('POST /console/api/sign-in', () => {
  const lines: string[] = [];
  const codes = createSignInCodes();
  let app: App;
  let token = '';

  before(async () => {
    token = await mintToken({ sub: 'local-operator', tenant: 'acme', scopes: ['trust:read'], ttlSeconds: 600 }, SECRET);
    const logger = pino({ level: 'trace' }, new Writable({ write: (chunk: Buffer, _enc, done) => void (lines.push(chunk.toString()), done()) }));
    app = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry(), logger });
    await app.register(consoleRoutes({ codes }));
    await app.ready();
  });
  after(() => app.close());

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/console/api/sign-in', headers: { 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });

  test('the code in the body gives the token once, uncached; the token works; a second use is a 410 that says so', async () => {
    const { code } = codes.issue(token);
    const res = await post({ code });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(res.json(), { token });
    const who = await app.inject({ url: '/console/api/whoami', headers: { authorization: `Bearer ${(res.json() as { token: string }).token}` } });
    assert.equal((who.json() as { sub: string }).sub, 'local-operator');

    const again = await post({ code });
    assert.equal(again.statusCode, 410);
    const e = (again.json() as { error: { code: string; message: string; errors: { path: string }[] } }).error;
    assert.equal(e.code, 'sign_in_code_used');
    assert.match(e.message, /already used/);
    assert.deepEqual(e.errors.map((x) => x.path), ['code']);
    assert.ok(!again.body.includes(code), 'the code is not echoed');
  });

  test('an expired code is a 410 saying expired; an unknown one a 404; a malformed body a 400 naming the field', async () => {
    // A store with a clock of its own: issue now, redeem a minute later.
    let clock = Date.now();
    const timed = createSignInCodes({ now: () => clock });
    const app2 = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
    await app2.register(consoleRoutes({ codes: timed }));
    const { code } = timed.issue(token, 60_000);
    clock += 60_000;
    const res = await app2.inject({ method: 'POST', url: '/console/api/sign-in', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ code }) });
    assert.equal(res.statusCode, 410);
    assert.equal((res.json() as { error: { code: string } }).error.code, 'sign_in_code_expired');
    await app2.close();

    const unknown = await post({ code: 'c'.repeat(43) });
    assert.equal(unknown.statusCode, 404);
    assert.equal((unknown.json() as { error: { code: string } }).error.code, 'sign_in_code_unknown');

    for (const body of [{}, { code: 'short' }, { code: 'x'.repeat(43), token: 'extra' }, { code: 42 }]) {
      const bad = await post(body);
      assert.equal(bad.statusCode, 400, JSON.stringify(body));
      const paths = (bad.json() as { error: { errors: { path: string }[] } }).error.errors.map((x) => x.path);
      assert.ok(paths.some((p) => p.startsWith('body')), `names the field: ${paths.join(',')}`);
    }
    const query = await app.inject({ method: 'GET', url: `/console/api/sign-in?code=${'d'.repeat(43)}` });
    // No GET route: a code in a query string is not taken (404, or 405 where the base app names the methods).
    assert.ok([404, 405].includes(query.statusCode), `GET answered ${query.statusCode}`);
    assert.ok(!query.body.includes('token'), query.body);
  });

  test('the request log has the route but never the code or the token', async () => {
    const { code } = codes.issue(token);
    lines.length = 0;
    assert.equal((await post({ code })).statusCode, 200);
    assert.equal((await post({ code })).statusCode, 410);
    const log = lines.join('');
    assert.match(log, /\/console\/api\/sign-in/, 'the logger is on and logs requests');
    assert.ok(!log.includes(code), 'no code in the log');
    assert.ok(!log.includes(token), 'no token in the log');
    assert.ok(!log.includes(token.split('.')[2] ?? '!'), 'not even the signature part');
  });
});
