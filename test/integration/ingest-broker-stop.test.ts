// The broker dies while gateways are sending. Every 202 must be backed by
// records in Kafka (checked after restarting the broker on the same data);
// requests that could not be acknowledged get 503 + Retry-After, never 202.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { buildIngestApp } from '../../services/ingest/app.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { createKafkaSink } from '../../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { startKafkaBroker, type KafkaBroker } from '../../services/local-kafka/index.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { decisionFixture as dated } from '../fixtures/events.ts';

// Ingest refuses event times outside its horizon (30 days): the fixture's time is moved to now.
const decisionFixture = { ...dated, occurred_at: new Date().toISOString() };
import { createTopic } from '../helpers/kafka.ts';
import { readTopic } from '../helpers/ingest-readback.ts';

const SECRET = 'integration-secret-of-at-least-32-chars';
const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-ingest-stop-'));
const live: KafkaBroker[] = [];
after(async () => {
  for (const b of live) await b.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('broker stopped mid-traffic: 503 + Retry-After, and every 202 is really stored', { timeout: 180_000 }, async () => {
  const first = await startKafkaBroker({ dataDir });
  live.push(first);
  const topics = { decisions: 'stop-decisions', signals: 'stop-signals', sessionTrust: 'stop-trust', deadLetter: 'stop-dlq' };
  await createTopic(first.brokers, topics.decisions, 3);
  const sink = createKafkaSink({ kafka: createKafka(first.brokers, 'ingest-stop'), timeoutMs: 1_500, retryBackoffMs: 100 });
  const app = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry: new Registry(),
    sink,
    topics,
    activeFreezes: async () => [],
    limits: { maxBodyBytes: 4 * 1024 * 1024, maxEventsPerRequest: 5_000, produceTimeoutMs: 1_500 },
  });
  const headers = { authorization: `Bearer ${await mintToken({ sub: 'pdp', tenant: 'acme', scopes: ['events:write'] }, SECRET)}` };
  const post = async () => {
    const events = Array.from({ length: 100 }, (_, i) => ({ ...decisionFixture, event_id: uuidv7(), session_id: `S-${i % 5}` }));
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: events });
    return { res, ids: events.map((e) => e.event_id) };
  };

  const acceptedIds: string[] = [];
  const unavailable: { retryAfter: unknown; code: string }[] = [];
  let stopped = false;
  // Four concurrent senders; the broker is stopped while they run.
  const sender = async () => {
    for (let round = 0; round < 400 && unavailable.length < 8; round++) {
      const { res, ids } = await post();
      if (res.statusCode === 202) {
        assert.equal(res.json().accepted, ids.length);
        acceptedIds.push(...ids);
      } else {
        assert.equal(res.statusCode, 503, res.body);
        unavailable.push({ retryAfter: res.headers['retry-after'], code: res.json().error.code });
      }
      if (!stopped && acceptedIds.length >= 2_000) {
        stopped = true;
        await first.stop();
      }
    }
  };
  await Promise.all([sender(), sender(), sender(), sender()]);
  assert.ok(stopped, 'the broker was stopped during traffic');
  assert.ok(acceptedIds.length >= 2_000);
  assert.ok(unavailable.length >= 1, 'requests after the stop got 503');
  assert.ok(unavailable.every((u) => u.retryAfter === '2' && ['kafka_timeout', 'kafka_unavailable'].includes(u.code)));

  // A request after the stop is bounded by the produce timeout, not hung.
  const started = Date.now();
  const late = await post();
  assert.equal(late.res.statusCode, 503);
  assert.ok(Date.now() - started < 5_000, `503 took ${Date.now() - started} ms`);
  await app.close();
  await sink.close();

  // Same data, new process: everything that was answered 202 is there.
  const second = await startKafkaBroker({ dataDir });
  live.push(second);
  const stored = new Set((await readTopic(second.brokers, topics.decisions, 60_000)).map((e) => e.event_id));
  const missing = acceptedIds.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${acceptedIds.length} acknowledged events are not in Kafka`);
});
