// The emitter against a scripted ingest (a fake fetch): batching, per-event
// outcomes, retries on 503 with Retry-After, 413 splitting, flush and close.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { createEmitter, retryAfterMs, type DecisionToEmit } from '../../services/emitter/emitter.ts';
import { decisionFixture } from '../fixtures/events.ts';

type Answer = { status: number; body?: unknown; headers?: Record<string, string> } | Error;
const scriptedIngest = (answer: (batch: Record<string, unknown>[], call: number) => Answer) => {
  const batches: Record<string, unknown>[][] = [];
  const auths: string[] = [];
  const fetchFn = (async (_url: string, init: RequestInit) => {
    const batch = JSON.parse(String(init.body)) as Record<string, unknown>[];
    batches.push(batch);
    auths.push(String((init.headers as Record<string, string>).authorization));
    const a = answer(batch, batches.length - 1);
    if (a instanceof Error) throw a;
    return new Response(a.body === undefined ? null : JSON.stringify(a.body), { status: a.status, headers: a.headers ?? {} });
  }) as unknown as typeof fetch;
  return { fetchFn, batches, auths };
};
const accepted = (batch: unknown[]): Answer => ({ status: 202, body: { accepted: batch.length, duplicates: 0, rejected: [] } });

const { type: _t, event_id: _e, occurred_at: _o, ...decisionBody } = decisionFixture;
const decision = (session: string): DecisionToEmit => ({ ...decisionBody, session_id: session });

