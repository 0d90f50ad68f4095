// A zombie projector (services/projector/README.md, "Scaling out" →
// "Delivery mode"): three scaled-out projector processes, six partitions; one
// is SIGSTOPped — paused, not killed — until its partitions moved and their
// new owners published, then SIGCONTed while new events are waiting for it,
// so it folds them into its stale world and publishes. In the idempotent mode
// those late states reach session-trust (nothing fences a plain idempotent
// producer) after the new owner's epoch record: a real TrustView must refuse
// every one of them (`stale_epoch`), and every session's final state must
// equal a fresh fold. In the transactional mode the same scenario must hold
// with the transactional id as the only fence. (Idempotent, too: each session
// whose newest record is a zombie's late state is published again by its
// owner, so compaction keeps a record readers apply.)
import assert from 'node:assert/strict';
import { loadavg } from 'node:os';
import { after, before, test, type TestContext } from 'node:test';
import type { Kafka } from 'kafkajs';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { createEpochGate, classify } from '../../services/pdp-client/epoch.ts';
import { createTrustView, type RefusedRecord, type TrustView } from '../../services/pdp-client/trust-view.ts';
import { ensureProjectorTopics } from '../../services/projector/clients.ts';
import { evolveAll, initialWorld, sessionKeyOf, viewOf } from '../../services/projector/evolve.ts';
import { changelogTopicFor } from '../../services/projector/scale/instance.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { codec, createEventProducer, event, readRawTrust, sessionStarted, startProjectorChild, testConfig, testEnv, waitFor, type ProjectorChild, type RawTrustRecord } from '../helpers/projector.ts';

let broker: TestKafka;
let kafka: Kafka;
before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'projector-zombie-test');
});
after(async () => {
  await broker.stop();
});

const decoded = (r: RawTrustRecord): SessionTrust | undefined => {
  if (r.value === null || r.value.length === 0) return undefined;
  const d = codec.decodeTrust(r.value);
  return d.ok ? d.value : undefined;
};
const epochRecordOf = (r: RawTrustRecord): number | undefined => {
  const c = classify(r);
  return c.kind === 'epoch' ? c.epoch : undefined;
};

