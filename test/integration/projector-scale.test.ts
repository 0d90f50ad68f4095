// Scale-out (services/projector/README.md, "Scaling out"): three projector
// processes in one group, TRUSTFOLD_PROJECTOR_SCALE_OUT=true, six partitions.
// Sessions on every partition; role revocations and grants of one user (keyed
// by the user, so on one partition) reach that user's sessions wherever they
// live. One instance is SIGKILLed mid-stream; the survivors take its
// partitions over (fencing its transactional ids) and a fourth process joins
// later. Afterwards every session's committed versions are 1..n, each once,
// each with the pure fold's content, and the final states equal a fresh fold.
// The failover time (kill → first state committed on a moved partition) is
// printed as a diagnostic.
import assert from 'node:assert/strict';
import { loadavg } from 'node:os';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { ensureProjectorTopics } from '../../services/projector/clients.ts';
import { evolveAll, initialWorld, viewOf } from '../../services/projector/evolve.ts';
import { changelogTopicFor } from '../../services/projector/scale/instance.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { codec, createEventProducer, event, sessionStarted, startProjectorChild as startChild, testConfig, testEnv, waitFor, type ProjectorChild as Child } from '../helpers/projector.ts';

let broker: TestKafka;
let kafka: Kafka;
before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'projector-scale-test');
});
after(async () => {
  await broker.stop();
});

/** Every committed record of the session-trust topic with its partition and when this reader got it. */
const readTrust = async (topic: string): Promise<{ records: { s: SessionTrust; partition: number; at: number }[]; close(): Promise<void> }> => {
  const records: { s: SessionTrust; partition: number; at: number }[] = [];
  const consumer = kafka.consumer({ groupId: uniqueName('scale-read'), maxWaitTimeInMs: 50, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        if (m.value === null) continue;
        const r = codec.decodeTrust(m.value);
        if (!r.ok) throw new Error(r.error.message);
        records.push({ s: r.value, partition: batch.partition, at: Date.now() });
      }
    },
  });
  return { records, close: () => consumer.disconnect() };
};

