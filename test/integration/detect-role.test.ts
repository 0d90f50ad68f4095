// The detect role on a real broker, beside the projector: a burst of denials
// becomes an injection signal (through ingest's admission and sink) that
// degrades the session in TrustView; a restart in the same group rebuilds
// the rule state from the topic (a burst straddling the restart still
// fires); a detector re-reading the same decisions (a replay after a crash)
// emits the same ids, which the fold ignores.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import type { SignalOf, TrustfoldEvent } from '../../schemas/events.ts';
import { parseDetectConfig } from '../../services/detect/config.ts';
import { createDetectRole, type DetectRole } from '../../services/detect/role.ts';
import { createKafkaSink } from '../../services/ingest/sink.ts';
import type { Config } from '../../services/lib/config.ts';
import { createKafka, ensureTopics, topicLayout } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createTrustView, type TrustView } from '../../services/pdp-client/trust-view.ts';
import { createProjector } from '../../services/projector/runtime.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { codec, createEventProducer, event, sessionStarted, testConfig, testEnv, waitFor } from '../helpers/projector.ts';

let broker: TestKafka;
let kafka: Kafka;
const logger = createLogger('detect-test', 'silent');

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'detect-test');
});
after(async () => {
  await broker.stop();
});

const deny = (session: string, jti = `J-${session}`, effect: 'deny' | 'allow' = 'deny'): TrustfoldEvent =>
  event({
    type: 'decision',
    session_id: session,
    chain: [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: 'A-17' }],
    token: { jti, scopes: ['repo:read'] },
    request: { tool: 'git', action: 'delete_file', resource: 'repo:R-payments-ledger' },
    decision: { effect, policy_id: 'P-risk-43', rule_id: 'deny-destructive' },
  });

/** Every injection signal on the signals topic, read to its end from a throwaway group. */
const injectionsOnTopic = async (topic: string, expected: number): Promise<SignalOf<'injection_detected'>[]> => {
  const out: SignalOf<'injection_detected'>[] = [];
  const c = kafka.consumer({ groupId: uniqueName('detect-read'), maxWaitTimeInMs: 200 });
  await c.connect();
  try {
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      eachMessage: async ({ message }) => {
        if (message.value === null) return;
        const r = codec.decodeEvent(message.value);
        if (r.ok && r.value.type === 'signal' && r.value.kind === 'injection_detected' && r.value.detector.startsWith('trustfold/')) out.push(r.value);
      },
    });
    await waitFor(`${expected} detector signals on the topic`, () => out.length >= expected);
    return out;
  } finally {
    await c.disconnect();
  }
};

const startDetect = async (config: Config, groupId: string, rules = 'deny-storm', registry = new Registry()): Promise<DetectRole> => {
  const dc = parseDetectConfig({ TRUSTFOLD_DETECT_GROUP: groupId, TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '3', TRUSTFOLD_DETECT_RULES: rules });
  assert.ok(dc.ok);
  const sink = createKafkaSink({ kafka, timeoutMs: 10_000 });
  const role = createDetectRole({ kafka, topics: config.topics, config: dc.value, sink, registry, logger, eventTime: config.eventTime });
  await role.start();
  const stop = role.stop;
  return { ...role, stop: async () => { await stop(); await sink.close(); } };
};