describe('emitter', () => {
  test('fills the envelope, batches by size, and resolves each emit once stored', async () => {
    const ingest = scriptedIngest((b) => accepted(b));
    const emitter = createEmitter({ url: 'http://ingest', token: 't0k', batchSize: 3, flushIntervalMs: 10_000, fetch: ingest.fetchFn, clock: () => new Date('2026-06-09T14:00:00Z') });
    const outcomes = await Promise.all(['a', 'b', 'c'].map((s) => emitter.emitDecision(decision(s))));
    assert.equal(ingest.batches.length, 1);
    assert.equal(ingest.batches[0]!.length, 3);
    const sent = ingest.batches[0]![0]!;
    assert.equal(sent['type'], 'decision');
    assert.equal(sent['occurred_at'], '2026-06-09T14:00:00.000Z');
    assert.match(String(sent['event_id']), /^[0-9a-f-]{36}$/);
    assert.equal(ingest.auths[0], 'Bearer t0k');
    assert.ok(outcomes.every((o) => o.ok));
    assert.equal(outcomes[0]!.event_id, sent['event_id']);
    assert.deepEqual({ ...emitter.stats(), buffered: 0 }, { emitted: 3, stored: 3, failed: 0, retries: 0, buffered: 0, inFlight: 0 });
  });

  test('a partial batch leaves after flushIntervalMs', async () => {
    const ingest = scriptedIngest((b) => accepted(b));
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 100, flushIntervalMs: 20, fetch: ingest.fetchFn });
    const o = await emitter.emitSignal({ kind: 'session_ended', session_id: 'S-9', tenant_id: 'acme' });
    assert.equal(o.ok, true);
    assert.equal(ingest.batches[0]![0]!['type'], 'signal');
    assert.equal(ingest.batches[0]![0]!['kind'], 'session_ended');
  });

  test('an immediate event leaves at once, with what is buffered, not after flushIntervalMs', async () => {
    const ingest = scriptedIngest((b) => accepted(b));
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 100, flushIntervalMs: 60_000, fetch: ingest.fetchFn });
    const later = emitter.emitDecision(decision('a'));
    const now = await emitter.emitDecision(decision('b'), { immediate: true });
    assert.equal(now.ok, true);
    assert.equal((await later).ok, true);
    assert.deepEqual(ingest.batches.map((b) => b.map((e) => e['session_id'])), [['a', 'b']]);
    // Nothing left behind: no timer holds an empty buffer.
    assert.deepEqual({ ...emitter.stats() }, { emitted: 2, stored: 2, failed: 0, retries: 0, buffered: 0, inFlight: 0 });
  });

  test('with every request slot taken, immediate events leave together as soon as one frees', async () => {
    const release: (() => void)[] = [];
    const batches: string[][] = [];
    const fetchFn = (async (_url: string, init: RequestInit) => {
      const batch = JSON.parse(String(init.body)) as Record<string, unknown>[];
      batches.push(batch.map((e) => String(e['session_id'])));
      await new Promise<void>((r) => release.push(r));
      return new Response(JSON.stringify({ accepted: batch.length, duplicates: 0, rejected: [] }), { status: 202 });
    }) as unknown as typeof fetch;
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 100, flushIntervalMs: 60_000, concurrency: 2, fetch: fetchFn });
    const first = [emitter.emitDecision(decision('a'), { immediate: true }), emitter.emitDecision(decision('b'), { immediate: true })];
    const queued = [emitter.emitDecision(decision('c'), { immediate: true }), emitter.emitDecision(decision('d'), { immediate: true })];
    // Turns of the event loop until `n` requests were made (bounded: a missing request fails, it does not hang).
    const requests = async (n: number): Promise<void> => {
      for (let i = 0; i < 1000 && batches.length < n; i++) await new Promise((r) => setImmediate(r));
    };
    await requests(2);
    assert.deepEqual(batches, [['a'], ['b']]);
    release.shift()?.();
    assert.equal((await first[0])?.ok, true);
    await requests(3);
    assert.deepEqual(batches, [['a'], ['b'], ['c', 'd']]);
    for (const r of release.splice(0)) r();
    assert.ok((await Promise.all([...first, ...queued])).every((o) => o.ok));
  });

  test('events ingest rejects fail individually with the field errors; the rest succeed', async () => {
    const ingest = scriptedIngest((b) => ({ status: 202, body: { accepted: b.length - 1, duplicates: 0, rejected: [{ index: 1, errors: [{ path: 'tenant_id', message: 'not yours' }] }] } }));
    const failures: string[] = [];
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 2, fetch: ingest.fetchFn, onError: (o) => failures.push(o.event_id) });
    const [a, b] = await Promise.all([emitter.emitDecision(decision('a')), emitter.emitDecision(decision('b'))]);
    assert.equal(a!.ok, true);
    assert.ok(!b!.ok);
    assert.equal(b!.error.code, 'rejected');
    assert.deepEqual(b!.error.errors, [{ path: 'tenant_id', message: 'not yours' }]);
    assert.deepEqual(failures, [b!.event_id]);
  });

  test('503 is retried, honouring Retry-After, with the same event ids', async () => {
    const ingest = scriptedIngest((b, call) => (call < 2 ? { status: 503, headers: { 'retry-after': '1' }, body: { error: { code: 'kafka_unavailable', message: 'down' } } } : accepted(b)));
    const slept: number[] = [];
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 1, fetch: ingest.fetchFn, sleep: async (ms) => void slept.push(ms) });
    const o = await emitter.emitDecision(decision('a'));
    assert.equal(o.ok, true);
    assert.equal(ingest.batches.length, 3);
    assert.deepEqual(slept, [1000, 1000]);
    assert.equal(new Set(ingest.batches.map((b) => b[0]!['event_id'])).size, 1);
    assert.equal(emitter.stats().retries, 2);
  });

  test('network errors are retried; after maxRetries the outcome is unavailable', async () => {
    const ingest = scriptedIngest(() => new TypeError('fetch failed'));
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 1, maxRetries: 3, fetch: ingest.fetchFn, sleep: async () => undefined });
    const o = await emitter.emitDecision(decision('a'));
    assert.ok(!o.ok);
    assert.equal(o.error.code, 'unavailable');
    assert.match(o.error.message, /4 attempts: fetch failed/);
    assert.equal(ingest.batches.length, 4);
  });

  test('401/403/400 are not retried', async () => {
    const ingest = scriptedIngest(() => ({ status: 403, body: { error: { code: 'forbidden', message: 'token lacks scope events:write' } } }));
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 1, fetch: ingest.fetchFn, sleep: async () => undefined });
    const o = await emitter.emitDecision(decision('a'));
    assert.ok(!o.ok && o.error.code === 'forbidden');
    assert.equal(ingest.batches.length, 1);
  });

  test('413 splits the batch until it fits', async () => {
    const ingest = scriptedIngest((b) => (b.length > 2 ? { status: 413, body: { error: { code: 'payload_too_large', message: 'too big' } } } : accepted(b)));
    const emitter = createEmitter({ url: 'http://ingest', token: 't', batchSize: 5, fetch: ingest.fetchFn });
    const outcomes = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((s) => emitter.emitDecision(decision(s))));
    assert.ok(outcomes.every((o) => o.ok));
    const delivered = ingest.batches.filter((b) => b.length <= 2).flat().map((e) => e['session_id']);
    assert.deepEqual(delivered, ['a', 'b', 'c', 'd', 'e']);
  });

  test('flush waits for every outcome; close refuses later emits; a token function is called per request', async () => {
    let n = 0;
    const ingest = scriptedIngest((b) => accepted(b));
    const emitter = createEmitter({ url: 'http://ingest', token: () => `tok-${++n}`, batchSize: 2, flushIntervalMs: 60_000, fetch: ingest.fetchFn });
    const pending = [emitter.emitDecision(decision('a')), emitter.emitDecision(decision('b')), emitter.emitDecision(decision('c'))];
    await emitter.flush();
    assert.equal(emitter.stats().stored, 3);
    assert.deepEqual(ingest.auths, ['Bearer tok-1', 'Bearer tok-2']);
    assert.ok((await Promise.all(pending)).every((o) => o.ok));
    await emitter.close();
    const late = await emitter.emitDecision(decision('d'));
    assert.ok(!late.ok && late.error.code === 'closed');
  });

  test('retryAfterMs reads seconds and HTTP dates', () => {
    assert.equal(retryAfterMs('2', 0), 2000);
    assert.equal(retryAfterMs(new Date(5_000).toUTCString(), 1_000), 4000);
    assert.equal(retryAfterMs(null, 0), undefined);
    assert.equal(retryAfterMs('soon', 0), undefined);
  });

  test('the built-in client (no fetch given): batches over keep-alive HTTP, 503 + Retry-After retried, 202 outcomes, a silent ingest times out', async () => {
    const seen: { auth: string | undefined; type: string | undefined; length: string | undefined; body: Record<string, unknown>[] }[] = [];
    let answer: (res: ServerResponse, call: number) => void = (res) => res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: 1, duplicates: 0, rejected: [] }));
    const server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ auth: req.headers.authorization, type: req.headers['content-type'], length: req.headers['content-length'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>[] });
        answer(res, seen.length - 1);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      answer = (res, call) =>
        call === 0
          ? res.writeHead(503, { 'retry-after': '0', 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'kafka_unavailable', message: 'down' } }))
          : res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: 2, duplicates: 0, rejected: [{ index: 1, errors: [{ path: 'tenant_id', message: 'not yours' }] }] }));
      const slept: number[] = [];
      const emitter = createEmitter({ url, token: 'tok', batchSize: 2, sleep: async (ms) => void slept.push(ms) });
      const [a, b] = await Promise.all([emitter.emitDecision(decision('a')), emitter.emitDecision(decision('b'))]);
      assert.equal(a.ok, true);
      assert.ok(!b.ok && b.error.code === 'rejected' && b.error.message === 'tenant_id: not yours');
      assert.equal(seen.length, 2);
      assert.deepEqual(seen[1]!.body.map((e) => e['event_id']), seen[0]!.body.map((e) => e['event_id']));
      assert.deepEqual([seen[0]!.auth, seen[0]!.type, Number(seen[0]!.length) > 0], ['Bearer tok', 'application/json', true]);
      assert.equal(emitter.stats().retries, 1);
      await emitter.close();

      answer = () => undefined; // never answers
      const silent = createEmitter({ url, token: 'tok', batchSize: 1, maxRetries: 0, requestTimeoutMs: 50 });
      const late = await silent.emitDecision(decision('c'));
      assert.ok(!late.ok && late.error.code === 'unavailable' && /no answer from ingest within 50 ms/.test(late.error.message), JSON.stringify(late));
      await silent.close();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
