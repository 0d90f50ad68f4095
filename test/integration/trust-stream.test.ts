// End to end on a real broker: signal → projector → session-trust topic →
// TrustView → (a) the SSE stream, which delivers the change and resumes with
// Last-Event-ID, and (b) the example PDP, which denies under the new trust and
// emits a decision carrying the trust_version it used.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import type { SessionTrust } from '../../schemas/events.ts';
import { createPdpGate, kafkaDecisionEmitter } from '../../examples/pdp/gate.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp } from '../../services/lib/http.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createTrustView } from '../../services/pdp-client/trust-view.ts';
import type { Delivery } from '../../services/projector/config.ts';
import { createProjector } from '../../services/projector/runtime.ts';
import { trustRoutes } from '../../services/trust-api/routes.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { openSse } from '../helpers/sse.ts';
import { codec, createEventProducer, event, sessionStarted, testConfig, testEnv, waitFor } from '../helpers/projector.ts';

let broker: TestKafka;
let kafka: Kafka;
before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'trust-stream-test');
});
after(async () => {
  await broker.stop();
});

const modes: Delivery[] = process.env['TEST_PROJECTOR_DELIVERY'] === undefined ? ['transactional', 'idempotent'] : [process.env['TEST_PROJECTOR_DELIVERY'] as Delivery];

for (const delivery of modes)
test(`[${delivery}] SSE delivers a change and resumes with Last-Event-ID; the PDP denies under it and reports the trust_version`, { timeout: 120_000 }, async () => {
  const env = testEnv(broker.brokers);
  const config = testConfig(env);
  const projector = createProjector({ kafka, config, logger: createLogger('t', 'silent'), groupId: env.TRUSTFOLD_PROJECTOR_GROUP, delivery });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  const view = await createTrustView({ kafka, topic: config.topics.sessionTrust, readUncommitted: delivery === 'idempotent' });
  await view.ready();
  const secret = 's'.repeat(40);
  const app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(trustRoutes({ view, heartbeatMs: 200 }));
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  const headers = { authorization: `Bearer ${await mintToken({ sub: 'pdp', tenant: 'acme', scopes: ['trust:read'] }, secret)}` };
  const decisions: { trust_version: number | undefined; effect: string }[] = [];
  const decisionReader = kafka.consumer({ groupId: uniqueName('decisions') });
  try {
    await producer.send(sessionStarted('S-sse', 'U-442'));
    await waitFor('session known', () => view.get('S-sse', 'acme').known);

    const s1 = await openSse(`${base}/v1/trust/stream?session=S-sse&snapshot=false`, headers);
    await producer.send(event({ type: 'signal', kind: 'injection_detected', session_id: 'S-sse', signal_id: 'SIG-1', severity: 'high', detector: 'd' }));
    await s1.until((fs) => fs.some((f) => f.event === 'trust'));
    const got = JSON.parse(s1.frames.find((f) => f.event === 'trust')?.data ?? '{}') as SessionTrust;
    assert.deepEqual([got.session_id, got.version, got.tier], ['S-sse', 2, 'restricted']);
    const lastId = s1.frames.filter((f) => f.event === 'trust').at(-1)?.id ?? '';
    s1.close();

    // The PDP judges the next call against version 2 and says so.
    const gate = createPdpGate({ view, emit: kafkaDecisionEmitter(producer.raw, config.topics, codec), pdpId: 'pdp-it' });
    const verdict = await gate.callTool({ tenant_id: 'acme', session_id: 'S-sse', tool: 'git', action: 'delete_file', resource: 'repo:R' });
    assert.equal(verdict.effect, 'deny');
    assert.equal(verdict.trust_version, 2);
    await decisionReader.connect();
    await decisionReader.subscribe({ topic: config.topics.decisions, fromBeginning: true });
    await decisionReader.run({
      eachMessage: async ({ message }) => {
        const r = message.value === null ? undefined : codec.decodeEvent(message.value);
        if (r?.ok && r.value.type === 'decision') decisions.push({ trust_version: r.value.decision.trust_version, effect: r.value.decision.effect });
      },
    });
    await waitFor('decision on Kafka', () => decisions.length === 1);
    assert.deepEqual(decisions, [{ trust_version: 2, effect: 'deny' }]);

    // A change while disconnected arrives on resume, and nothing before it.
    await producer.send(event({ type: 'signal', kind: 'session_ended', session_id: 'S-sse' }));
    await waitFor('ended in view', () => {
      const r = view.get('S-sse', 'acme');
      return r.known && r.state.ended;
    });
    const s2 = await openSse(`${base}/v1/trust/stream?session=S-sse`, { ...headers, 'last-event-id': lastId });
    await s2.until((fs) => fs.some((f) => f.event === 'trust'));
    await s2.until((fs) => fs.some((f) => f.comment?.startsWith('heartbeat') === true));
    const resumed = s2.frames.filter((f) => f.event === 'trust').map((f) => (JSON.parse(f.data ?? '{}') as SessionTrust).version);
    assert.deepEqual(resumed, [3]);
    s2.close();
  } finally {
    await decisionReader.disconnect();
    await app.close();
    await view.close();
    await producer.close();
    await projector.stop();
  }
});
