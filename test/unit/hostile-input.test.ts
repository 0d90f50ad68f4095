// Reliability scenario 4, hostile HTTP input: a fast-check corpus of bodies,
// path segments and query strings — wrong types, deep nesting, huge strings,
// unicode edge cases, prototype-pollution keys, SQL injection in every audit
// filter — against every route. Only 2xx or 4xx; a 400 names the field; never
// a 5xx, never a crash, and Object.prototype stays clean.
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { queryHash } from '../../services/query/cursor.ts';
import { closeTestClickHouse } from '../helpers/clickhouse.ts';
import { decisionEvent, envInt, printFigure } from '../reliability/harness.ts';
import { authHeader, buildHostileApp, type HostileApp } from '../reliability/hostile-app.ts';

let h: HostileApp;
let auth: Record<string, string>;
let operator: Record<string, string>;
before(async () => {
  h = await buildHostileApp();
  auth = await authHeader('own', '');
  operator = await authHeader('operator', '');
});
after(async () => {
  await h?.close();
  await closeTestClickHouse();
});

const RUNS = envInt('RELIABILITY_HOSTILE_RUNS', 100);

const SQL = ["' OR 1=1 --", "acme' OR tenant != '", "'); DROP TABLE decisions; --", '{tenant:String}', "\\' OR ''='", '1; SELECT * FROM system.tables', "' UNION SELECT * FROM trustfold.decisions --", '%27%20OR%201%3D1'];
const UNICODE = ['\u0000', '\ud800', '\udfff', '\u202e', '\ufeff', '𝕏', '🦄'.repeat(50), 'e\u0301', '\u200b', 'İ', '\uFFFF', '\r\n', '../../etc/passwd'];
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', '__proto__[polluted]', 'constructor[prototype][polluted]', 'constructor.prototype.polluted'];

const hostileString = fc.oneof(
  fc.constantFrom(...SQL, ...UNICODE, ...PROTO_KEYS, '%RAW%ED%A0%80', '%RAW%FF%FE', '%RAW%', '%RAW%zz', '%RAW%00'),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.string({ unit: 'grapheme', maxLength: 64 }),
  fc.integer({ min: 257, max: 70_000 }).map((n) => 'x'.repeat(n)),
  fc.constantFrom('', ' ', '-1', '0', '1e309', 'NaN', 'true', 'null', '[]', '{}', '2026-13-45T99:99:99Z'),
);

