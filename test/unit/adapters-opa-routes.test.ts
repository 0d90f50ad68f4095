// The OPA upload endpoint without Kafka: statuses, auth, limits, and that a
// 200 comes only after the writer resolved (a fake that can fail on demand).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { DecisionEvent } from '../../schemas/events.ts';
import { adapterConfigFrom } from '../../services/adapters/config.ts';
import { OPA_LOGS_PATH, opaRoutes } from '../../services/adapters/opa.ts';
import type { DecisionWriter } from '../../services/adapters/writer.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { TrustfoldError } from '../../services/lib/errors.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { opaEvent } from './adapters-fixtures.ts';

const secret = 'unit-test-secret-unit-test-secret-0123456789';

describe('POST /v1/ingest/opa/logs', () => {
  let app: App;
  const registry = new Registry();
  const written: DecisionEvent[][] = [];
  let failWith: Error | undefined;
  const writer: DecisionWriter = {
    write: async (events) => {
      if (failWith) throw failWith;
      written.push([...events]);
    },
    close: async () => undefined,
  };
  let token: string;

  before(async () => {
    app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry });
    const opa = adapterConfigFrom({ TRUSTFOLD_OPA_MAX_UPLOAD_BYTES: '4096', TRUSTFOLD_OPA_MAX_DECOMPRESSED_BYTES: '65536', TRUSTFOLD_OPA_MAX_EVENTS: '50' }).opa;
    await app.register(opaRoutes({ writer, opa, registry, now: () => new Date('2026-06-09T15:00:00.000Z') }));
    // A JSON route outside the plugin: the plugin's raw parser must not leak into it.
    app.post('/echo', async (req) => ({ got: req.body }));
    await app.ready();
    token = await mintToken({ sub: 'opa-prod-1', tenant: 'acme', scopes: ['events:write'] }, secret);
  });
  after(() => app.close());
  beforeEach(() => {
    written.length = 0;
    failWith = undefined;
  });

  const upload = (body: Buffer, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: OPA_LOGS_PATH,
      payload: body,
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: `Bearer ${token}`, ...headers },
    });
  const gz = (v: unknown): Buffer => gzipSync(Buffer.from(JSON.stringify(v)));

  test('single event → 200 {accepted: 1}, one decision written under the token tenant, emitted_by = token sub', async () => {
    const r = await upload(gz([opaEvent()]));
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json(), { accepted: 1, partial: 0, rejected: [] });
    assert.equal(written.length, 1);
    const e = written[0]?.[0];
    assert.equal(e?.tenant_id, 'acme');
    assert.equal(e?.emitted_by, 'opa-prod-1');
    assert.equal(e?.decision.effect, 'deny');
  });

  test('batch of 20 with 5 partial events → 200, all 25 written in one write, partial counted in /metrics', async () => {
    const full = Array.from({ length: 20 }, (_, i) => opaEvent({ decision_id: `d-${i}` }));
    const partial = Array.from({ length: 5 }, (_, i) => ({ decision_id: `p-${i}`, path: 'x/allow', result: true, timestamp: '2026-06-09T14:00:00Z' }));
    const r = await upload(gz([...full, ...partial]));
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json(), { accepted: 25, partial: 5, rejected: [] });
    assert.equal(written.length, 1);
    assert.equal(written[0]?.length, 25);
    assert.equal(new Set(written[0]?.map((e) => e.event_id)).size, 25);
    const metrics = await registry.metrics();
    assert.match(metrics, /trustfold_adapter_partial_decisions_total\{engine="opa"\} 5/);
    assert.match(metrics, /trustfold_adapter_unmapped_fields_total\{engine="opa",field="session_id"\} 5/);
  });

  test('compressed body over the upload limit → 413, nothing written', async () => {
    const noise = Array.from({ length: 40 }, (_, i) => opaEvent({ decision_id: `n-${i}-${Math.random()}`, labels: { id: randomBytes(120).toString('base64') } }));
    const body = gz(noise);
    assert.ok(body.length > 4096, `fixture is ${body.length} bytes`);
    const r = await upload(body);
    assert.equal(r.statusCode, 413);
    assert.equal(r.json().error.code, 'payload_too_large');
    assert.equal(written.length, 0);
  });

  test('a small gzip that inflates past the decompressed limit → 413', async () => {
    const bomb = gzipSync(Buffer.from(`[${' '.repeat(200_000)}]`));
    assert.ok(bomb.length < 4096);
    const r = await upload(bomb);
    assert.equal(r.statusCode, 413);
    assert.match(r.json().error.message, /decompressed/);
  });

  test('more events than allowed → 413', async () => {
    const r = await upload(gz(Array.from({ length: 51 }, () => ({}))));
    assert.equal(r.statusCode, 413);
    assert.match(r.json().error.message, /51 events/);
  });

  test('malformed gzip → 400; malformed JSON → 400; not an array → 400; non-object element → 400', async () => {
    const badGzip = await upload(Buffer.from('this is not gzip at all'));
    assert.equal(badGzip.statusCode, 400);
    assert.match(badGzip.json().error.message, /malformed gzip/);
    const truncated = gz([opaEvent()]).subarray(0, 40);
    assert.equal((await upload(truncated)).statusCode, 400);
    const badJson = await upload(gzipSync(Buffer.from('[{"decision_id": ')));
    assert.equal(badJson.statusCode, 400);
    assert.match(badJson.json().error.message, /malformed JSON/);
    assert.equal((await upload(gz({ decision_id: 'x' }))).statusCode, 400);
    const el = await upload(gz([opaEvent(), 42]));
    assert.equal(el.statusCode, 400);
    assert.match(el.json().error.message, /element \[1\]/);
    assert.equal(written.length, 0);
  });

  test('identity encoding is accepted too; unknown encodings → 415', async () => {
    const plain = await upload(Buffer.from(JSON.stringify([opaEvent()])), { 'content-encoding': 'identity' });
    assert.equal(plain.statusCode, 200, plain.body);
    const br = await upload(Buffer.from('xx'), { 'content-encoding': 'br' });
    assert.equal(br.statusCode, 415);
  });

  test('Kafka not durable → 503 with Retry-After, so OPA keeps the chunk and retries', async () => {
    failWith = new TrustfoldError('kafka_timeout', 'not acknowledged by broker 10.0.0.7:9092', true);
    const r = await upload(gz([opaEvent()]));
    assert.equal(r.statusCode, 503);
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.json().error.code, 'kafka_timeout');
    assert.doesNotMatch(r.body, /10\.0\.0\.7/, "Kafka's text stays in the log");
  });

  test('decisions dated outside the bounds are not written, listed in rejected naming occurred_at; the rest of the chunk is', async () => {
    const events = [
      opaEvent({ decision_id: 't-future', timestamp: '2099-01-01T00:00:00Z' }),
      opaEvent({ decision_id: 't-ok', timestamp: '2026-06-09T14:59:30Z' }),
      opaEvent({ decision_id: 't-old', timestamp: '2020-01-01T00:00:00Z' }),
    ];
    const r = await upload(gz(events));
    assert.equal(r.statusCode, 200, r.body);
    const body = r.json<{ accepted: number; rejected: { index: number; errors: { path: string }[] }[] }>();
    assert.equal(body.accepted, 1);
    assert.deepEqual(body.rejected.map((x) => [x.index, x.errors[0]?.path]), [[0, 'occurred_at'], [2, 'occurred_at']]);
    assert.equal(written[0]?.length, 1);
    assert.match(await registry.metrics(), /trustfold_adapter_entries_total\{engine="opa",result="out_of_time_bounds"\} 2/);
  });

  test('401 before the body is read: no token and a malformed gzip body', async () => {
    const r = await app.inject({ method: 'POST', url: OPA_LOGS_PATH, payload: Buffer.from('not gzip'), headers: { 'content-encoding': 'gzip' } });
    assert.equal(r.statusCode, 401);
  });

  test('auth: no token → 401; wrong scope → 403', async () => {
    const none = await app.inject({ method: 'POST', url: OPA_LOGS_PATH, payload: gz([opaEvent()]), headers: { 'content-encoding': 'gzip' } });
    assert.equal(none.statusCode, 401);
    const reader = await mintToken({ sub: 'r', tenant: 'acme', scopes: ['audit:read'] }, secret);
    const r = await upload(gz([opaEvent()]), { authorization: `Bearer ${reader}` });
    assert.equal(r.statusCode, 403);
    assert.equal(written.length, 0);
  });

  test('routes outside the plugin keep the normal JSON parser', async () => {
    const r = await app.inject({ method: 'POST', url: '/echo', payload: { a: 1 } });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.json(), { got: { a: 1 } });
  });
});
