// The projector on a real broker, in process: fan-out reaches TrustView,
// poison messages go to the dead-letter topic without stopping the loop,
// expiry is released by wall time alone, and a restart restores from the
// changelog without republishing or regressing. Every test runs in both
// delivery modes; the last one forges a crash of the idempotent mode between
// publishing states and recording them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import type { SessionTrust } from '../../schemas/events.ts';
import { createKafka, ensureTopics, sessionKey, topicLayout } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createTrustView, type TrustView } from '../../services/pdp-client/trust-view.ts';
import type { Delivery } from '../../services/projector/config.ts';
import { evolveAll, initialWorld } from '../../services/projector/evolve.ts';
import { createProjector, type Projector } from '../../services/projector/runtime.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { codec, createEventProducer, event, readTrustTopic, sessionStarted, testConfig, testEnv, waitFor } from '../helpers/projector.ts';

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

const modes: Delivery[] = process.env['TEST_PROJECTOR_DELIVERY'] === undefined ? ['transactional', 'idempotent'] : [process.env['TEST_PROJECTOR_DELIVERY'] as Delivery];

for (const delivery of modes) {

test(`[${delivery}] a role revocation for a delegator with three live sessions reaches all three in TrustView`, { timeout: 90_000 }, async () => {
  const env = testEnv(broker.brokers);
  const config = testConfig(env);
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: 200, delivery });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  let view: TrustView | undefined;
  try {
    view = await createTrustView({ kafka, topic: config.topics.sessionTrust, readUncommitted: delivery === 'idempotent' });
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
    // One lookup: its staleness is whatever it is at that instant (two calls a millisecond apart differ).
    const unknown = view.get('S-nope', 'acme');
    assert.deepEqual(unknown, { known: false, reason: 'unknown_session', stalenessMs: unknown.stalenessMs });
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

test(`[${delivery}] poison messages are dead-lettered and the loop keeps going`, { timeout: 90_000 }, async () => {
  const env = testEnv(broker.brokers, 1);
  const config = testConfig(env);
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, delivery });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  const dlq: { offset: string; reason: string }[] = [];
  const dlqConsumer = kafka.consumer({ groupId: uniqueName('dlq-reader') });
  try {
    await producer.raw.send({ topic: config.topics.signals, messages: [{ key: 'x', value: Buffer.from('not avro at all') }] });
    // A valid event keyed as another tenant's session: not folded (the session stays unknown), dead-lettered.
    const misKeyed = sessionStarted('S-mis-keyed', 'U-1');
    await producer.raw.send({ topic: config.topics.signals, messages: [{ key: sessionKey('globex', 'S-mis-keyed'), value: codec.encodeEvent(misKeyed) }] });
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
    await waitFor('dead letters', () => dlq.length === 2);
    assert.deepEqual(dlq, [{ offset: '0', reason: 'bad_framing' }, { offset: '1', reason: 'key_mismatch' }]);
    assert.equal(projector.stats().deadLettered, 2);
    assert.equal(projector.stats().keyMismatches, 1);
    assert.ok(!trust.records.some((s) => s.session_id === 'S-mis-keyed'), 'the mis-keyed event was not folded');
    await trust.close();
  } finally {
    await dlqConsumer.disconnect();
    await producer.close();
    await projector.stop();
  }
});

test(`[${delivery}] a cause is released at expires_at by wall time, with no new event`, { timeout: 90_000 }, async () => {
  const env = testEnv(broker.brokers, 1);
  const config = testConfig(env);
  let wall = Date.now();
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: 50, now: () => wall, delivery });
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

test(`[${delivery}] a backlog folded into one group larger than the broker's batch limit is published in bounded sends`, { timeout: 120_000 }, async () => {
  // 3,000 sessions × 3 signals waiting before the projector starts: the first
  // groups hold thousands of states and changelog records (several MiB per
  // partition, over the broker's 1 MiB message.max.bytes in one batch).
  const env = testEnv(broker.brokers, 1);
  const config = testConfig(env);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topicLayout({ topics: config.topics, kafka: config.kafka }));
  await admin.disconnect();
  const producer = await createEventProducer(kafka, config);
  const sessions = Array.from({ length: 3_000 }, (_, i) => `S-b${i}`);
  const messages = sessions.flatMap((s, i) =>
    [sessionStarted(s, `U-${i % 50}`), event({ type: 'signal', kind: 'injection_detected', session_id: s, signal_id: `SIG-${i}`, severity: 'high', detector: 'd' })].map((e) => ({
      key: sessionKey('acme', s),
      value: codec.encodeEvent(e),
    })),
  );
  for (let i = 0; i < messages.length; i += 1_000) await producer.raw.send({ topic: config.topics.signals, acks: -1, messages: messages.slice(i, i + 1_000) });
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, delivery, maxConcurrentPartitions: 2 });
  const trust = await readTrustTopic(kafka, config.topics.sessionTrust, uniqueName('raw'));
  try {
    await projector.start();
    await waitFor('every session restricted', () => new Set(trust.records.filter((r) => r.tier === 'restricted').map((r) => r.session_id)).size === sessions.length, 45_000);
    assert.equal(projector.stats().recoveries, 0, 'no group failed and had to be rebuilt');
  } finally {
    await projector.stop();
    await trust.close();
    await producer.close();
  }
});

