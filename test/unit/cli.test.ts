// The CLI against a real ingest app served through inject (fetch → app.inject),
// so the requests it builds are checked by the same routes the SOC would hit.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { ActiveFreeze } from '../../schemas/events.ts';
import { formatFreezes, parseDuration, runCli } from '../../services/cli/cli.ts';
import { buildIngestApp } from '../../services/ingest/app.ts';
import type { OutboundRecord } from '../../services/ingest/sink.ts';
import { createAuthenticator } from '../../services/lib/auth.ts';

const SECRET = 'cli-test-secret-of-at-least-32-characters';
const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-cli-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

const harness = async (freezes: ActiveFreeze[] = []) => {
  const sent: OutboundRecord[] = [];
  const app = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry: new Registry(),
    sink: { send: async (r) => void sent.push(...r), ready: async () => true, close: async () => undefined },
    topics: { decisions: 'd', signals: 's', sessionTrust: 't', deadLetter: 'dl' },
    activeFreezes: async () => freezes,
    limits: { maxBodyBytes: 1 << 20, maxEventsPerRequest: 100, produceTimeoutMs: 1_000 },
  });
  const fetchFn = (async (url: URL, init: RequestInit) => {
    const res = await app.inject({
      method: init.method as 'GET',
      url: `${url.pathname}${url.search}`,
      headers: init.headers as Record<string, string>,
      ...(init.body !== undefined ? { payload: String(init.body) } : {}),
    });
    return new Response(res.body, { status: res.statusCode, headers: { 'content-type': 'application/json' } });
  }) as unknown as typeof fetch;
  let out = '';
  let err = '';
  const run = (argv: string[], env: Record<string, string> = { TRUSTFOLD_JWT_SECRET: SECRET }) => {
    out = '';
    err = '';
    return runCli(argv, { env, fetch: fetchFn, stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  };
  return { run, sent, output: () => ({ out, err }) };
};

describe('trustfold token', () => {
  test('mints a token the server accepts, with the asked claims', async () => {
    const h = await harness();
    assert.equal(await h.run(['token', '--sub', 'alice', '--tenant', 'acme', '--scope', 'freeze:read', '--ttl', '15m']), 0);
    const token = h.output().out.trim();
    const claims = decodeJwt(token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims['tenant'], 'acme');
    assert.equal(claims['scope'], 'freeze:read');
    assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 900);
    const verified = await createAuthenticator({ secret: SECRET }).verify(`Bearer ${token}`);
    assert.ok(verified.ok);
  });

  test('without a configured secret, the local secret in the data dir is created and reused', async () => {
    const h = await harness();
    const env = { TRUSTFOLD_DATA_DIR: dataDir };
    assert.equal(await h.run(['token', '--tenant', '*', '--scope', 'audit:read', '--scope', 'tenants:all'], env), 0);
    const secret = readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim();
    const verified = await createAuthenticator({ secret }).verify(`Bearer ${h.output().out.trim()}`);
    assert.ok(verified.ok && verified.value.tenant === '*' && verified.value.scopes.has('audit:read'));
  });

  test('no default tenant or scopes; tenant * needs tenants:all; --ttl is capped at the server maximum', async () => {
    const h = await harness();
    assert.equal(await h.run(['token', '--scope', 'audit:read']), 2);
    assert.match(h.output().err, /needs --tenant/);
    assert.equal(await h.run(['token', '--tenant', 'acme']), 2);
    assert.match(h.output().err, /at least one --scope/);
    assert.equal(await h.run(['token', '--tenant', '*', '--scope', 'audit:read']), 2);
    assert.match(h.output().err, /needs --scope tenants:all/);
    assert.equal(await h.run(['token', '--tenant', 'acme', '--scope', 'audit:read', '--ttl', '30d']), 2);
    assert.match(h.output().err, /over the 86400s the server accepts/);
    const long = { TRUSTFOLD_JWT_SECRET: SECRET, TRUSTFOLD_JWT_ALLOW_LONG_LIVED: 'true' };
    assert.equal(await h.run(['token', '--tenant', 'acme', '--scope', 'audit:read', '--ttl', '30d'], long), 0);
  });

  test('an unknown scope is a usage error (exit 2)', async () => {
    const h = await harness();
    assert.equal(await h.run(['token', '--tenant', 'acme', '--scope', 'root']), 2);
    assert.match(h.output().err, /unknown scope root/);
  });
});

