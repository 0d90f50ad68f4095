// POST /v1/events against a real broker: what the response reports accepted
// is exactly what is in the topic, rejected events are not, re-sends add nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { buildIngestApp } from '../../services/ingest/app.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { createKafkaSink, type EventSink } from '../../services/ingest/sink.ts';
import type { App } from '../../services/lib/http.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { decisionFixture as dated, signalFixtures } from '../fixtures/events.ts';

// Ingest refuses event times outside its horizon (30 days): the fixtures' times are moved to now.
const NOW = new Date().toISOString();
const decisionFixture = { ...dated, occurred_at: NOW };
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { readTopic } from '../helpers/ingest-readback.ts';

const SECRET = 'integration-secret-of-at-least-32-chars';

describe('ingest → Kafka', () => {
  let kafka: TestKafka;
  let sink: EventSink;
  let app: App;
  let headers: Record<string, string>;
  const topics = { decisions: uniqueName('decisions'), signals: uniqueName('signals'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };

  before(async () => {
    kafka = await getTestKafka();
    await createTopic(kafka.brokers, topics.decisions, 3);
    await createTopic(kafka.brokers, topics.signals, 3);
    sink = createKafkaSink({ kafka: createKafka(kafka.brokers, 'ingest-it'), timeoutMs: 10_000 });
    app = await buildIngestApp({
      auth: createAuthenticator({ secret: SECRET }),
      registry: new Registry(),
      sink,
      topics,
      activeFreezes: async () => [],
      limits: { maxBodyBytes: 4 * 1024 * 1024, maxEventsPerRequest: 5_000, produceTimeoutMs: 10_000 },
    });
    headers = { authorization: `Bearer ${await mintToken({ sub: 'pdp-it', tenant: 'acme', scopes: ['events:write', 'freeze:write'] }, SECRET)}` };
  });
  after(async () => {
    await app?.close();
    await sink?.close();
    await kafka?.stop();
  });

  test('the topics hold exactly the accepted events, stamped, and none of the rejected', async () => {
    const decisions = Array.from({ length: 300 }, (_, i) => ({ ...decisionFixture, event_id: uuidv7(), session_id: `S-${i % 7}` }));
    const signal = { ...signalFixtures.injection_detected, event_id: uuidv7(), occurred_at: NOW };
    const foreign = { ...decisionFixture, event_id: uuidv7(), tenant_id: 'globex' };
    const invalid = { ...decisionFixture, event_id: uuidv7(), decision: { effect: 'maybe', policy_id: 'P' } };
    const payload = [...decisions.slice(0, 150), foreign, signal, invalid, decisions[0], ...decisions.slice(150)];
    const res = await app.inject({ method: 'POST', url: '/v1/events', headers, payload });
    assert.equal(res.statusCode, 202);
    const body = res.json();
    assert.equal(body.accepted, 301);
    assert.equal(body.duplicates, 1);
    assert.deepEqual(body.rejected.map((r: { event_id: string }) => r.event_id), [foreign.event_id, invalid.event_id]);

    const storedDecisions = await readTopic(kafka.brokers, topics.decisions);
    const storedSignals = await readTopic(kafka.brokers, topics.signals);
    assert.deepEqual(storedDecisions.map((e) => e.event_id).sort(), decisions.map((e) => e.event_id).sort());
    assert.deepEqual(storedSignals.map((e) => e.event_id), [signal.event_id]);
    assert.ok([...storedDecisions, ...storedSignals].every((e) => e.emitted_by === 'pdp-it' && e.tenant_id === 'acme'));
    // Per-session order survives: one key per session, one partition per key.
    const s3 = storedDecisions.filter((e) => e.type === 'decision' && e.session_id === 'S-3').map((e) => e.event_id);
    assert.deepEqual(s3, decisions.filter((e) => e.session_id === 'S-3').map((e) => e.event_id));

    // Re-sending the whole batch is harmless: counted as duplicates, nothing new stored.
    const again = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: decisions });
    assert.deepEqual(again.json(), { accepted: 0, duplicates: 300, rejected: [] });
    assert.equal((await readTopic(kafka.brokers, topics.decisions)).length, 300);
  });

  test('NDJSON and a raised freeze land on their topics', async () => {
    const d = { ...decisionFixture, event_id: uuidv7() };
    const nd = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...headers, 'content-type': 'application/x-ndjson' }, payload: `${JSON.stringify(d)}\n` });
    assert.equal(nd.json().accepted, 1);
    const raised = await app.inject({ method: 'POST', url: '/v1/freezes', headers, payload: { scope: { resource_prefix: 'repo:' }, reason: 'INC-77', freeze_id: 'INC-77' } });
    assert.equal(raised.statusCode, 201);
    const signals = await readTopic(kafka.brokers, topics.signals);
    const freeze = signals.find((e) => e.event_id === raised.json().event_id);
    assert.ok(freeze?.type === 'signal' && freeze.kind === 'change_freeze_raised' && freeze.freeze_id === 'INC-77' && freeze.raised_by === 'pdp-it');
    assert.ok((await readTopic(kafka.brokers, topics.decisions)).some((e) => e.event_id === d.event_id));
  });

  test('/readyz is ready with the broker up', async () => {
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().checks.kafka, 'ok');
  });
});
