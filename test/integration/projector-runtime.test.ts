// The projector on a real broker, in process: fan-out reaches TrustView,
// poison messages go to the dead-letter topic without stopping the loop,
// expiry is released by wall time alone, and a restart restores from the
// changelog without republishing or regressing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import type { SessionTrust } from '../../schemas/events.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createTrustView, type TrustView } from '../../services/pdp-client/trust-view.ts';
import { createProjector, type Projector } from '../../services/projector/runtime.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { createEventProducer, event, readTrustTopic, sessionStarted, testConfig, testEnv, waitFor } from './projector-helpers.ts';

let broker: TestKafka;
let kafka: Kafka;
const logger = createLogger('projector-test', 'silent');

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'projector-test');
});
after(async () => {
  await broker.stop();
});

test('a role revocation for a delegator with three live sessions reaches all three in TrustView', { timeout: 90_000 }, async () => {
  const env = testEnv(broker.brokers);
  const config = testConfig(env);
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: 200 });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  let view: TrustView | undefined;
  try {
    view = await createTrustView({ kafka, topic: config.topics.sessionTrust });
    await view.ready();
    const changes: SessionTrust[] = [];
    view.onChange((s) => changes.push(s));

    for (const s of ['S-1', 'S-2', 'S-3']) await producer.send(sessionStarted(s, 'U-442'));
    await producer.send(sessionStarted('S-other', 'U-9'));
    const v = view;
    await waitFor('four sessions known', () => ['S-1', 'S-2', 'S-3', 'S-other'].every((s) => v.get(s, 'acme').known));

    const revoked = event({ type: 'signal', kind: 'role_revoked', user_id: 'U-442', role: 'payments-admin' });
    await producer.send(revoked);
    await waitFor('all three degraded', () => ['S-1', 'S-2', 'S-3'].every((s) => {
      const r = v.get(s, 'acme');
      return r.known && r.state.tier === 'degraded';
    }));
    for (const s of ['S-1', 'S-2', 'S-3']) {
      const r = view.get(s, 'acme');
      assert.ok(r.known);
      assert.deepEqual(r.state.revoked_roles, ['payments-admin']);
      assert.equal(r.state.caused_by, revoked.event_id);
      assert.equal(r.version, 2);
      assert.ok(r.stalenessMs < 5_000, `staleness ${r.stalenessMs}`);
    }
    const other = view.get('S-other', 'acme');
    assert.ok(other.known);
    assert.equal(other.state.tier, 'trusted');
    assert.deepEqual(view.get('S-nope', 'acme'), { known: false, reason: 'unknown_session', stalenessMs: view.get('S-nope', 'acme').stalenessMs });
    assert.equal(view.get('S-1', 'globex').known, false, 'another tenant does not see acme sessions');
    assert.deepEqual(
      changes.filter((c) => c.caused_by === revoked.event_id).map((c) => c.session_id).sort(),
      ['S-1', 'S-2', 'S-3'],
    );
  } finally {
    await view?.close();
    await producer.close();
    await projector.stop();
  }
});

test('poison messages are dead-lettered and the loop keeps going', { timeout: 90_000 }, async () => {
  const env = testEnv(broker.brokers, 1);
  const config = testConfig(env);
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  const dlq: { offset: string; reason: string }[] = [];
  const dlqConsumer = kafka.consumer({ groupId: uniqueName('dlq-reader') });
  try {
    await producer.raw.send({ topic: config.topics.signals, messages: [{ key: 'x', value: Buffer.from('not avro at all') }] });
    await producer.send(sessionStarted('S-after-poison', 'U-1'));
    const trust = await readTrustTopic(kafka, config.topics.sessionTrust, uniqueName('raw'));
    await dlqConsumer.connect();
    await dlqConsumer.subscribe({ topic: config.topics.deadLetter, fromBeginning: true });
    await dlqConsumer.run({
      eachMessage: async ({ message }) => {
        dlq.push({ offset: message.headers?.['trustfold-dlq-offset']?.toString() ?? '', reason: message.headers?.['trustfold-dlq-reason']?.toString() ?? '' });
      },
    });
    await waitFor('state after the poison message', () => trust.records.some((s) => s.session_id === 'S-after-poison'));
    await waitFor('dead letter', () => dlq.length === 1);
    assert.deepEqual(dlq, [{ offset: '0', reason: 'bad_framing' }]);
    assert.equal(projector.stats().deadLettered, 1);
    await trust.close();
  } finally {
    await dlqConsumer.disconnect();
    await producer.close();
    await projector.stop();
  }
});

