// Preparing bodies on worker threads gives exactly what preparing them inline
// gives — records (bytes included), rejections with their reasons, body
// errors — and the HTTP answer of an app with threads is the answer without.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { buildIngestApp } from '../../services/ingest/app.ts';
import type { BodyFormat } from '../../services/ingest/body.ts';
import { inlinePreparer, threadPreparer } from '../../services/ingest/prepare-thread.ts';
import type { EventSink, OutboundRecord } from '../../services/ingest/sink.ts';
import { createAuthenticator, mintToken, type Caller } from '../../services/lib/auth.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const NOW = Date.parse('2026-06-09T19:00:00.000Z');
const bounds = { maxFutureSkewMs: 60_000, maxAgeMs: 30 * 86_400_000 };
const caller: Caller = { sub: 'gw-1', tenant: 'acme', scopes: new Set(['events:write']), expiresAt: NOW + 600_000 };
const decision = (n: number, extra: Record<string, unknown> = {}) => ({
  ...decisionFixture,
  event_id: `01976d2a-9e1b-7c3a-8d4e-${String(n).padStart(12, '0')}`,
  ...extra,
});
const mixed = [
  decision(1),
  { ...decision(2), decision: { effect: 'maybe' } },
  decision(3, { tenant_id: 'globex' }),
  decision(4, { emitted_by: 'someone-else' }),
  decision(5, { occurred_at: '2020-01-01T00:00:00Z' }),
  signalFixtures.trust_set,
  signalFixtures.injection_detected,
  decision(1),
  'not an event',
];
const bodies: [string, string | Buffer, BodyFormat][] = [
  ['bytes, with multi-byte characters', Buffer.from(JSON.stringify([decision(60, { session_id: 'S-ü-€-𝄞' })])), 'json'],
  ['a valid batch', JSON.stringify(Array.from({ length: 50 }, (_, i) => decision(100 + i))), 'json'],
  ['a mixed batch', JSON.stringify(mixed), 'json'],
  ['NDJSON', mixed.map((e) => JSON.stringify(e)).join('\n'), 'ndjson'],
  ['malformed JSON', '[\n  {"a": 1},\n  {"b": }\n]', 'json'],
  ['malformed NDJSON', '{"a":1}\n{"b":', 'ndjson'],
  ['too many events', JSON.stringify(Array.from({ length: 11 }, (_, i) => decision(i))), 'json'],
  ['a scalar', '42', 'json'],
];

describe('threadPreparer', () => {
  const threads = threadPreparer(2, { warn: (obj, msg) => assert.fail(`${msg} ${JSON.stringify(obj)}`) });
  const inline = inlinePreparer();
  after(() => threads.close());

  for (const [name, text, format] of bodies) {
    test(`${name}: the same result as inline`, async () => {
      const input = { body: text, format, limit: name === 'too many events' ? 10 : 100, caller, nowMs: NOW, bounds };
      const [a, b] = await Promise.all([threads.prepare(input), inline.prepare(input)]);
      assert.deepStrictEqual(a, b);
    });
  }

  test('many bodies at once each get their own answer', async () => {
    const inputs = Array.from({ length: 20 }, (_, k) => ({
      body: JSON.stringify(Array.from({ length: 5 }, (_, i) => decision(1000 + 10 * k + i))),
      format: 'json' as const,
      limit: 100,
      caller,
      nowMs: NOW,
      bounds,
    }));
    const got = await Promise.all(inputs.map((i) => threads.prepare(i)));
    const want = await Promise.all(inputs.map((i) => inline.prepare(i)));
    assert.deepStrictEqual(got, want);
    const ids = got.flatMap((g) => (g.ok ? g.value.events.map((e) => e.id) : []));
    assert.equal(new Set(ids).size, 100);
  });

  test('after close, bodies are prepared inline', async () => {
    const p = threadPreparer(1, { warn: () => undefined });
    await p.close();
    const input = { body: JSON.stringify([decision(7)]), format: 'json' as const, limit: 10, caller, nowMs: NOW, bounds };
    assert.deepStrictEqual(await p.prepare(input), await inline.prepare(input));
  });
});

describe('POST /v1/events with preparing threads', () => {
  const SECRET = 'unit-test-secret-of-at-least-32-characters';
  const topics = { decisions: 'd', signals: 's', sessionTrust: 't', deadLetter: 'dl' };
  const appWith = async (prepareThreads: number) => {
    const sent: OutboundRecord[] = [];
    const sink: EventSink = { send: async (r) => void sent.push(...r), ready: async () => true, close: async () => undefined };
    const app = await buildIngestApp({
      auth: createAuthenticator({ secret: SECRET }),
      registry: new Registry(),
      sink,
      topics,
      activeFreezes: async () => [],
      limits: { maxBodyBytes: 256 * 1024, maxEventsPerRequest: 100, produceTimeoutMs: 1_000 },
      clock: () => new Date(NOW),
      prepareThreads,
    });
    return { app, sent };
  };

  test('answers and records are those of the inline app, a re-send counted as a duplicate', async () => {
    const scopes = ['events:write', 'signals:soc'];
    const headers = { authorization: `Bearer ${await mintToken({ sub: 'gw-1', tenant: 'acme', scopes, ttlSeconds: 600 }, SECRET)}`, 'content-type': 'application/json' };
    const results = [];
    for (const n of [1, 0]) {
      const { app, sent } = await appWith(n);
      try {
        const first = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: JSON.stringify(mixed) });
        const again = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: JSON.stringify(mixed) });
        const bad = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: '[{"a": }]' });
        results.push({ first: [first.statusCode, first.json()], again: [again.statusCode, again.json()], bad: [bad.statusCode, bad.json()], sent });
      } finally {
        await app.close();
      }
    }
    const [threaded, inline] = results;
    assert.deepStrictEqual(threaded, inline);
    assert.equal(threaded?.first[0], 202);
    assert.ok((threaded?.sent.length ?? 0) > 0);
    assert.equal((threaded?.again[1] as { accepted: number }).accepted, 0);
    assert.equal(threaded?.bad[0], 400);
  });
});
