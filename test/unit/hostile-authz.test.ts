// Reliability scenario 5, the authorization matrix: every route × {no token,
// bad signature, expired, wrong scope, other tenant, operator} gets exactly
// the expected status, and no response to another tenant carries a byte of
// acme's data. Real plugins, real auth, real SQL (embedded ClickHouse);
// Kafka is an in-memory fake.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { closeTestClickHouse } from '../helpers/clickhouse.ts';
import { decisionEvent, printFigure } from '../reliability/harness.ts';
import { authHeader, buildHostileApp, TENANT_MARKERS, type Credential, type HostileApp } from '../reliability/hostile-app.ts';
import { opaEvent } from './adapters-fixtures.ts';

let h: HostileApp;
let base: string;
before(async () => {
  h = await buildHostileApp();
  base = await h.app.listen({ port: 0, host: '127.0.0.1' });
});
after(async () => {
  await h?.close();
  await closeTestClickHouse();
});

type Route = {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  url: () => string;
  scope: string;
  body?: () => { payload: string | Buffer; headers: Record<string, string> };
  /** Status for the acme owner, another tenant and an operator. */
  expect: { own: number; other_tenant: number; operator: number };
  /** For another tenant's token: what a 2xx body must (not) show. */
  checkOther?: (body: string) => void;
  stream?: boolean;
};

const json = (v: unknown) => ({ payload: JSON.stringify(v), headers: { 'content-type': 'application/json' } });

const routes = (): Route[] => [
  {
    name: 'POST /v1/events',
    method: 'POST',
    url: () => '/v1/events',
    scope: 'events:write',
    body: () => json([decisionEvent('acme', h.acme.session, 1)]),
    // Another tenant's events are refused one by one, inside a 202.
    expect: { own: 202, other_tenant: 202, operator: 202 },
    checkOther: (b) => assert.deepEqual(JSON.parse(b).accepted, 0, 'no event of another tenant accepted'),
  },
  {
    name: 'POST /v1/freezes',
    method: 'POST',
    url: () => '/v1/freezes',
    scope: 'freeze:write',
    body: () => json({ tenant_id: 'acme', scope: { resource_prefix: 'repo:' }, reason: 'authz matrix' }),
    expect: { own: 201, other_tenant: 403, operator: 201 },
  },
  { name: 'GET /v1/freezes', method: 'GET', url: () => '/v1/freezes?tenant=acme', scope: 'freeze:read', expect: { own: 200, other_tenant: 403, operator: 200 } },
  {
    name: 'DELETE /v1/freezes/:id',
    method: 'DELETE',
    url: () => `/v1/freezes/${h.acme.freezeId}?tenant=acme`,
    scope: 'freeze:write',
    expect: { own: 200, other_tenant: 403, operator: 200 },
  },
  { name: 'GET /v1/sessions/:id/trust', method: 'GET', url: () => `/v1/sessions/${h.acme.session}/trust`, scope: 'trust:read', expect: { own: 200, other_tenant: 404, operator: 200 } },
  {
    name: 'GET /v1/trust/stream',
    method: 'GET',
    url: () => `/v1/trust/stream?session=${h.acme.session}`,
    scope: 'trust:read',
    stream: true,
    expect: { own: 200, other_tenant: 200, operator: 200 },
    checkOther: (b) => assert.ok(!b.includes('event: trust'), `no trust frame for another tenant: ${b.slice(0, 300)}`),
  },
  {
    name: 'GET /v1/audit/decisions',
    method: 'GET',
    url: () => `/v1/audit/decisions?delegator=${h.acme.delegator}`,
    scope: 'audit:read',
    expect: { own: 200, other_tenant: 200, operator: 200 },
    checkOther: (b) => assert.deepEqual(JSON.parse(b).items, []),
  },
  { name: 'GET /v1/audit/decisions/:event_id', method: 'GET', url: () => `/v1/audit/decisions/${h.acme.decisionId}`, scope: 'audit:read', expect: { own: 200, other_tenant: 404, operator: 200 } },
  {
    name: 'GET /v1/audit/sessions/:id/timeline',
    method: 'GET',
    url: () => `/v1/audit/sessions/${h.acme.session}/timeline`,
    scope: 'audit:read',
    expect: { own: 200, other_tenant: 200, operator: 200 },
    checkOther: (b) => assert.deepEqual(JSON.parse(b).entries, []),
  },
  {
    name: 'GET /v1/audit/delegators/:user_id/sessions',
    method: 'GET',
    url: () => `/v1/audit/delegators/${h.acme.delegator}/sessions`,
    scope: 'audit:read',
    expect: { own: 200, other_tenant: 200, operator: 200 },
    checkOther: (b) => assert.deepEqual(JSON.parse(b).sessions, []),
  },
  {
    name: 'POST /v1/ingest/opa/logs',
    method: 'POST',
    url: () => '/v1/ingest/opa/logs',
    scope: 'events:write',
    body: () => ({ payload: gzipSync(JSON.stringify([opaEvent({ input: { ...(opaEvent().input as object), tenant_id: 'acme' } })])), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }),
    // A tenant token writes its own tenant whatever the event says.
    expect: { own: 200, other_tenant: 200, operator: 200 },
  },
];

