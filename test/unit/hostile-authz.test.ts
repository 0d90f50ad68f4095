// Reliability scenario 5, the authorization matrix: every route × {no token,
// bad signature, expired, wrong scope, other tenant, operator} gets exactly
// the expected status, and no response to another tenant carries a byte of
// acme's data. Real plugins, real auth, real SQL (embedded ClickHouse);
// Kafka is an in-memory fake.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { closeTestClickHouse } from '../helpers/clickhouse.ts';
import { EVENT_KIND_SCOPES, mintToken } from '../../services/lib/auth.ts';
import { decisionEvent, printFigure } from '../reliability/harness.ts';
import { HOSTILE_SECRET } from '../reliability/hostile-app.ts';
import { signalFixtures } from '../fixtures/events.ts';
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
  expect: { own: number; other_tenant: number; operator: number; wrong_scope?: number };
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
    // Another tenant's events are refused one by one, inside a 202; so is a
    // decision from a token with only the SOC scopes (trust:write, freeze:write).
    expect: { own: 202, other_tenant: 202, operator: 202, wrong_scope: 202 },
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
    body: () => ({
      payload: gzipSync(JSON.stringify([opaEvent({ timestamp: new Date().toISOString(), input: { ...(opaEvent().input as object), tenant_id: 'acme' } })])),
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    }),
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
  let unexpected = 0;
  let leaks = 0;
  const table: string[] = [];
  for (const r of routes()) {
    const row: string[] = [];
    for (const c of creds) {
      const res = await call(r, await authHeader(c, r.scope));
      const want = c === 'none' || c === 'bad_signature' || c === 'expired' ? 401 : c === 'wrong_scope' ? (r.expect.wrong_scope ?? 403) : r.expect[c];
      if (res.status !== want) unexpected++;
      assert.equal(res.status, want, `${r.name} with ${c}: ${res.body.slice(0, 400)}`);
      if (want === 401 || want === 403) {
        const err = (JSON.parse(res.body) as { error: { code: string } }).error;
        assert.equal(err.code, want === 401 ? 'unauthorized' : 'forbidden', `${r.name} with ${c}`);
      }
      if (c !== 'operator' && c !== 'own') {
        leaks += acmeLeaks(res.body, requestText(r)).length;
        assert.deepEqual(acmeLeaks(res.body, requestText(r)), [], `${r.name} with ${c} shows acme data`);
        if ((c === 'other_tenant' || c === 'wrong_scope') && res.status < 300) r.checkOther?.(res.body);
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
  printFigure('authorization-matrix', { routes: routes().length + PUBLIC.length, credentials: creds.length, 'cases tried': cells, 'cross-tenant leaks': leaks, 'unexpected statuses': unexpected });
});

/** A token of tenant acme with exactly these scopes. */
const withScopes = async (scopes: string[], sub = 'x'): Promise<Record<string, string>> => ({
  authorization: `Bearer ${await mintToken({ sub, tenant: 'acme', scopes }, HOSTILE_SECRET)}`,
});
type Ingested = { accepted: number; duplicates: number; rejected: { index: number; errors: { path: string; message: string }[] }[] };
const post = async (headers: Record<string, string>, events: unknown[]): Promise<{ status: number; body: Ingested }> => {
  const res = await h.app.inject({ method: 'POST', url: '/v1/events', headers: { ...headers, 'content-type': 'application/json' }, payload: JSON.stringify(events) });
  return { status: res.statusCode, body: res.json<Ingested>() };
};

test('event kinds × scopes, actor fields, event times and cross-tenant ids on POST /v1/events', { timeout: 60_000 }, async () => {
  const now = Date.now();
  const at = (ms: number) => new Date(now + ms).toISOString();
  const kinds = Object.keys(EVENT_KIND_SCOPES) as (keyof typeof EVENT_KIND_SCOPES)[];
  const scopes = [...new Set(Object.values(EVENT_KIND_SCOPES))];
  let n = 0;
  const eventOf = (kind: string, sub: string): Record<string, unknown> => {
    const id = `01976d30-0000-7000-8000-${String(++n).padStart(12, '0')}`;
    if (kind === 'decision') return { ...decisionEvent('acme', 'S-kinds', n, now), event_id: id };
    const { set_by: _s, raised_by: _r, lifted_by: _l, ...rest } = signalFixtures[kind as keyof typeof signalFixtures] as Record<string, unknown>;
    return { ...rest, event_id: id, occurred_at: at(0), emitted_by: sub };
  };
  // Every kind with every single scope: accepted exactly when the scope is the kind's.
  let kindCells = 0;
  let wrongVerdicts = 0;
  let silentDrops = 0;
  for (const scope of scopes) {
    const headers = await withScopes([scope]);
    const batch = kinds.map((k) => eventOf(k, 'x'));
    const { status, body } = await post(headers, batch);
    assert.equal(status, 202);
    const refused = new Set(body.rejected.map((r) => r.index));
    for (const [i, k] of kinds.entries()) {
      const shouldPass = EVENT_KIND_SCOPES[k] === scope;
      if (refused.has(i) === shouldPass) wrongVerdicts++;
      const r = body.rejected.find((x) => x.index === i);
      if (r !== undefined) assert.match(r.errors[0]?.message ?? '', new RegExp(`need scope ${EVENT_KIND_SCOPES[k]}`), `${k} with ${scope}`);
      kindCells++;
    }
    if (body.accepted + body.duplicates + body.rejected.length !== batch.length) silentDrops++;
  }
  assert.equal(wrongVerdicts, 0);
  assert.equal(silentDrops, 0);
  // Actor fields: another name than the token's sub is refused, naming the field.
  const soc = await withScopes(['trust:write', 'freeze:write', 'events:write'], 'soc-1');
  const forgedActors = [
    { ...eventOf('trust_set', 'soc-1'), set_by: 'someone-else' },
    { ...eventOf('change_freeze_lifted', 'soc-1'), lifted_by: 'someone-else' },
    { ...eventOf('change_freeze_raised', 'soc-1'), raised_by: 'someone-else' },
    { ...eventOf('decision', 'soc-1'), emitted_by: 'someone-else' },
  ];
  const actors = await post(soc, forgedActors);
  const actorRefusals = actors.body.rejected.filter((r) => ['set_by', 'lifted_by', 'raised_by', 'emitted_by'].includes(r.errors[0]?.path ?? '')).length;
  assert.equal(actorRefusals, forgedActors.length);
  // Event times: ahead of the skew or older than the horizon are refused naming occurred_at.
  const times = [at(365 * 86_400_000 * 70), at(3_600_000), at(-40 * 86_400_000), '1970-01-01T00:00:00.000Z', at(-1000)];
  const timed = await post(soc, times.map((t) => ({ ...eventOf('trust_set', 'soc-1'), occurred_at: t })));
  const timeRefusals = timed.body.rejected.filter((r) => r.errors[0]?.path === 'occurred_at').length;
  assert.equal(timeRefusals, times.length - 1);
  // Cross-tenant ids: globex reusing an acme id is globex's own event, not acme's duplicate; changed content is a conflict.
  const acme = eventOf('decision', 'x');
  await post(await withScopes(['events:write']), [acme]);
  const globex = { authorization: `Bearer ${await mintToken({ sub: 'x', tenant: 'globex', scopes: ['events:write'] }, HOSTILE_SECRET)}` };
  const reused = await post(globex, [{ ...acme, tenant_id: 'globex' }]);
  assert.deepEqual([reused.body.accepted, reused.body.duplicates], [1, 0]);
  const changed = await post(await withScopes(['events:write']), [{ ...acme, session_id: 'S-moved' }]);
  const conflicts = changed.body.rejected.filter((r) => r.errors[0]?.path === 'event_id').length;
  assert.equal(conflicts, 1);
  printFigure('ingest-kinds-scopes', {
    'kind × scope cells': kindCells,
    'wrong verdicts': wrongVerdicts,
    'silently dropped batches': silentDrops,
    'forged actors refused': `${actorRefusals}/${forgedActors.length}`,
    'out-of-bounds times refused': `${timeRefusals}/${times.length - 1}`,
    'cross-tenant id reuse accepted as own': reused.body.accepted,
    'changed-content re-sends refused': conflicts,
  });
});