test(`[${delivery}] a restarted projector restores from its changelog: duplicates stay duplicates, versions continue`, { timeout: 120_000 }, async () => {
  const env = testEnv(broker.brokers, 3);
  const config = testConfig(env);
  const mk = (): Projector => createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, delivery });
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
}

test('[idempotent] states published but not recorded before a crash: identical replays are not sent again, a divergent one moves past, none is reused', { timeout: 120_000 }, async () => {
  const env = testEnv(broker.brokers, 1);
  const config = testConfig(env);
  const mk = (): Projector => createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, delivery: 'idempotent' });
  const first = mk();
  await first.start();
  const producer = await createEventProducer(kafka, config);
  const trust = await readTrustTopic(kafka, config.topics.sessionTrust, uniqueName('raw'));
  try {
    const starts = ['S-same', 'S-diverged', 'S-overshot'].map((s) => sessionStarted(s, 'U-1'));
    for (const e of starts) await producer.send(e);
    await waitFor('three sessions', () => trust.records.length === 3);
    await first.stop();

    // The "crashed" run: it folded two events and published their states (one
    // as the fold makes it, one as another path could have), plus a version of
    // a session that the replay will not reach — then died before recording.
    const same = event({ type: 'signal', kind: 'injection_detected', session_id: 'S-same', signal_id: 'SIG-1', severity: 'low', detector: 'd' });
    const diverging = event({ type: 'signal', kind: 'injection_detected', session_id: 'S-diverged', signal_id: 'SIG-2', severity: 'high', detector: 'd' });
    await producer.send(same);
    await producer.send(diverging);
    const folded = evolveAll(initialWorld(), [...starts, same, diverging]);
    const v2 = (id: string): SessionTrust => {
      const s = folded.changed.find((x) => x.session_id === id && x.version === 2);
      assert.ok(s !== undefined);
      return s;
    };
    const v1Overshot = folded.changed.find((x) => x.session_id === 'S-overshot' && x.version === 1);
    assert.ok(v1Overshot !== undefined);
    const forged: SessionTrust[] = [
      v2('S-same'),
      { ...v2('S-diverged'), tier: 'degraded', causes: [{ ...(v2('S-diverged').causes[0] as SessionTrust['causes'][number]), tier: 'degraded' }] },
      { ...v1Overshot, version: 2, tier: 'restricted', caused_by: same.event_id },
    ];
    await producer.raw.send({ topic: config.topics.sessionTrust, acks: -1, messages: forged.map((s) => ({ key: sessionKey(s.tenant_id, s.session_id), value: codec.encodeTrust(s) })) });
    await waitFor('forged states', () => trust.records.length === 6);

    const second = mk();
    await second.start();
    await waitFor('replay settled', () => trust.records.length >= 8);
    await new Promise((r) => setTimeout(r, 1_000)); // anything extra would show up now
    const of = (id: string): SessionTrust[] => trust.records.filter((s) => s.session_id === id);
    assert.deepEqual(of('S-same').map((s) => s.version), [1, 2], 'the identical replay was not sent again');
    assert.deepEqual(of('S-diverged').map((s) => s.version), [1, 2, 3], 'the divergent replay moved past the published version');
    assert.deepEqual(of('S-diverged').at(-1), { ...v2('S-diverged'), version: 3 }, 'with the fold\'s content');
    assert.deepEqual(of('S-overshot').map((s) => s.version), [1, 2, 3], 'a version the replay did not reach is superseded');
    assert.deepEqual(of('S-overshot').at(-1), { ...v1Overshot, version: 3 }, 'by the state the world holds');
    const st = second.stats();
    assert.equal(st.republishSkipped, 1);
    assert.equal(st.rebased, 2);

    // Versions continue from there, and a third start finds nothing ahead.
    await producer.send(event({ type: 'signal', kind: 'trust_set', session_id: 'S-diverged', tier: 'trusted', reason: 'ok', set_by: 'soc' }));
    await waitFor('fourth version', () => of('S-diverged').length === 4);
    assert.equal(of('S-diverged').at(-1)?.version, 4);
    await second.stop();
    const third = mk();
    await third.start();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(third.stats().rebased, 0);
    assert.equal(third.stats().republishSkipped, 0);
    await third.stop();
    assert.equal(trust.records.length, 9);
  } finally {
    await trust.close();
    await producer.close();
  }
});