const scenario = async (t: TestContext, delivery: 'idempotent' | 'transactional'): Promise<void> => {
  const env = { ...testEnv(broker.brokers, 6), TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_DELIVERY: delivery, TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS: '1500' };
  const config = testConfig(env);
  await ensureProjectorTopics(kafka, config, changelogTopicFor(config.topics.sessionTrust, env.TRUSTFOLD_PROJECTOR_GROUP));
  const idempotent = delivery === 'idempotent';
  const producer = await createEventProducer(kafka, config);
  // Everything written (read_uncommitted in the idempotent mode: its states are not transactional; committed only in the transactional one).
  const raw = await readRawTrust(kafka, config.topics.sessionTrust, uniqueName('zombie-raw'), idempotent);
  const refused: RefusedRecord[] = [];
  let view: TrustView | undefined;
  const children: ProjectorChild[] = [];
  const sent: TrustfoldEvent[] = [];
  const send = async (e: TrustfoldEvent): Promise<void> => {
    await producer.send(e);
    sent.push(e);
  };
  try {
    children.push(startProjectorChild(env), startProjectorChild(env), startProjectorChild(env));
    await Promise.all(children.map((c) => c.ready));
    await waitFor('every partition assigned once', () => children.flatMap((c) => c.partitions()).sort().join() === '0,1,2,3,4,5', 30_000);
    const v = await createTrustView({ kafka, topic: config.topics.sessionTrust, readUncommitted: idempotent, onRefused: (r) => refused.push(r) });
    view = v;
    await v.ready();
    // G-sessions (user U-g) only ever get U-g's role changes, fanned out wherever they live; P-sessions only their own signals.
    const gSessions = Array.from({ length: 18 }, (_, i) => `G-${i}`);
    const pSessions = Array.from({ length: 18 }, (_, i) => `P-${i}`);
    for (const s of gSessions) await send(sessionStarted(s, 'U-g'));
    for (const s of pSessions) await send(sessionStarted(s, 'U-p'));
    const version = (s: string): number => {
      const l = v.get(s, 'acme');
      return l.known ? l.version : 0;
    };
    await waitFor('every session published', () => [...gSessions, ...pSessions].every((s) => version(s) >= 1), 30_000);
    // Idle before the pause: every round recorded (the committed offsets are at the input's end). A recording round
    // paused halfway would fail with the fence right at SIGCONT, before the zombie could publish anything stale.
    const admin = kafka.admin();
    await admin.connect();
    try {
      const recorded = async (): Promise<boolean> => {
        const ends = await admin.fetchTopicOffsets(config.topics.signals);
        const [committed] = await admin.fetchOffsets({ groupId: env.TRUSTFOLD_PROJECTOR_GROUP, topics: [config.topics.signals] });
        return ends.every((e) => e.high === e.low || BigInt(committed?.partitions.find((c) => c.partition === e.partition)?.offset ?? '-1') >= BigInt(e.high));
      };
      for (const deadline = Date.now() + 30_000; !(await recorded()); await new Promise((r) => setTimeout(r, 100))) {
        if (Date.now() > deadline) throw new Error('timed out after 30000 ms waiting for every round recorded before the pause');
      }
    } finally {
      await admin.disconnect();
    }
    const partitionOf = new Map<string, number>();
    for (const r of raw.records) {
      const s = decoded(r);
      if (s !== undefined) partitionOf.set(s.session_id, r.partition);
    }

    const zombie = children[0];
    assert.ok(zombie !== undefined);
    const moved = zombie.partitions();
    const epochBefore = new Map(moved.map((p) => [p, Math.max(0, ...raw.records.filter((r) => r.partition === p).map((r) => epochRecordOf(r) ?? 0))]));
    const tStop = Date.now();
    zombie.child.kill('SIGSTOP');
    t.diagnostic(`${delivery}: SIGSTOP the owner of [${moved.join(',')}] (epochs ${[...epochBefore.values()].join(',')})`);
    const onMoved = (s: string): boolean => moved.includes(partitionOf.get(s) ?? -1);
    // The survivors take the partitions over (the zombie's session times out) and publish on them.
    await waitFor('the moved partitions owned by survivors', () => moved.every((p) => children.slice(1).some((c) => (c.assignedAt.get(p) ?? 0) > tStop)), 60_000);
    for (const s of pSessions.filter(onMoved)) await send(event({ type: 'signal', kind: 'injection_detected', session_id: s, signal_id: `SIG-${s}-1`, severity: 'medium', detector: 'd' }));
    await waitFor('the new owners published on the moved partitions', () => pSessions.filter(onMoved).every((s) => version(s) >= 2), 60_000);
    if (idempotent) {
      assert.ok(
        moved.every((p) => raw.records.some((r) => r.partition === p && (epochRecordOf(r) ?? 0) > (epochBefore.get(p) ?? 0))),
        'each moved partition got its new owner\'s epoch record',
      );
    }
    // Waiting for the zombie when it wakes up: role changes of U-g (its global table reads them, its tasks fan them out) and signals on its old partitions.
    const wake = [event({ type: 'signal', kind: 'role_revoked', user_id: 'U-g', role: 'r1' }), event({ type: 'signal', kind: 'role_revoked', user_id: 'U-g', role: 'r2' })];
    for (const e of wake) await send(e);
    for (const s of pSessions.filter(onMoved)) await send(event({ type: 'signal', kind: 'injection_detected', session_id: s, signal_id: `SIG-${s}-2`, severity: 'high', detector: 'd' }));
    const tCont = Date.now();
    zombie.child.kill('SIGCONT');
    t.diagnostic(`${delivery}: SIGCONT after ${tCont - tStop} ms`);

    /** States of an owner whose partition was taken over before them: the epoch rule over the raw log, judged as a reader from offset 0. */
    const late = (): RawTrustRecord[] => {
      const gate = createEpochGate();
      return raw.records.filter((r) => r.value !== null && gate.judge(r.partition, r.offset, r).kind === 'refused');
    };
    if (idempotent) {
      await waitFor('the zombie publishing after its partitions moved', () => late().length > 0, 30_000);
      // Compaction keeps each key's newest record: after a zombie's late state, the owner publishes that session again.
      const newestRefused = (): string[] => {
        const gate = createEpochGate();
        const newest = new Map<string, boolean>();
        for (const r of raw.records) {
          const s = decoded(r);
          const verdict = gate.judge(r.partition, r.offset, r);
          if (s !== undefined) newest.set(s.session_id, verdict.kind === 'state');
        }
        return [...newest].filter(([, ok]) => !ok).map(([id]) => id);
      };
      await waitFor('every session\'s newest record one that readers apply', () => newestRefused().length === 0, 30_000).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}: ${newestRefused().join(',')}`);
      });
    }

    // More input afterwards, then everything must settle to the fold.
    await send(event({ type: 'signal', kind: 'role_granted', user_id: 'U-g', role: 'r1' }));
    for (const s of pSessions) await send(event({ type: 'signal', kind: 'trust_set', session_id: s, tier: 'trusted', reason: 'r', set_by: 'soc' }));
    const folded = evolveAll(initialWorld(), sent);
    const expected = new Map([...folded.world.sessions.values()].map((s) => [s.session_id, viewOf(s)]));
    await waitFor('every session at its fold version in the view', () => [...expected].every(([id, s]) => version(id) === s.version), 60_000).catch((e: unknown) => {
      const off = [...expected].filter(([id, s]) => version(id) !== s.version);
      throw new Error(`${(e as Error).message}; ${off.length} off: ${off.slice(0, 3).map(([id, s]) => `${id}: view v${version(id)}, fold v${s.version}`).join(' | ')}`);
    });
    await new Promise((r) => setTimeout(r, 1_000)); // anything late would show up now

    for (const [id, s] of expected) {
      const l = v.get(id, 'acme');
      assert.ok(l.known, `${id} known`);
      assert.deepEqual(l.state, s, `final state of ${id} is the fold's`);
    }
    const zombieLate = late();
    const refusedAt = new Set(refused.filter((r) => r.reason === 'stale_epoch').map((r) => `${r.partition}@${r.offset}`));
    if (idempotent) {
      assert.ok(zombieLate.length > 0, 'the zombie wrote states after its partitions\' new epochs');
      // Every one of them was refused by the view (so none was applied), and nothing else was.
      for (const r of zombieLate) assert.ok(refusedAt.has(`${r.partition}@${r.offset}`), `late state at ${r.partition}@${r.offset} refused`);
      const others = refused.filter((r) => r.reason !== 'stale_epoch');
      assert.equal(others.length, 0, `nothing else refused: ${JSON.stringify(others.slice(0, 3))}`);
      assert.equal(refusedAt.size, zombieLate.length, 'the view refused exactly the late states');
    } else {
      assert.equal(zombieLate.length, 0, 'no epoch records in the transactional mode');
      assert.equal(refused.length, 0);
    }
    // Among what a reader applies, a version never carries two contents.
    const gate = createEpochGate();
    const contents = new Map<string, string>();
    for (const r of raw.records) {
      const s = decoded(r);
      if (s === undefined || gate.judge(r.partition, r.offset, r).kind !== 'state') continue;
      const k = `${s.session_id}\u0000${s.version}`;
      const json = JSON.stringify(s);
      assert.ok(!contents.has(k) || contents.get(k) === json, `${s.session_id} v${s.version} published with one content`);
      contents.set(k, json);
    }
    // What a reader without the rule would have done with the late states: taken those newer than what it held.
    const held = new Map<string, number>();
    let wouldApply = 0;
    const lateAt = new Set(zombieLate.map((r) => `${r.partition}@${r.offset}`));
    for (const r of raw.records) {
      const s = decoded(r);
      if (s === undefined) continue;
      if (s.version > (held.get(s.session_id) ?? 0)) {
        if (lateAt.has(`${r.partition}@${r.offset}`)) wouldApply++;
        held.set(s.session_id, s.version);
      }
    }
    if (idempotent) {
      // Hostile epoch records and headers, through a real broker: refused with their reason, the view and the projectors go on.
      const victim = [...expected.values()][0];
      assert.ok(victim !== undefined);
      const p = partitionOf.get(victim.session_id) ?? 0;
      const before = refused.length;
      await producer.raw.send({
        topic: config.topics.sessionTrust,
        acks: -1,
        messages: [
          { partition: p, key: '\u0000epoch\u0000x', value: Buffer.alloc(0), headers: { 'trustfold-epoch': 'x' } },
          { partition: p, key: '\u0000epoch\u00002', value: Buffer.from('not empty'), headers: { 'trustfold-epoch': '2' } },
          { partition: p, key: '\u0000epoch\u000099999', value: Buffer.alloc(0), headers: { 'trustfold-epoch': '99999' } },
          { partition: p, key: sessionKeyOf('acme', victim.session_id), value: codec.encodeTrust({ ...victim, version: victim.version + 1, tier: 'trusted', causes: [] }), headers: { 'trustfold-epoch': '777' } },
          { partition: p, key: sessionKeyOf('acme', victim.session_id), value: codec.encodeTrust({ ...victim, version: victim.version + 1, tier: 'trusted', causes: [] }), headers: { 'trustfold-epoch': ['1', '1'] } },
        ],
      });
      await waitFor('the hostile records refused', () => refused.length >= before + 5, 30_000);
      assert.deepEqual(refused.slice(before).map((r) => r.reason), ['bad_epoch', 'bad_epoch', 'epoch_jump', 'epoch_ahead', 'bad_epoch']);
      await send(event({ type: 'signal', kind: 'injection_detected', session_id: victim.session_id, signal_id: `SIG-${victim.session_id}-after`, severity: 'low', detector: 'd' }));
      await waitFor('the projector goes on after them', () => version(victim.session_id) === victim.version + 1, 30_000);
      const after = v.get(victim.session_id, 'acme');
      const refolded = evolveAll(initialWorld(), sent).world.sessions.get(sessionKeyOf('acme', victim.session_id));
      assert.ok(after.known && refolded !== undefined);
      assert.deepEqual(after.state, viewOf(refolded), 'the projector\'s next state, not the forged one');
    }
    t.diagnostic(`${delivery}: zombie states after the new epoch = ${zombieLate.length} (a reader without the rule would have applied ${wouldApply}), view refused ${JSON.stringify(v.refused())}, ${raw.records.length} records, load ${loadavg()[0]?.toFixed(1)}`);
  } finally {
    for (const c of children) {
      c.child.kill('SIGCONT');
      c.child.kill('SIGKILL');
    }
    await view?.close();
    await raw.close();
    await producer.close();
  }
};

test('idempotent scale-out: a SIGSTOPped owner resumed after the takeover publishes states no TrustView applies', { timeout: 120_000 }, async (t) => {
  await scenario(t, 'idempotent');
});

test('transactional scale-out: the same zombie is fenced by the transactional id', { timeout: 120_000 }, async (t) => {
  await scenario(t, 'transactional');
});
