// Kill the projector process (SIGKILL: no handler runs, an open transaction
// is left behind) in the middle of a stream, start a new one, and check what
// PDPs can see: for every session the committed versions are exactly 1..n
// (nothing lost, nothing doubled, nothing regressed) and the final states are
// those of the pure fold over the same events. In both delivery modes: in the
// idempotent one the killed process may have published states it had not
// recorded; the restarted one must then not publish a version twice with two
// contents (a repeat, if any, is byte-identical and PDPs ignore it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import type { Delivery } from '../../services/projector/config.ts';
import { createKafka } from '../../services/lib/kafka.ts';
import { evolveAll, initialWorld, viewOf } from '../../services/projector/evolve.ts';
import { createProjector } from '../../services/projector/runtime.ts';
import { createLogger } from '../../services/lib/log.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { createEventProducer, event, readTrustTopic, sessionStarted, testConfig, testEnv, waitFor } from '../helpers/projector.ts';

let broker: TestKafka;
let kafka: Kafka;
before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'projector-kill-test');
});
after(async () => {
  await broker.stop();
});

const startChild = (env: Record<string, string>): { child: ChildProcess; ready: Promise<void> } => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/projector/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('projector ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`projector exited (${code}) before ready: ${err}`)));
  });
  return { child, ready };
};

const modes: Delivery[] = process.env['TEST_PROJECTOR_DELIVERY'] === undefined ? ['transactional', 'idempotent'] : [process.env['TEST_PROJECTOR_DELIVERY'] as Delivery];

for (const delivery of modes)
test(`[${delivery}] SIGKILL mid-stream and restart: no lost, doubled or regressed state; versions continue`, { timeout: 180_000 }, async (t) => {
  const env = { ...testEnv(broker.brokers, 1), TRUSTFOLD_PROJECTOR_DELIVERY: delivery }; // one partition: the consumed order is the produced order
  const config = testConfig(env);
  // Create the topics (and a committed empty changelog) before the children run.
  const setup = createProjector({ kafka, config, logger: createLogger('setup', 'silent'), groupId: uniqueName('setup'), delivery });
  await setup.start();
  await setup.stop();

  const producer = await createEventProducer(kafka, config);
  const trust = await readTrustTopic(kafka, config.topics.sessionTrust, uniqueName('raw'));
  const sent: TrustfoldEvent[] = [];
  const send = async (e: TrustfoldEvent): Promise<void> => {
    await producer.send(e);
    sent.push(e);
  };
  const first = startChild(env);
  let second: ReturnType<typeof startChild> | undefined;
  try {
    await first.ready;
    const sessions = Array.from({ length: 10 }, (_, i) => `S-${i}`);
    for (const [i, s] of sessions.entries()) await send(sessionStarted(s, i % 2 === 0 ? 'U-a' : 'U-b'));
    const stream = (i: number): TrustfoldEvent => {
      if (i % 13 === 0) return event({ type: 'signal', kind: i % 26 === 0 ? 'role_revoked' : 'role_granted', user_id: 'U-a', role: 'admin' });
      if (i % 17 === 0) return event({ type: 'signal', kind: 'trust_set', session_id: sessions[i % 10], tier: 'trusted', reason: 'r', set_by: 'soc' });
      return event({
        type: 'signal',
        kind: 'injection_detected',
        session_id: sessions[i % 10],
        signal_id: `SIG-${i}`,
        severity: (['low', 'medium', 'high', 'critical'] as const)[i % 4],
        detector: 'd',
      });
    };
    let i = 0;
    // The kill lands while events still arrive: the projector is folding, publishing and recording.
    const sending = (async () => {
      for (; i < 150; i++) await send(stream(i));
    })();
    await waitFor('some output before the kill', () => trust.records.length > 20, 60_000);
    const beforeKill = trust.records.length;
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    await sending;
    t.diagnostic(`killed after ${beforeKill} committed states; ${sent.length} events sent`);
    for (; i < 300; i++) await send(stream(i));
    // Duplicates of events from before the kill arrive after it.
    for (const e of sent.slice(5, 25)) await producer.send(e);

    second = startChild(env);
    await second.ready;

    const expected = new Map<string, SessionTrust>();
    const folded = evolveAll(initialWorld(), sent);
    for (const s of folded.world.sessions.values()) expected.set(s.session_id, viewOf(s));
    const latest = (): Map<string, SessionTrust> => {
      const m = new Map<string, SessionTrust>();
      for (const r of trust.records) m.set(r.session_id, r);
      return m;
    };
    await waitFor('final states', () => [...expected].every(([id, s]) => latest().get(id)?.version === s.version), 90_000).catch((e: unknown) => {
      const off = [...expected].filter(([id, s]) => latest().get(id)?.version !== s.version);
      const show = off.slice(0, 3).map(([id, s]) => `${id}: published v${latest().get(id)?.version} ${latest().get(id)?.tier}, fold v${s.version} ${s.tier}`);
      throw new Error(`${(e as Error).message}; ${off.length} sessions off: ${show.join(' | ')}`);
    });
    await new Promise((r) => setTimeout(r, 500)); // anything extra would show up now

    assert.ok(beforeKill < trust.records.length, 'the stream went on after the kill');
    // What a PDP keeps: a record only when its version is higher than the one held.
    const bySession = new Map<string, SessionTrust[]>();
    let repeats = 0;
    for (const r of trust.records) {
      const seen = bySession.get(r.session_id) ?? [];
      const same = seen.find((x) => x.version === r.version);
      if (same !== undefined) {
        // Only the idempotent mode may publish a version again, and then only with the same content.
        assert.equal(delivery, 'idempotent', `${r.session_id} v${r.version} published twice`);
        assert.deepEqual(r, same, `${r.session_id} v${r.version} republished with another content`);
        repeats++;
        continue;
      }
      bySession.set(r.session_id, [...seen, r]);
    }
    for (const [id, states] of bySession) {
      const versions = states.map((x) => x.version);
      assert.deepEqual(versions, versions.map((_, k) => k + 1), `versions of ${id} are 1..n, in order, none lost`);
    }
    for (const [id, s] of expected) assert.deepEqual(latest().get(id), s, `final state of ${id}`);
    const distinct = [...bySession.values()].reduce((n, xs) => n + xs.length, 0);
    assert.equal(distinct, folded.changed.length, 'one published version per fold change');
    // Each distinct version carries the pure fold's content for that version.
    const foldedBy = new Map(folded.changed.map((x) => [`${x.session_id}\u0000${x.version}`, x]));
    for (const xs of bySession.values()) for (const x of xs) assert.deepEqual(x, foldedBy.get(`${x.session_id}\u0000${x.version}`), `${x.session_id} v${x.version} is the fold's`);
    t.diagnostic(`${trust.records.length} records, ${repeats} byte-identical repeats`);
  } finally {
    first.child.kill('SIGKILL');
    second?.child.kill('SIGTERM');
    await trust.close();
    await producer.close();
  }
});