/** Any JSON value, deep or wide, with hostile strings and keys. */
const hostileJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    hostileString,
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.oneof(fc.constantFrom(...PROTO_KEYS), hostileString), tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** Bodies as raw text: JSON of hostile values, an event with one field replaced, deep nesting, pollution keys, broken text. */
const eventMutant = fc.tuple(fc.constantFrom('event_id', 'type', 'tenant_id', 'occurred_at', 'session_id', 'chain', 'token', 'request', 'decision', 'outcome', 'provenance', 'kind', 'extra'), hostileJson).map(([k, v]) => {
  const e: Record<string, unknown> = { ...decisionEvent('acme', 'S-h', 1) };
  e[k] = v;
  return e;
});
const deep = fc.integer({ min: 50, max: 5000 }).map((n) => `${'['.repeat(n)}1${']'.repeat(n)}`);
const deepObject = fc.integer({ min: 50, max: 3000 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`);
const protoBody = fc.constantFrom(
  '{"__proto__":{"polluted":1}}',
  '[{"__proto__":{"polluted":1},"type":"decision"}]',
  '{"constructor":{"prototype":{"polluted":1}}}',
  '[{"type":"decision","tenant_id":"acme","constructor":{"prototype":{"polluted":1}}}]',
  '{"tenant_id":"acme","scope":{"__proto__":{"polluted":1}},"reason":"x"}',
);
const hostileBody = fc.oneof(
  hostileJson.map((v) => JSON.stringify(v) ?? 'null'),
  fc.array(eventMutant, { minLength: 1, maxLength: 3 }).map((a) => JSON.stringify(a)),
  fc.array(eventMutant, { minLength: 1, maxLength: 3 }).map((a) => a.map((x) => JSON.stringify(x)).join('\n')),
  deep,
  deepObject,
  protoBody,
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constantFrom('', '{', '[1,', '{"a":1}{"b":2}', '\u0000', 'null', '"x"', '[null]', '[[]]'),
);

const AUDIT_FILTERS = ['session', 'delegator', 'agent', 'tool', 'action', 'resource', 'effect', 'rule', 'policy', 'jti', 'from', 'to', 'order', 'limit', 'cursor', 'tenant'];
const TRUST_PARAMS = ['session', 'delegator', 'tenant', 'snapshot', 'last_event_id'];
/** Percent-encoding that also carries lone surrogates (as their raw UTF-16 → WTF-8 bytes) and broken escapes. */
const pct = (s: string): string => {
  if (s.startsWith('%RAW')) return s.slice(4);
  try {
    return encodeURIComponent(s);
  } catch {
    return [...Buffer.from(s, 'utf16le')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  }
};
const query = (keys: string[]) =>
  fc
    .array(fc.tuple(fc.oneof(fc.constantFrom(...keys), fc.constantFrom(...PROTO_KEYS), hostileString), hostileString), { minLength: 1, maxLength: 6 })
    .map((pairs) => pairs.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&'));
const segment = hostileString.filter((s) => s !== '').map(pct);

type Case = { method: 'GET' | 'POST' | 'DELETE'; url: string; payload?: string | Buffer; headers?: Record<string, string> };

const CONTENT_TYPES = ['application/json', 'application/x-ndjson', 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x'];

const cases: fc.Arbitrary<Case> = fc.oneof(
  fc.tuple(hostileBody, fc.constantFrom(...CONTENT_TYPES)).map(([b, ct]) => ({ method: 'POST' as const, url: '/v1/events', payload: b, headers: { 'content-type': ct } })),
  hostileBody.map((b) => ({ method: 'POST' as const, url: '/v1/freezes', payload: b, headers: { 'content-type': 'application/json' } })),
  fc.tuple(hostileJson, hostileJson, hostileJson).map(([scope, reason, tenant]) => ({ method: 'POST' as const, url: '/v1/freezes', payload: JSON.stringify({ tenant_id: tenant, scope, reason }), headers: { 'content-type': 'application/json' } })),
  query(['tenant']).map((q) => ({ method: 'GET' as const, url: `/v1/freezes?${q}` })),
  fc.tuple(segment, query(['tenant', 'reason'])).map(([id, q]) => ({ method: 'DELETE' as const, url: `/v1/freezes/${id}?${q}` })),
  fc.tuple(segment, query(['tenant'])).map(([id, q]) => ({ method: 'GET' as const, url: `/v1/sessions/${id}/trust?${q}` })),
  // Streams that pass validation would never end: a required bad value keeps each case a refusal.
  query(TRUST_PARAMS).map((q) => ({ method: 'GET' as const, url: `/v1/trust/stream?${q}&snapshot=maybe` })),
  query(AUDIT_FILTERS).map((q) => ({ method: 'GET' as const, url: `/v1/audit/decisions?${q}` })),
  fc.tuple(fc.constantFrom(...AUDIT_FILTERS.slice(0, 10)), fc.constantFrom(...SQL)).map(([f, v]) => ({ method: 'GET' as const, url: `/v1/audit/decisions?${f}=${pct(v)}` })),
  fc.tuple(segment, query(['tenant'])).map(([id, q]) => ({ method: 'GET' as const, url: `/v1/audit/decisions/${id}?${q}` })),
  fc.tuple(segment, query(['tenant', 'limit', 'cursor'])).map(([id, q]) => ({ method: 'GET' as const, url: `/v1/audit/sessions/${id}/timeline?${q}` })),
  fc.tuple(segment, query(['tenant', 'limit', 'cursor', 'from', 'to'])).map(([id, q]) => ({ method: 'GET' as const, url: `/v1/audit/delegators/${id}/sessions?${q}` })),
  fc.tuple(hostileJson, fc.boolean()).map(([v, gz]) => {
    const text = JSON.stringify(Array.isArray(v) ? v : [v]) ?? '[]';
    return { method: 'POST' as const, url: '/v1/ingest/opa/logs', payload: gz ? gzipSync(text) : text, headers: gz ? { 'content-encoding': 'gzip', 'content-type': 'application/json' } : { 'content-type': 'application/json' } };
  }),
  hostileBody.map((b) => ({ method: 'POST' as const, url: '/v1/ingest/opa/logs', payload: gzipSync(b), headers: { 'content-encoding': 'gzip' } })),
);

type Outcome = { status: number; body: string };
const statuses = new Map<number, number>();
const fiveHundreds: string[] = [];
const unnamed: string[] = [];

const send = async (c: Case, as: Record<string, string>): Promise<Outcome> => {
  const res = await h.app.inject({ method: c.method, url: c.url, headers: { ...as, ...(c.headers ?? {}) }, ...(c.payload !== undefined ? { payload: c.payload } : {}) });
  statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
  return { status: res.statusCode, body: res.body };
};

const isJson = (body: string): boolean => {
  try {
    JSON.parse(body);
    return true;
  } catch {
    return false;
  }
};

/** A 400 must say which field (or which line/column) is wrong. */
const namesAField = (body: string): boolean => {
  const e = (JSON.parse(body) as { error?: { message?: string; errors?: { path?: unknown }[] } }).error;
  if (e === undefined) return false;
  return (e.errors ?? []).some((x) => typeof x.path === 'string' && x.path !== '');
};


const check = (c: Case, r: Outcome): void => {
  const what = `${c.method} ${c.url.slice(0, 200)} ${String(c.payload ?? '').slice(0, 200)} → ${r.status} ${r.body.slice(0, 300)}`;
  if (r.status >= 500) fiveHundreds.push(what);
  assert.ok(r.status < 500, what);
  assert.ok(r.status >= 200, what);
  if (r.status === 400 && !isJson(r.body)) unnamed.push(what);
  else if (r.status === 400 && !namesAField(r.body)) unnamed.push(what);
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined, `Object.prototype polluted by ${what}`);
};

test('hostile input: generated bodies and query strings on every route get 2xx/4xx, a 400 names the field, never a 5xx', { timeout: 300_000 }, async () => {
  let tried = 0;
  await fc.assert(
    fc.asyncProperty(cases, fc.boolean(), async (c, asOperator) => {
      tried++;
      check(c, await send(c, asOperator ? operator : auth));
    }),
    envInt('RELIABILITY_HOSTILE_SEED', 0) === 0 ? { numRuns: RUNS * 14 } : { numRuns: RUNS * 14, seed: envInt('RELIABILITY_HOSTILE_SEED', 0) },
  );
  // SQL injection in every audit filter, every path, as a fixed set as well.
  for (const s of SQL) {
    for (const f of AUDIT_FILTERS) {
      const c: Case = { method: 'GET', url: `/v1/audit/decisions?${f}=${encodeURIComponent(s)}` };
      const r = await send(c, auth);
      check(c, r);
      if (r.status === 200) assert.ok(!r.body.includes('globex'), `${f}=${s} reached another tenant`);
      tried++;
    }
    for (const url of [`/v1/audit/sessions/${encodeURIComponent(s)}/timeline`, `/v1/audit/delegators/${encodeURIComponent(s)}/sessions`, `/v1/sessions/${encodeURIComponent(s)}/trust`]) {
      const c: Case = { method: 'GET', url };
      const r = await send(c, auth);
      check(c, r);
      if (r.status === 200) assert.ok(!r.body.includes('globex'), `${url} reached another tenant`);
      tried++;
    }
  }
  // 20 000 nested brackets (a stack overflow in the error locator once) and forged cursors (a ClickHouse error once): 400s naming the field.
  const deepCases: Case[] = [
    { method: 'POST', url: '/v1/events', payload: '['.repeat(20_000), headers: { 'content-type': 'application/json' } },
    { method: 'POST', url: '/v1/events', payload: `{}\n${'['.repeat(20_000)}`, headers: { 'content-type': 'application/x-ndjson' } },
    { method: 'POST', url: '/v1/events', payload: `${'['.repeat(20_000)}${']'.repeat(20_000)}`, headers: { 'content-type': 'application/json' } },
    { method: 'POST', url: '/v1/freezes', payload: '['.repeat(20_000), headers: { 'content-type': 'application/json' } },
  ];
  const forge = (k: unknown[]): string => Buffer.from(JSON.stringify({ v: 1, q: 'x'.repeat(16), k })).toString('base64url');
  const forgedKeys = [['not-a-time', '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e'], ['2026-06-09T14:03:11.000Z', 'not-a-uuid'], ['2026-06-09T14:03:11.000Z', 1e308, 'x'], [1, 2, 3]];
  let cursorRefusals = 0;
  const cursorCases: Case[] = [];
  for (const k of forgedKeys) {
    cursorCases.push({ method: 'GET', url: `/v1/audit/decisions?cursor=${forge(k)}` }, { method: 'GET', url: `/v1/audit/sessions/${h.acme.session}/timeline?cursor=${forge(k)}` }, { method: 'GET', url: `/v1/audit/delegators/${h.acme.delegator}/sessions?cursor=${forge(k)}` });
  }
  for (const c of [...deepCases, ...cursorCases]) {
    const r = await send(c, auth);
    check(c, r);
    if (c.url.includes('cursor=') && r.status === 400 && r.body.includes('cursor')) cursorRefusals++;
    tried++;
  }
  // A forged cursor carries the real query hash once the route's filters are known; build those too.
  for (const [route, k] of [['decisions', forgedKeys[0]], ['decisions', forgedKeys[1]]] as const) {
    const q = queryHash(route, { tenant: 'acme', order: 'asc' });
    const c: Case = { method: 'GET', url: `/v1/audit/decisions?cursor=${Buffer.from(JSON.stringify({ v: 1, q, k })).toString('base64url')}` };
    const r = await send(c, auth);
    check(c, r);
    assert.equal(r.status, 400, r.body);
    if (r.body.includes('cursor')) cursorRefusals++;
    tried++;
  }
  assert.equal(cursorRefusals, cursorCases.length + 2);
  // Still alive and the data intact.
  assert.equal((await h.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  const rows = await h.clickhouse.query({ query: 'SELECT count() AS n FROM system.tables WHERE name = \'decisions\'', format: 'JSONEachRow' });
  assert.ok(Number((await rows.json<{ n: string | number }>())[0]?.n) >= 1, 'the decisions table is still there');
  assert.deepEqual(unnamed.slice(0, 5), [], `${unnamed.length} 400 answers name no field`);
  printFigure('hostile-input', {
    'cases tried': tried,
    '5xx': fiveHundreds.length,
    'forged cursors refused naming cursor': cursorRefusals,
    'alive after': (await h.app.inject({ method: 'GET', url: '/healthz' })).statusCode === 200 ? 'yes' : 'no',
    statuses: [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}:${n}`).join(' '),
  });
});