test('a deny storm becomes a signal that degrades the session; restart rebuilds the rule; a replay emits the same ids', { timeout: 180_000 }, async () => {
  const env = testEnv(broker.brokers);
  const config = testConfig(env);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topicLayout({ topics: config.topics, kafka: config.kafka }));
  await admin.disconnect();
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: 200, delivery: 'transactional' });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  const group = `detect-${randomUUID()}`;
  const roles: DetectRole[] = [];
  let view: TrustView | undefined;
  try {
    view = await createTrustView({ kafka, topic: config.topics.sessionTrust });
    await view.ready();
    const v = view;
    const tierOf = (s: string): string | undefined => {
      const r = v.get(s, 'acme');
      return r.known ? r.state.tier : undefined;
    };
    for (const s of ['S-storm', 'S-calm', 'S-later']) await producer.send(sessionStarted(s, 'U-442'));
    await waitFor('three sessions known', () => ['S-storm', 'S-calm', 'S-later'].every((s) => tierOf(s) === 'trusted'));

    const first = await startDetect(config, group);
    roles.push(first);
    for (let i = 0; i < 4; i++) await producer.send(deny('S-storm'));
    for (let i = 0; i < 2; i++) await producer.send(deny('S-calm'));
    for (let i = 0; i < 3; i++) await producer.send(deny('S-later'));
    await waitFor('S-storm degraded', () => tierOf('S-storm') === 'degraded');
    await waitFor('all nine decisions folded', () => first.stats().folded === 9);
    const storm = view.get('S-storm', 'acme');
    assert.ok(storm.known);
    const cause = storm.state.causes.find((c) => c.kind === 'injection_detected');
    assert.match(cause?.ref ?? '', /^trustfold\/deny-storm:/);
    assert.equal(tierOf('S-calm'), 'trusted', 'two denies are no storm');
    assert.equal(tierOf('S-later'), 'trusted', 'three denies are not more than three');
    assert.deepEqual({ detections: first.stats().detections, emitted: first.stats().emitted, rejected: first.stats().rejected }, { detections: 1, emitted: 1, rejected: 0 });

    // Restart in the same group: the three denies of S-later are rebuilt, so a fourth one fires.
    await first.stop();
    roles.pop();
    const second = await startDetect(config, group);
    roles.push(second);
    assert.equal(second.stats().rebuilt, 9, 'the committed decisions within the lookback were re-read');
    await producer.send(deny('S-later'));
    await waitFor('S-later degraded after the restart', () => tierOf('S-later') === 'degraded');
    assert.equal(second.stats().emitted, 1);
    assert.equal(tierOf('S-calm'), 'trusted');

    // A detector reading the same decisions again (what a crash before the commit amounts to) emits the same two signals under the same ids.
    const before = view.get('S-storm', 'acme');
    assert.ok(before.known);
    const replay = await startDetect(config, `detect-${randomUUID()}`);
    roles.push(replay);
    await waitFor('the replay emitted both detections', () => replay.stats().emitted === 2);
    const onTopic = await injectionsOnTopic(config.topics.signals, 4);
    const byId = new Map<string, number>();
    for (const s of onTopic) byId.set(s.event_id, (byId.get(s.event_id) ?? 0) + 1);
    assert.deepEqual([...byId.values()], [2, 2], 'two detections, each stored twice under one id');
    assert.equal(new Set(onTopic.map((s) => s.signal_id)).size, 2);

    // A marker on the same session key lands behind the duplicate: once it is folded, so is the duplicate.
    const marker = event({ type: 'signal', kind: 'injection_detected', session_id: 'S-storm', signal_id: 'SIG-marker', severity: 'low', detector: 'test' });
    await producer.send(marker);
    await waitFor('marker folded', () => {
      const r = v.get('S-storm', 'acme');
      return r.known && r.state.causes.some((c) => c.ref === 'SIG-marker');
    });
    const afterMarker = view.get('S-storm', 'acme');
    assert.ok(afterMarker.known);
    assert.equal(afterMarker.version, before.version + 1, 'the duplicate detection changed nothing; only the marker did');
    assert.equal(afterMarker.state.causes.filter((c) => c.ref.startsWith('trustfold/deny-storm:')).length, 1);
  } finally {
    for (const r of roles) await r.stop();
    await view?.close();
    await producer.close();
    await projector.stop();
  }
});

test('one jti in a second session restricts both sessions; /metrics counts the rule', { timeout: 120_000 }, async () => {
  const env = testEnv(broker.brokers);
  const config = testConfig(env);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topicLayout({ topics: config.topics, kafka: config.kafka }));
  await admin.disconnect();
  const projector = createProjector({ kafka, config, logger, groupId: env.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: 200, delivery: 'transactional' });
  await projector.start();
  const producer = await createEventProducer(kafka, config);
  const registry = new Registry();
  let role: DetectRole | undefined;
  let view: TrustView | undefined;
  try {
    view = await createTrustView({ kafka, topic: config.topics.sessionTrust });
    await view.ready();
    const v = view;
    const tierOf = (s: string): string | undefined => {
      const r = v.get(s, 'acme');
      return r.known ? r.state.tier : undefined;
    };
    for (const s of ['S-a', 'S-b', 'S-c']) await producer.send(sessionStarted(s, 'U-442'));
    await waitFor('sessions known', () => ['S-a', 'S-b', 'S-c'].every((s) => tierOf(s) === 'trusted'));
    role = await startDetect(config, `detect-${randomUUID()}`, 'deny-storm,token-replay', registry);
    await producer.send(deny('S-a', 'J-shared', 'allow'));
    await producer.send(deny('S-c', 'J-own', 'allow'));
    await producer.send(deny('S-b', 'J-shared', 'allow'));
    await waitFor('both sessions of the shared token restricted', () => tierOf('S-a') === 'restricted' && tierOf('S-b') === 'restricted');
    const r = role;
    await waitFor('three decisions folded', () => r.stats().folded === 3);
    assert.equal(tierOf('S-c'), 'trusted');
    const metrics = await registry.metrics();
    assert.match(metrics, /trustfold_detect_detections_total\{rule="token-replay"\} 2/);
    assert.match(metrics, /trustfold_detect_signals_total\{rule="token-replay",outcome="emitted"\} 2/);
    assert.match(metrics, /trustfold_detect_decisions_total 3/);
  } finally {
    await role?.stop();
    await view?.close();
    await producer.close();
    await projector.stop();
  }
});
