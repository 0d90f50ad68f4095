// Detections survive a SIGKILL of a separate detector process
// (`trustfold serve --role detect`), with no duplicate and no missed signal,
// counted: the expected detections are the pure rules over the same
// decisions (same ids, signal.ts); the signals topic must hold exactly that
// set of ids, every copy of an id byte-identical (so the fold and the
// write-once audit store it once). About half of the decisions go in, the detector
// is killed as soon as its first signal is on the topic, the other half go
// in while it is down (bursts and token replays straddle the kill), then a
// second instance in the same group (in this process: one process start
// fewer) rebuilds its state from the topics and finishes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Partitioners } from 'kafkajs';
import { Registry } from 'prom-client';
import type { DecisionEvent, SignalEvent, TrustfoldEvent } from '../../schemas/events.ts';
import { parseDetectConfig } from '../../services/detect/config.ts';
import { createContextStore } from '../../services/detect/context.ts';
import { detectAll, initialRules, type Detection } from '../../services/detect/rules.ts';
import { createDetectRole, type DetectRole } from '../../services/detect/role.ts';
import { detectionIds } from '../../services/detect/signal.ts';
import { createKafkaSink } from '../../services/ingest/sink.ts';
import { configFrom } from '../../services/lib/config.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createKafka, partitionKeyOf, topicOf } from '../../services/lib/kafka.ts';
import { newEventId } from '../helpers/projector.ts';
import { brokerForFile, codec, dataEnds, groupReached, killHard, readTopics, spawnRole, stopGracefully, tempDir, uniqueEnv, waitUntil, type RoleProcess } from '../reliability/harness.ts';
import { createTopic } from '../helpers/kafka.ts';

const broker = brokerForFile();

