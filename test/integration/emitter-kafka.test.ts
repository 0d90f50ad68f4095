// The emitter through a listening ingest into a real broker: every event the
// emitter reports stored is in the topic, with the emitter's event ids.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { createEmitter } from '../../services/emitter/emitter.ts';
import { buildIngestApp } from '../../services/ingest/app.ts';
import { createKafkaSink, type EventSink } from '../../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import type { App } from '../../services/lib/http.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { decisionFixture } from '../fixtures/events.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { readTopic } from '../helpers/ingest-readback.ts';

const SECRET = 'integration-secret-of-at-least-32-chars';
let kafka: TestKafka;
let sink: EventSink;
let app: App;
let url: string;
const topics = { decisions: uniqueName('em-decisions'), signals: uniqueName('em-signals'), sessionTrust: 'unused', deadLetter: 'unused' };

before(async () => {
  kafka = await getTestKafka();
  await createTopic(kafka.brokers, topics.decisions, 3);
  await createTopic(kafka.brokers, topics.signals, 3);
  sink = createKafkaSink({ kafka: createKafka(kafka.brokers, 'emitter-it'), timeoutMs: 10_000 });
  app = await buildIngestApp({
    auth: createAuthenticator({ secret: SECRET }),
    registry: new Registry(),
    sink,
    topics,
    activeFreezes: async () => [],
    limits: { maxBodyBytes: 4 * 1024 * 1024, maxEventsPerRequest: 1_000, produceTimeoutMs: 10_000 },
  });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
});
after(async () => {
  await app?.close();
  await sink?.close();
  await kafka?.stop();
});

test('emitDecision / emitSignal → stored in Kafka, outcomes match the topic', async () => {
  const token = await mintToken({ sub: 'gateway-7', tenant: 'acme', scopes: ['events:write'] }, SECRET);
  const emitter = createEmitter({ url, token, tenant: 'acme', batchSize: 200, flushIntervalMs: 20 });
  const { type: _t, event_id: _e, occurred_at: _o, tenant_id: _ten, ...body } = decisionFixture;
  const decisions = Array.from({ length: 1_000 }, (_, i) => emitter.emitDecision({ ...body, session_id: `S-${i % 11}` }));
  const signal = emitter.emitSignal({ kind: 'injection_detected', session_id: 'S-1', signal_id: 'SIG-1', severity: 'high', detector: 'guard' });
  const refused = emitter.emitDecision({ ...body, tenant_id: 'globex' });
  await emitter.close();
  const outcomes = await Promise.all(decisions);
  assert.ok(outcomes.every((o) => o.ok));
  assert.equal((await signal).ok, true);
  const r = await refused;
  assert.ok(!r.ok && r.error.code === 'rejected' && r.error.errors?.[0]?.path === 'tenant_id');

  const stored = await readTopic(kafka.brokers, topics.decisions);
  assert.deepEqual(stored.map((e) => e.event_id).sort(), outcomes.map((o) => o.event_id).sort());
  assert.ok(stored.every((e) => e.emitted_by === 'gateway-7'));
  const signals = await readTopic(kafka.brokers, topics.signals);
  assert.deepEqual(signals.map((e) => e.event_id), [(await signal).event_id]);
});