test('a cause is released at expires_at by wall time, with no new event', { timeout: 90_000 }, async () => {
  const env = testEnv(broker.brokers, 1);
  const config = testConfig(env);
  let wall = Date.now();
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: 50, now: () => wall });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  const trust = await readTrustTopic(kafka, config.topics.sessionTrust, uniqueName('raw'));
  try {
    const t0 = wall;
    await producer.send(sessionStarted('S-exp', 'U-1', { occurred_at: new Date(t0).toISOString() }));
    await producer.send(
      event({
        type: 'signal',
        kind: 'injection_detected',
        session_id: 'S-exp',
        signal_id: 'SIG-1',
        severity: 'high',
        detector: 'd',
        occurred_at: new Date(t0 + 1).toISOString(),
        expires_at: new Date(t0 + 60_000).toISOString(),
      }),
    );
    await waitFor('restricted', () => trust.records.some((s) => s.session_id === 'S-exp' && s.tier === 'restricted'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(trust.records.at(-1)?.tier, 'restricted', 'nothing released before expires_at');
    wall = t0 + 60_000; // only the clock moves
    await waitFor('released', () => trust.records.at(-1)?.tier === 'trusted');
    const last = trust.records.at(-1);
    assert.equal(last?.version, 3);
    assert.equal(last?.updated_at, new Date(t0 + 60_000).toISOString());
  } finally {
    await trust.close();
    await producer.close();
    await projector.stop();
  }
});

test('a restarted projector restores from its changelog: duplicates stay duplicates, versions continue', { timeout: 120_000 }, async () => {
  const env = testEnv(broker.brokers, 3);
  const config = testConfig(env);
  const mk = (): Projector => createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP });
  const first = mk();
  await first.start();
  const producer = await createEventProducer(kafka, config);
  const trust = await readTrustTopic(kafka, config.topics.sessionTrust, uniqueName('raw'));
  try {
    const inj = event({ type: 'signal', kind: 'injection_detected', session_id: 'S-r', signal_id: 'SIG-9', severity: 'low', detector: 'd' });
    await producer.send(sessionStarted('S-r', 'U-1'));
    await producer.send(inj);
    await producer.send(event({ type: 'signal', kind: 'trust_set', session_id: 'S-r', tier: 'trusted', reason: 'ok', set_by: 'soc' }));
    await waitFor('three versions', () => trust.records.filter((s) => s.session_id === 'S-r').length === 3);
    await first.stop();

    const second = mk();
    await second.start();
    assert.ok(second.stats().restoredRecords >= 1);
    await producer.send(inj); // the duplicate arrives after the restart
    await producer.send(event({ type: 'signal', kind: 'injection_detected', session_id: 'S-r', signal_id: 'SIG-10', severity: 'critical', detector: 'd' }));
    await waitFor('fourth version', () => trust.records.filter((s) => s.session_id === 'S-r').length >= 4);
    await new Promise((r) => setTimeout(r, 500));
    const versions = trust.records.filter((s) => s.session_id === 'S-r').map((s) => [s.version, s.tier]);
    assert.deepEqual(versions, [
      [1, 'trusted'],
      [2, 'degraded'],
      [3, 'trusted'],
      [4, 'restricted'],
    ]);
    await second.stop();
  } finally {
    await trust.close();
    await producer.close();
  }
});