test('three scaled-out projectors, one SIGKILLed: every session equals a fresh fold, each version once', { timeout: 120_000 }, async (t) => {
  const env = { ...testEnv(broker.brokers, 6), TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS: process.env['TEST_PROJECTOR_SESSION_TIMEOUT_MS'] ?? '1500' };
  const config = testConfig(env);
  const groupId = env.TRUSTFOLD_PROJECTOR_GROUP;
  await ensureProjectorTopics(kafka, config, changelogTopicFor(config.topics.sessionTrust, groupId));
  const producer = await createEventProducer(kafka, config);
  const trust = await readTrust(config.topics.sessionTrust);
  const sent: TrustfoldEvent[] = [];
  const send = async (e: TrustfoldEvent): Promise<void> => {
    await producer.send(e);
    sent.push(e);
  };
  const children = [startChild(env), startChild(env), startChild(env)];
  const logDir = process.env['PROJECTOR_SCALE_LOG_DIR'];
  if (logDir !== undefined) t.diagnostic(`kill at ${new Date().toISOString()} + see below; logs in ${logDir}`);
  let late: Child | undefined;
  try {
    await Promise.all(children.map((c) => c.ready));
    await waitFor('every partition assigned once', () => children.flatMap((c) => c.partitions()).sort().join() === '0,1,2,3,4,5', 30_000);
    t.diagnostic(`assignment: ${children.map((c) => `[${c.partitions().join(',')}]`).join(' ')}`);
    // U-a's sessions only start and get U-a's role changes (one partition, in order); the others get session signals.
    const roleSessions = Array.from({ length: 12 }, (_, i) => `R-${i}`);
    const signalSessions = Array.from({ length: 24 }, (_, i) => `S-${i}`);
    for (const s of roleSessions) await send(sessionStarted(s, 'U-a'));
    for (const s of signalSessions) await send(sessionStarted(s, 'U-b'));
    const latest = (): Map<string, SessionTrust> => {
      const m = new Map<string, SessionTrust>();
      for (const r of trust.records) if ((m.get(r.s.session_id)?.version ?? 0) < r.s.version) m.set(r.s.session_id, r.s);
      return m;
    };
    await waitFor('every session published', () => latest().size === roleSessions.length + signalSessions.length, 30_000);
    const sessionPartitions = new Map(trust.records.map((r) => [r.s.session_id, r.partition]));
    assert.equal(new Set(sessionPartitions.values()).size, 6, 'sessions on all six partitions');

    const stream = (i: number): TrustfoldEvent => {
      if (i % 10 === 0) return event({ type: 'signal', kind: i % 20 === 0 ? 'role_revoked' : 'role_granted', user_id: 'U-a', role: `r${i % 3}` });
      const s = signalSessions[i % signalSessions.length];
      if (i % 23 === 0) return event({ type: 'signal', kind: 'trust_set', session_id: s, tier: 'trusted', reason: 'r', set_by: 'soc' });
      return event({ type: 'signal', kind: 'injection_detected', session_id: s, signal_id: `SIG-${i}`, severity: (['low', 'medium', 'high', 'critical'] as const)[i % 4], detector: 'd' });
    };
    const sendRange = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        await send(stream(i));
        if (i % 20 === 0) await new Promise((r) => setTimeout(r, 10));
      }
    };
    const sending = sendRange(0, 600);
    await waitFor('some states before the kill', () => trust.records.length > 100, 30_000);
    const victim = children[0];
    assert.ok(victim !== undefined);
    const moved = victim.partitions();
    const tKill = Date.now();
    t.diagnostic(`SIGKILL at ${new Date(tKill).toISOString()}`);
    victim.child.kill('SIGKILL');
    await new Promise((r) => victim.child.once('exit', r));
    // Per moved partition: the first state committed by its new owner, i.e. after a survivor reported it
    // as its own (the killed process's last commit may still become visible right after the kill).
    const takenAt = (p: number): number | undefined => children.slice(1).map((c) => c.assignedAt.get(p) ?? 0).find((at) => at > tKill);
    const firstAfter = (p: number): number | undefined => {
      const from = takenAt(p);
      return from === undefined ? undefined : trust.records.find((r) => r.partition === p && r.at > from)?.at;
    };
    await waitFor('a state on every moved partition from its new owner', () => moved.every((p) => firstAfter(p) !== undefined), 60_000);
    const failover = moved.map((p) => (firstAfter(p) ?? Number.NaN) - tKill);
    t.diagnostic(`killed the owner of [${moved.join(',')}]; first committed state per moved partition after ${failover.join(', ')} ms (max ${Math.max(...failover)} ms, load ${loadavg()[0]?.toFixed(1)})`);
    // A fourth process joins: partitions move again, this time from live owners.
    late = startChild(env);
    await late.ready;
    await sending;
    await sendRange(600, 900);
    // Duplicates of recent events arrive late (within the fold's dedup memory of 32 ids per scope).
    for (const e of sent.slice(-20)) await producer.send(e);

    const folded = evolveAll(initialWorld(), sent);
    const expected = new Map([...folded.world.sessions.values()].map((s) => [s.session_id, viewOf(s)]));
    await waitFor('final states', () => [...expected].every(([id, s]) => latest().get(id)?.version === s.version), 60_000).catch((e: unknown) => {
      const off = [...expected].filter(([id, s]) => latest().get(id)?.version !== s.version);
      throw new Error(`${(e as Error).message}; ${off.length} sessions off: ${off.slice(0, 3).map(([id, s]) => `${id}: published v${latest().get(id)?.version}, fold v${s.version}`).join(' | ')}`);
    });
    await new Promise((r) => setTimeout(r, 500)); // anything extra would show up now

    const bySession = new Map<string, SessionTrust[]>();
    for (const { s } of trust.records) bySession.set(s.session_id, [...(bySession.get(s.session_id) ?? []), s]);
    const foldedBy = new Map(folded.changed.map((x) => [`${x.session_id}\u0000${x.version}`, x]));
    for (const [id, states] of bySession) {
      const versions = states.map((x) => x.version).sort((a, b) => a - b);
      assert.deepEqual(versions, versions.map((_, k) => k + 1), `versions of ${id} are 1..n, each once`);
      for (const x of states) assert.deepEqual(x, foldedBy.get(`${id}\u0000${x.version}`), `${id} v${x.version} is the fold's`);
    }
    for (const [id, s] of expected) assert.deepEqual(latest().get(id), s, `final state of ${id}`);
    assert.equal(trust.records.length, folded.changed.length, 'one committed record per fold change');
    // The role changes reached U-a's sessions on every partition they live on.
    assert.ok(roleSessions.every((s) => (expected.get(s)?.version ?? 0) > 1));
    t.diagnostic(`${trust.records.length} committed states, ${sent.length} events, final assignment ${[...children.slice(1), late].map((c) => `[${c.partitions().join(',')}]`).join(' ')}`);
  } finally {
    for (const c of [...children, late]) c?.child.kill('SIGKILL');
    await trust.close();
    await producer.close();
  }
});