const PUBLIC = ['/healthz', '/readyz', '/metrics', '/docs/json'];

/** One request; streams are read for a moment and then dropped. */
const call = async (r: Route, headers: Record<string, string>): Promise<{ status: number; body: string }> => {
  if (r.stream === true) {
    const ac = new AbortController();
    const res = await fetch(`${base}${r.url()}`, { headers, signal: ac.signal });
    let body = '';
    if (res.status === 200 && res.body !== null) {
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const stop = setTimeout(() => ac.abort(), 400);
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          body += value;
        }
      } catch {
        // aborted: read enough
      }
      clearTimeout(stop);
    } else body = await res.text();
    return { status: res.status, body };
  }
  const b = r.body?.();
  const res = await h.app.inject({ method: r.method, url: r.url(), headers: { ...headers, ...(b?.headers ?? {}) }, ...(b !== undefined ? { payload: b.payload } : {}) });
  return { status: res.statusCode, body: res.body };
};

/** acme's ids in a response that the request did not itself contain (an echoed path is no leak). */
const acmeLeaks = (body: string, request = ''): string[] => (TENANT_MARKERS['acme'] ?? []).filter((m) => body.includes(m) && !request.includes(m));
const requestText = (r: Route): string => `${r.url()} ${String(r.body?.().payload ?? '')}`;

test('authorization matrix: every route × every credential, exact status, zero cross-tenant data', { timeout: 120_000 }, async () => {
  const creds: Credential[] = ['none', 'bad_signature', 'expired', 'wrong_scope', 'other_tenant', 'operator', 'own'];
  let cells = 0;
  const table: string[] = [];
  for (const r of routes()) {
    const row: string[] = [];
    for (const c of creds) {
      const res = await call(r, await authHeader(c, r.scope));
      const want = c === 'none' || c === 'bad_signature' || c === 'expired' ? 401 : c === 'wrong_scope' ? 403 : r.expect[c];
      assert.equal(res.status, want, `${r.name} with ${c}: ${res.body.slice(0, 400)}`);
      if (want === 401 || want === 403) {
        const err = (JSON.parse(res.body) as { error: { code: string } }).error;
        assert.equal(err.code, want === 401 ? 'unauthorized' : 'forbidden', `${r.name} with ${c}`);
      }
      if (c !== 'operator' && c !== 'own') {
        assert.deepEqual(acmeLeaks(res.body, requestText(r)), [], `${r.name} with ${c} shows acme data`);
        if (c === 'other_tenant' && res.status < 300) r.checkOther?.(res.body);
      }
      if (c === 'operator' && r.method === 'GET' && !r.stream && res.status === 200 && r.name !== 'GET /v1/freezes') {
        assert.ok(acmeLeaks(res.body).length > 0, `${r.name}: an operator sees acme's data (the data is there to leak)`);
      }
      row.push(`${c}=${res.status}`);
      cells++;
    }
    table.push(`${r.name.padEnd(44)} ${row.join(' ')}`);
  }
  // Naming another tenant explicitly is refused, not silently narrowed.
  const other = await authHeader('other_tenant', 'audit:read');
  for (const url of ['/v1/audit/decisions?tenant=acme', `/v1/audit/sessions/${h.acme.session}/timeline?tenant=acme`, `/v1/audit/delegators/${h.acme.delegator}/sessions?tenant=acme`, `/v1/audit/decisions/${h.acme.decisionId}?tenant=acme`, `/v1/sessions/${h.acme.session}/trust?tenant=acme`]) {
    const res = await h.app.inject({ method: 'GET', url, headers: other });
    assert.equal(res.statusCode, 403, `${url}: ${res.body}`);
    assert.deepEqual(acmeLeaks(res.body, url), []);
    cells++;
  }
  // What another tenant's token wrote stayed in its own tenant.
  assert.ok(h.written.length > 0 && h.written.every((e) => e.tenant_id === 'acme' || e.tenant_id === 'globex'));
  const globexOpa = h.written.filter((e) => e.emitted_by === 'x' && e.tenant_id !== 'acme');
  assert.ok(globexOpa.length >= 1 && globexOpa.every((e) => e.tenant_id === 'globex'), 'the OPA upload of a globex token landed in globex');
  for (const p of PUBLIC) {
    const res = await h.app.inject({ method: 'GET', url: p });
    assert.equal(res.statusCode, 200, p);
    assert.deepEqual(acmeLeaks(res.body), [], `${p} shows tenant data`);
    cells++;
  }
  process.stdout.write(`${table.join('\n')}\n`);
  printFigure('authorization-matrix', { routes: routes().length + PUBLIC.length, credentials: creds.length, 'cases tried': cells, 'cross-tenant leaks': 0, 'unexpected statuses': 0 });
});