test('SIGKILL of the detector process: every detection exactly once by id, none missed', { timeout: 120_000 }, async (t) => {
  const { brokers } = broker();
  const env: Record<string, string> = { ...uniqueEnv(brokers, 3), TRUSTFOLD_DATA_DIR: tempDir('trustfold-detect-kill-') };
  const topics = { decisions: env['TRUSTFOLD_TOPIC_DECISIONS'] ?? '', signals: env['TRUSTFOLD_TOPIC_SIGNALS'] ?? '', sessionTrust: env['TRUSTFOLD_TOPIC_SESSION_TRUST'] ?? '', deadLetter: env['TRUSTFOLD_TOPIC_DEAD_LETTER'] ?? '' };
  for (const name of [topics.decisions, topics.signals, topics.sessionTrust]) await createTopic(brokers, name, 3, name === topics.sessionTrust ? { 'cleanup.policy': 'compact' } : {});
  const group = `${env['KAFKA_CLIENT_ID'] ?? 'x'}-detect`;
  const detectEnv = {
    ...env,
    TRUSTFOLD_DETECT_GROUP: group,
    TRUSTFOLD_DETECT_RULES: 'deny-storm,token-replay,tool-description-changed',
    TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '3',
    TRUSTFOLD_DETECT_SETTLE_MS: '100',
  };
  const parsed = parseDetectConfig(detectEnv);
  assert.ok(parsed.ok);

  // The workload: per kind, sessions whose decisions straddle the two halves.
  const now = Date.now();
  const at = (i: number) => new Date(now - 30_000 + i).toISOString();
  let seq = 0;
  const decision = (session: string, o: { effect?: 'allow' | 'deny'; jti?: string; agent?: string; digest?: string } = {}): DecisionEvent => ({
    type: 'decision',
    event_id: newEventId(),
    tenant_id: 'acme',
    occurred_at: at(seq++),
    session_id: session,
    chain: [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: o.agent ?? 'A-17' }],
    token: { jti: o.jti ?? `J-${session}`, scopes: ['repo:write'] },
    request: { tool: 'git', action: 'delete_file', resource: 'repo:R' },
    decision: { effect: o.effect ?? 'allow', policy_id: 'P-1', reasons: [] },
    ...(o.digest !== undefined && { provenance: { tool_schema_digest: o.digest } }),
  });
  const issued: SignalEvent[] = [];
  // A replay's ids depend on which session the detector saw first, and the two sessions sit on different partitions: the first uses go in, and are committed, before anything else.
  const firstUses: DecisionEvent[] = [];
  const first: DecisionEvent[] = [];
  const second: DecisionEvent[] = [];
  for (let k = 0; k < 15; k++) {
    const storm = `S-storm-${k}`;
    first.push(decision(storm, { effect: 'deny' }), decision(storm, { effect: 'deny' }));
    second.push(decision(storm, { effect: 'deny' }), decision(storm, { effect: 'deny' }));
    const tool = `S-tool-${k}`;
    first.push(decision(tool, { digest: 'sha256:aaa' }));
    second.push(decision(tool, { digest: 'sha256:bbb' }));
    firstUses.push(decision(`S-replay-a-${k}`, { jti: `J-shared-${k}` }));
    second.push(decision(`S-replay-b-${k}`, { jti: `J-shared-${k}` }));
    issued.push({ type: 'signal', kind: 'token_issued', event_id: newEventId(), tenant_id: 'acme', occurred_at: at(0), jti: `J-agent-${k}`, user_id: 'U-442', agent_id: 'A-17', scopes: ['repo:write'], expires_at: new Date(now + 3_600_000).toISOString() });
    (k % 2 === 0 ? first : second).push(decision(`S-agent-${k}`, { jti: `J-agent-${k}`, agent: 'A-other' }));
  }

  // Expected: the pure rules over the same decisions, in the role's order per session key (each session lives on one partition).
  const store = createContextStore(parsed.value.context);
  for (const s of issued) store.applySignal(s);
  let state = initialRules();
  const expected: Detection[] = [];
  for (const d of [...firstUses, ...first, ...second]) {
    const [n, out] = detectAll(parsed.value.rules, state, d, store);
    state = n;
    expected.push(...out);
  }
  const expectedIds = new Set(expected.map((d) => detectionIds(d).event_id));
  assert.equal(expected.length, 15 + 15 + 30 + 15, 'storms, tool changes, both sessions of each replay, agent mismatches');
  assert.equal(expectedIds.size, expected.length);

  const kafka = createKafka(brokers, `${group}-test`);
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true });
  await producer.connect();
  const send = async (events: TrustfoldEvent[]): Promise<void> => {
    for (const e of events) await producer.send({ topic: topicOf(topics, e), acks: -1, messages: [{ key: partitionKeyOf(e), value: codec.encodeEvent(e) }] });
  };
  const detectorSignals = async (): Promise<{ id: string; bytes: string }[]> =>
    (await readTopics(kafka, [topics.signals])).flatMap((r) => {
      if (r.value === null) return [];
      const e = codec.decodeEvent(r.value);
      return e.ok && e.value.type === 'signal' && e.value.kind === 'injection_detected' && e.value.detector.startsWith('trustfold/') ? [{ id: e.value.event_id, bytes: r.value.toString('base64') }] : [];
    });

  let detector: RoleProcess | undefined;
  let successor: DetectRole | undefined;
  const sink = createKafkaSink({ kafka, timeoutMs: 10_000 });
  try {
    await send(issued);
    detector = spawnRole('detect', detectEnv);
    await detector.ready;
    await send(firstUses);
    const used = await dataEnds(kafka, [topics.decisions]);
    await waitUntil('the first uses of the shared tokens committed', () => groupReached(kafka, group, used), 60_000, 100);
    await send(first);
    await waitUntil('the first detection on the signals topic', async () => (await detectorSignals()).length > 0, 60_000, 50);
    await killHard(detector);
    const atKill = (await detectorSignals()).length;
    t.diagnostic(`signals on the topic when the detector was SIGKILLed: ${atKill} of ${expected.length}`);
    await send(second);

    const config = configFrom(detectEnv);
    successor = createDetectRole({ kafka, topics: config.topics, config: parsed.value, sink, registry: new Registry(), logger: createLogger('detect-kill', 'silent', false), eventTime: config.eventTime });
    await successor.start();
    t.diagnostic(`the successor rebuilt ${successor.stats().rebuilt} committed decisions`);
    const ends = await dataEnds(kafka, [topics.decisions]);
    await waitUntil('the restarted detector committed every decision', () => groupReached(kafka, group, ends), 60_000, 200);

    const onTopic = await detectorSignals();
    const copies = new Map<string, Set<string>>();
    for (const s of onTopic) copies.set(s.id, (copies.get(s.id) ?? new Set()).add(s.bytes));
    const missed = [...expectedIds].filter((id) => !copies.has(id));
    const extra = [...copies.keys()].filter((id) => !expectedIds.has(id));
    const differing = [...copies].filter(([, b]) => b.size > 1).map(([id]) => id);
    t.diagnostic(`expected ${expected.length} detections; distinct ids on the topic ${copies.size}; records ${onTopic.length} (re-emitted copies ${onTopic.length - copies.size}); missed ${missed.length}; unexpected ${extra.length}`);
    assert.deepEqual({ missed, extra, differing }, { missed: [], extra: [], differing: [] });
    assert.equal(copies.size, expected.length);
  } finally {
    await successor?.stop();
    await sink.close();
    await stopGracefully(detector);
    await producer.disconnect();
  }
});