describe('trustfold freeze', () => {
  test('raise sends the freeze and prints its id', async () => {
    const h = await harness();
    const code = await h.run(['freeze', 'raise', '--tenant', 'acme', '--reason', 'INC-77 ledger', '--prefix', 'repo:', '--action', 'delete_file', '--action', 'force_push', '--id', 'INC-77', '--expires', '2h']);
    assert.equal(code, 0, h.output().err);
    assert.match(h.output().out, /^raised freeze INC-77 on resources repo:\*, actions delete_file,force_push until /);
    const e = createCodec().decodeEvent(h.sent[0]!.value);
    assert.ok(e.ok && e.value.type === 'signal' && e.value.kind === 'change_freeze_raised');
    assert.equal(e.value.tenant_id, 'acme');
    assert.deepEqual(e.value.scope, { resource_prefix: 'repo:', actions: ['delete_file', 'force_push'] });
    assert.ok(e.value.expires_at !== undefined && Date.parse(e.value.expires_at) > Date.now() + 7_000_000);
  });

  test('raise without a tenant as operator reports the server error, exit 1', async () => {
    const h = await harness();
    assert.equal(await h.run(['freeze', 'raise', '--reason', 'x']), 1);
    assert.match(h.output().err, /error 400 bad_request: an operator token/);
  });

  test('list prints a table of the active freezes; --json the raw answer', async () => {
    const h = await harness([{ freeze_id: 'INC-77', scope: { resource_prefix: 'repo:' }, reason: 'ledger', raised_by: 'soc', since: '2026-06-09T14:02:30.000Z' }]);
    assert.equal(await h.run(['freeze', 'list', '--tenant', 'acme']), 0);
    assert.match(h.output().out, /^1 active freeze in tenant acme\nFREEZE +SCOPE +SINCE/);
    assert.match(h.output().out, /INC-77 +resources repo:\* +2026-06-09T14:02:30.000Z +soc +ledger/);
    assert.equal(await h.run(['freeze', 'list', '--tenant', 'acme', '--json']), 0);
    assert.equal(JSON.parse(h.output().out).freezes[0].freeze_id, 'INC-77');
  });

  test('lift of an active freeze succeeds; of an unknown one reports 404', async () => {
    const h = await harness([{ freeze_id: 'INC-77', scope: {}, reason: 'x' }]);
    assert.equal(await h.run(['freeze', 'lift', 'INC-77', '--tenant', 'acme', '--reason', 'resolved']), 0);
    assert.match(h.output().out, /^lifted freeze INC-77/);
    assert.equal(await h.run(['freeze', 'lift', 'NOPE', '--tenant', 'acme']), 1);
    assert.match(h.output().err, /error 404 not_found/);
  });

  test('a token without freeze scope exits 3', async () => {
    const h = await harness();
    assert.equal(await h.run(['token', '--tenant', 'acme', '--scope', 'trust:read']), 0);
    const token = h.output().out.trim();
    assert.equal(await h.run(['freeze', 'list', '--token', token]), 3);
    assert.match(h.output().err, /error 403 forbidden/);
  });
});

test('helpers: durations and the empty table', () => {
  assert.equal(parseDuration('2h'), 7200);
  assert.equal(parseDuration('90'), 90);
  assert.throws(() => parseDuration('soon'));
  assert.equal(formatFreezes('acme', []), 'no active freezes in tenant acme\n');
});
