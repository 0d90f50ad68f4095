// Validation, auth and tenant rules of the forensics API, without ClickHouse:
// every request here is refused before a query would run.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import { Registry } from 'prom-client';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { auditRoutes, tenantScope } from '../../services/query/routes.ts';

const secret = 'x'.repeat(40);
let app: App;
let queries = 0;
const clickhouse = {
  query: () => {
    queries++;
    throw new Error('no ClickHouse in unit tests');
  },
} as unknown as ClickHouseClient;

before(async () => {
  app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(auditRoutes({ clickhouse, database: 'tf' }));
  await app.ready();
});
after(async () => app.close());

const token = (tenant: string, scopes = ['audit:read']) => mintToken({ sub: 't', tenant, scopes }, secret);
const get = async (url: string, tenant = 'acme', scopes?: string[]) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${await token(tenant, scopes)}` } });

describe('forensics API: refusals', () => {
  test('invalid filters → 400 naming the parameter', async () => {
    const cases: [string, string][] = [
      ['/v1/audit/decisions?effect=maybe', 'effect'],
      ['/v1/audit/decisions?limit=0', 'limit'],
      ['/v1/audit/decisions?limit=100000', 'limit'],
      ['/v1/audit/decisions?from=yesterday', 'from'],
      ['/v1/audit/decisions?from=2026-06-10T00:00:00Z&to=2026-06-09T00:00:00Z', 'from'],
      ['/v1/audit/decisions?delegater=U-442', 'delegater'],
      ['/v1/audit/decisions?order=sideways', 'order'],
      ['/v1/audit/decisions/not-a-uuid', 'event_id'],
      ['/v1/audit/delegators/U-442/sessions?to=soon', 'to'],
      ['/v1/audit/delegators/U-442/sessions?from=2026-06-10T00:00:00Z&to=2026-06-10T00:00:00Z', 'from'],
      ['/v1/audit/pdps?from=2026-06-10T00:00:00Z&to=2026-06-09T00:00:00Z', 'from'],
      ['/v1/audit/sessions/S-9/timeline?limit=abc', 'limit'],
    ];
    for (const [url, param] of cases) {
      const r = await get(url);
      assert.equal(r.statusCode, 400, url);
      const body = r.json<{ error: { code: string; message: string; errors: { path: string }[] } }>();
      assert.equal(body.error.code, 'bad_request');
      assert.ok(body.error.message.includes(param) || body.error.errors.some((e) => e.path.includes(param)), `${url}: ${JSON.stringify(body)}`);
    }
  });

  test('a cursor that is not ours → 400 naming cursor', async () => {
    const r = await get('/v1/audit/decisions?cursor=bm9wZQ');
    assert.equal(r.statusCode, 400);
    assert.match(r.json<{ error: { message: string } }>().error.message, /cursor/);
  });

  test('no token → 401; token without audit:read → 403', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/v1/audit/decisions' })).statusCode, 401);
    assert.equal((await get('/v1/audit/decisions', 'acme', ['events:write'])).statusCode, 403);
  });

  test('a tenant token naming another tenant → 403', async () => {
    const r = await get('/v1/audit/decisions?tenant=globex');
    assert.equal(r.statusCode, 403);
    assert.match(r.json<{ error: { message: string } }>().error.message, /tenant/);
  });

  test('none of the refused requests reached ClickHouse', () => {
    assert.equal(queries, 0);
  });
});

describe('tenant scope', () => {
  const caller = (tenant: string) => ({ sub: 's', tenant, scopes: new Set(['audit:read']), expiresAt: 0 });
  test('own tenant always; operators choose or read all', () => {
    assert.deepEqual(tenantScope(caller('acme'), undefined), { ok: true, value: 'acme' });
    assert.deepEqual(tenantScope(caller('acme'), 'acme'), { ok: true, value: 'acme' });
    assert.equal(tenantScope(caller('acme'), 'globex').ok, false);
    assert.deepEqual(tenantScope(caller('*'), 'globex'), { ok: true, value: 'globex' });
    assert.deepEqual(tenantScope(caller('*'), undefined), { ok: true, value: undefined });
  });
});

describe('OpenAPI document', () => {
  test("one decision declares its refusals, the operator's 409 ambiguous_tenant among them", async () => {
    const docs = (await app.inject({ method: 'GET', url: '/docs/json' })).json<{ paths: Record<string, { get: { responses: Record<string, { description: string }> } }> }>();
    const responses = docs.paths['/v1/audit/decisions/{event_id}']?.get.responses ?? {};
    // Its own refusals; the base app adds 401, 431 and 503 to every documented route.
    assert.deepEqual(Object.keys(responses).sort(), ['200', '400', '401', '403', '404', '409', '431', '503']);
    assert.match(responses['409']?.description ?? '', /ambiguous_tenant.*\?tenant=/);
  });
});

describe('forensics API: accepted windows', () => {
  test('a window is ordered by instants, not by text: one ending past the year 9999 (written +010000-…) is in order', async () => {
    // The window passes validation, so the route goes on to ClickHouse (absent here: a 500, and one query attempted).
    const before = queries;
    const r = await get('/v1/audit/decisions?from=9999-12-31T23:00:00Z&to=9999-12-31T23:30:00-01:00');
    assert.notEqual(r.statusCode, 400, r.body);
    assert.equal(queries, before + 1);
  });
});
