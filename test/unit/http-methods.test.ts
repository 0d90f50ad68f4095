// A known path asked with a method it does not serve answers 405 with Allow
// (RFC 9110 §15.5.6), an unknown path 404 — both in the one error body.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { createAuthenticator } from '../../services/lib/auth.ts';
import { buildBaseApp, pathPattern, type App } from '../../services/lib/http.ts';

describe('HTTP shell: methods', () => {
  let app: App;
  before(async () => {
    app = await buildBaseApp({ auth: createAuthenticator({ secret: 'unit-test-secret-unit-test-secret-0123456789' }), registry: new Registry(), readiness: [] });
    app.get('/v1/things/:id', async (req) => ({ id: (req.params as { id: string }).id }));
    app.post('/v1/things', async () => ({}));
    await app.ready();
  });
  after(() => app.close());

  test('TRACE and DELETE on a GET route: 405, Allow lists GET and HEAD', async () => {
    for (const method of ['TRACE', 'DELETE'] as const) {
      const r = await app.inject({ method, url: '/v1/things/T-1?x=1' });
      assert.equal(r.statusCode, 405, method);
      assert.equal(r.headers['allow'], 'GET, HEAD');
      assert.equal(r.json<{ error: { code: string } }>().error.code, 'method_not_allowed');
    }
  });

  test('QUERY, a method with a body, without Content-Type: 405 too, not the body error', async () => {
    const r = await app.inject({ method: 'QUERY' as 'GET', url: '/v1/things/T-1' });
    assert.equal(r.statusCode, 405);
    assert.equal(r.headers['allow'], 'GET, HEAD');
  });

  test('an unknown path is still 404', async () => {
    const r = await app.inject({ method: 'TRACE', url: '/v1/nothing' });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'not_found');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/things' })).statusCode, 405);
  });

  test('route paths as patterns', () => {
    assert.ok(pathPattern('/v1/sessions/:id/trust').test('/v1/sessions/S%2F1/trust'));
    assert.ok(!pathPattern('/v1/sessions/:id/trust').test('/v1/sessions/a/b/trust'));
    assert.ok(pathPattern('/console/*').test('/console/app.js'));
    assert.ok(!pathPattern('/v1/a.b').test('/v1/aXb'));
  });
});
