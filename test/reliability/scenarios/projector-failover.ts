// Projector failover: three projector processes (`trustfold serve --role
// projector`, TRUSTFOLD_PROJECTOR_SCALE_OUT=true) in one group while events
// go in through ingest; every ~20 s one of them, at random, is SIGKILLed and
// restarted. During the run, probe signals measure signal → PDP latency (the
// ingest POST until a read_committed reader of session-trust — what a
// TrustView is — received the state the probe caused). Per kill, the failover
// is the time from the kill to the first state committed on a partition the
// killed member owned (its partitions: the group's own description before the
// kill, the member that is gone after it) by its new owner: a state whose
// producer (id, epoch) is not the one that wrote the partition's last state
// before the kill (the new owner's fence bumps the epoch; the killed
// process's last commit can still become visible just after the kill).
// Afterwards: every session's published trust equals a fresh fold, and each
// version was committed once.
import assert from 'node:assert/strict';
import { loadavg } from 'node:os';
import { AssignerProtocol, type Kafka } from 'kafkajs';
import type { TrustfoldEvent } from '../../../schemas/events.ts';
import { mintToken } from '../../../services/lib/auth.ts';
import { configFrom } from '../../../services/lib/config.ts';
import { createKafka } from '../../../services/lib/kafka.ts';
import { createLogger } from '../../../services/lib/log.ts';
import { uuidv7 } from '../../../schemas/ids.ts';
import { startSystem } from '../../helpers/system.ts';
import {
  createTrustTopicUncompacted,
  codec,
  createWorkload,
  envInt,
  freshFold,
  groupProgress,
  killHard,
  latestTrust,
  printFigure,
  projectorUnpublished,
  readEvents,
  readTopics,
  REL_ACTOR,
  REL_SCOPES,
  SECRET,
  sessionStartedEvent,
  sleep,
  spawnRole,
  stopGracefully,
  trustDifferences,
  uniqueEnv,
  waitUntil,
  type Figure,
  type RoleProcess,
} from '../harness.ts';

export type FailoverOptions = {
  brokers: string[];
  events: number;
  /** Projector processes. */
  instances: number;
  partitions: number;
  sessions: number;
  batchSize: number;
  /** A kill every this many ms (± a quarter), until production ends. */
  killEveryMs: number;
  /** Production is stretched to at least this long. */
  minProduceMs: number;
  sessionTimeoutMs: number;
  /** A probe signal every this many ms. */
  probeEveryMs: number;
  catchUpTimeoutMs: number;
  log?: (s: string) => void;
};

export const LONG_FAILOVER: Omit<FailoverOptions, 'brokers' | 'log'> = {
  events: envInt('RELIABILITY_FAILOVER_EVENTS', 1_000_000),
  instances: 3,
  partitions: 6,
  sessions: 5_000,
  batchSize: 2_000,
  killEveryMs: envInt('RELIABILITY_FAILOVER_KILL_EVERY_MS', 20_000),
  minProduceMs: envInt('RELIABILITY_FAILOVER_MIN_PRODUCE_MS', 120_000),
  sessionTimeoutMs: envInt('RELIABILITY_FAILOVER_SESSION_TIMEOUT_MS', 1_000),
  probeEveryMs: 100,
  catchUpTimeoutMs: 2 * 3_600_000,
};

const quantile = (xs: number[], q: number): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

/** memberId → partitions of the first input topic, as the group coordinator describes the group. */
const groupMembers = async (kafka: Kafka, groupId: string, topic: string): Promise<Map<string, number[]> & { stable?: boolean }> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([groupId]);
    const out: Map<string, number[]> & { stable?: boolean } = new Map<string, number[]>();
    out.stable = groups[0]?.state === 'Stable';
    for (const m of groups[0]?.members ?? []) {
      const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      out.set(m.memberId, a?.assignment[topic] ?? []);
    }
    return out;
  } finally {
    await admin.disconnect();
  }
};

export const runFailoverScenario = async (o: FailoverOptions): Promise<Figure> => {
  const log = o.log ?? (() => undefined);
  const env: Record<string, string> = {
    ...uniqueEnv(o.brokers, o.partitions),
    TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true',
    TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS: String(o.sessionTimeoutMs),
  };
  const config = configFrom(env);
  const groupId = env['TRUSTFOLD_PROJECTOR_GROUP'] ?? '';
  const kafka = createKafka(o.brokers, `${env['KAFKA_CLIENT_ID'] ?? 'rel'}-test`);
  await createTrustTopicUncompacted(kafka, config);
  const ingest = await startSystem({ config, roles: new Set(['ingest']), brokers: o.brokers, logger: createLogger('rel', 'silent'), env, listen: false });
  const token = await mintToken({ sub: REL_ACTOR, tenant: 'acme', scopes: REL_SCOPES, ttlSeconds: 24 * 3600 }, SECRET);
  const post = async (events: TrustfoldEvent[]): Promise<void> => {
    const body = events.map((e) => JSON.stringify(e)).join('\n');
    for (let attempt = 0; ; attempt++) {
      const r = await ingest.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' }, payload: body });
      if (r.statusCode === 202) return;
      assert.equal(r.statusCode, 503, `ingest answers 202 or 503, got ${r.statusCode}: ${r.body.slice(0, 300)}`);
      if (attempt > 20) assert.fail('ingest kept answering 503');
      await sleep(200);
    }
  };

  // What a PDP sees: every committed state, with its partition and when it arrived.
  const caused = new Map<string, number>();
  /** States read: partition, when they arrived, their producer (id/epoch) — one entry per run of one producer in a batch. */
  const arrivals: { partition: number; at: number; producer: string }[] = [];
  /** kafkajs keeps each record's batch header (producer id and epoch) beside it; its types do not say so. */
  const producerOf = (m: object): string => {
    const c = (m as { batchContext?: { producerId?: unknown; producerEpoch?: unknown } }).batchContext;
    return `${String(c?.producerId)}/${String(c?.producerEpoch)}`;
  };
  const lastProducer = (p: number, before: number): string | undefined => arrivals.findLast((a) => a.partition === p && a.at <= before)?.producer;
  const reader = kafka.consumer({ groupId: `${groupId}-pdp-${uuidv7()}`, maxWaitTimeInMs: 50, readUncommitted: false });
  await reader.connect();
  await reader.subscribe({ topic: config.topics.sessionTrust, fromBeginning: true });
  await reader.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      const at = Date.now();
      for (const m of batch.messages) {
        if (m.value === null) continue;
        const d = codec.decodeTrust(m.value);
        if (!d.ok) continue;
        if (!caused.has(d.value.caused_by)) caused.set(d.value.caused_by, at);
      }
      // One arrival per run of records by one producer (a fetch can hold the old owner's last commit and the new owner's first).
      let previous: string | undefined;
      for (const m of batch.messages) {
        const producer = producerOf(m);
        if (producer !== previous) arrivals.push({ partition: batch.partition, at, producer });
        previous = producer;
      }
    },
  });

  const procs: (RoleProcess | undefined)[] = [];
  const started = Date.now();
  const accepted: TrustfoldEvent[] = [];
  const probes: { id: string; sentAt: number }[] = [];
  const failovers: number[] = [];
  let kills = 0;
  let producing = true;
  try {
    for (let i = 0; i < o.instances; i++) procs.push(spawnRole('projector', env));
    await Promise.all(procs.map((p) => p?.ready));
    log(`projectors ready in ${Date.now() - started} ms`);

    const workload = createWorkload({ tenant: 'acme', sessions: o.sessions, signalEvery: 9 });
    const probeSessions = Array.from({ length: 4 * o.partitions }, (_, i) => `PROBE-${i}`);
    const starts = probeSessions.map((s) => sessionStartedEvent('acme', s));
    await post(starts);
    accepted.push(...starts);

    const produce = async (): Promise<void> => {
      const t0 = Date.now();
      let sent = 0;
      while (sent < o.events) {
        const batch = workload.batch(Math.min(o.batchSize, o.events - sent));
        await post(batch);
        accepted.push(...batch);
        sent += batch.length;
        const due = t0 + (o.minProduceMs * sent) / o.events;
        if (Date.now() < due) await sleep(due - Date.now());
      }
      producing = false;
    };
    const probe = async (): Promise<void> => {
      for (let i = 0; producing; i++) {
        const s = probeSessions[i % probeSessions.length] ?? 'PROBE-0';
        const e: TrustfoldEvent = {
          type: 'signal',
          kind: 'injection_detected',
          event_id: uuidv7(),
          tenant_id: 'acme',
          occurred_at: new Date().toISOString(),
          session_id: s,
          signal_id: `PROBE-SIG-${i}`,
          severity: 'high',
          detector: 'probe',
        };
        const sentAt = Date.now();
        await post([e]);
        accepted.push(e);
        probes.push({ id: e.event_id, sentAt });
        await sleep(o.probeEveryMs);
      }
    };
    // Members the coordinator dropped although their process lives (a false rebalance: no heartbeat within the
    // session timeout under load; the member rejoins under a new id): every member id seen, polled every 250 ms
    // through the run (a member dropped within 250 ms of joining can be missed), that is gone at the end, less one per kill.
    const seenMembers = new Set<string>();
    let watching = true;
    const watchMembers = async (): Promise<void> => {
      while (watching) {
        for (const m of (await groupMembers(kafka, groupId, config.topics.signals).catch(() => new Map<string, number[]>())).keys()) seenMembers.add(m);
        await sleep(250);
      }
    };
    const watcher = watchMembers();
    const killer = async (): Promise<void> => {
      while (producing) {
        await sleep(o.killEveryMs * (0.75 + Math.random() / 2));
        if (!producing) break;
        let before = await groupMembers(kafka, groupId, config.topics.signals);
        while (before.stable !== true || before.size !== procs.length) {
          await sleep(200);
          before = await groupMembers(kafka, groupId, config.topics.signals);
        }
        const k = Math.floor(Math.random() * procs.length);
        const victim = procs[k];
        const tKill = Date.now();
        await killHard(victim);
        kills++;
        // The member that is gone, once the group settled without it.
        let moved: number[] = [];
        await waitUntil(
          'the group rebalanced without the killed member',
          async () => {
            const now = await groupMembers(kafka, groupId, config.topics.signals);
            // A survivor kicked out too (a false rebalance under load) is gone as well: its partitions moved too.
            const gone = [...before.keys()].filter((m) => !now.has(m));
            if (now.stable !== true || gone.length === 0 || now.size !== before.size - 1) return false;
            moved = gone.flatMap((m) => before.get(m) ?? []);
            return true;
          },
          60_000,
          100,
        );
        // The new owner's states: written by another producer (id/epoch) than the partition's last before the kill.
        const killedProducer = new Map(moved.map((p) => [p, lastProducer(p, tKill)] as const));
        const byNewOwner = (p: number) => arrivals.filter((a) => a.partition === p && a.at > tKill && a.producer !== killedProducer.get(p));
        await waitUntil('a state by the new owner on every moved partition', async () => moved.every((p) => byNewOwner(p).length > 0), 60_000, 50);
        const took = Math.max(...moved.map((p) => Math.min(...byNewOwner(p).map((a) => a.at)) - tKill));
        failovers.push(took);
        log(`kill ${kills} (at ${tKill}, pid ${victim?.child.pid ?? '?'}): partitions [${moved.join(',')}] back after ${took} ms (load ${loadavg()[0]?.toFixed(1)})`);
        const fresh = spawnRole('projector', env);
        procs[k] = fresh;
        await fresh.ready;
      }
    };
    await Promise.all([produce(), probe(), killer()]);
    watching = false;
    await watcher;
    const present = await groupMembers(kafka, groupId, config.topics.signals);
    const expelled = [...seenMembers].filter((m) => !present.has(m)).length - kills;
    log(`produced ${accepted.length} events, ${kills} kills, in ${Date.now() - started} ms`);

    const inputs = [config.topics.decisions, config.topics.signals];
    await waitUntil(
      'projectors caught up and published',
      async () => {
        const p = await groupProgress(kafka, groupId, inputs);
        if (p.committed < p.end) return false;
        for (const proc of procs) if ((await projectorUnpublished(proc)) !== 0) return false;
        return true;
      },
      o.catchUpTimeoutMs,
      500,
    );
    const latencies = probes.map((p) => (caused.get(p.id) ?? Number.NaN) - p.sentAt);
    const unseen = latencies.filter((l) => Number.isNaN(l)).length;
    await Promise.all(procs.map((p) => stopGracefully(p)));

    const topicEvents = await readEvents(kafka, inputs);
    const topicIds = new Set(topicEvents.map((e) => e.event_id));
    const lost = accepted.filter((e) => !topicIds.has(e.event_id)).length;
    assert.equal(lost, 0, 'every accepted event is on its topic');
    const expected = freshFold(topicEvents);
    const published = await latestTrust(kafka, config.topics.sessionTrust);
    const diff = trustDifferences(published.latest, expected);
    assert.deepEqual(diff.slice(0, 10), [], `${diff.length} sessions differ from the fresh fold`);
    const versions = new Map<string, Map<number, string>>();
    let twice = 0;
    let twiceDifferent = 0;
    for (const r of await readTopics(kafka, [config.topics.sessionTrust])) {
      if (r.value === null) continue;
      const d = codec.decodeTrust(r.value);
      if (!d.ok) continue;
      const k = `${d.value.tenant_id}/${d.value.session_id}`;
      const seen = versions.get(k) ?? new Map<number, string>();
      const bytes = r.value.toString('base64');
      const had = seen.get(d.value.version);
      if (had !== undefined) {
        twice++;
        if (had !== bytes) twiceDifferent++;
      }
      seen.set(d.value.version, bytes);
      versions.set(k, seen);
    }
    assert.equal(twiceDifferent, 0, 'no version committed twice with different content');
    assert.equal(twice, 0, 'no version committed twice');
    assert.equal(unseen, 0, 'every probe reached the PDP reader');
    assert.ok(kills > 0, 'at least one kill');
    const seen = latencies.filter((l) => !Number.isNaN(l));
    return printFigure('projector-failover', {
      events: accepted.length,
      instances: o.instances,
      partitions: o.partitions,
      kills,
      'session timeout ms': o.sessionTimeoutMs,
      'signal→PDP ms p50': quantile(seen, 0.5),
      'p99': quantile(seen, 0.99),
      'max': Math.max(...seen),
      probes: seen.length,
      'failover ms (each)': failovers.join('/'),
      'failover ms max': Math.max(...failovers),
      'live members dropped (false rebalances)': expelled,
      'trust states = fresh fold': `${expected.size - diff.length}/${expected.size}`,
      'versions twice (different)': `${twice} (${twiceDifferent})`,
      'load avg (1 min) at end': loadavg()[0]?.toFixed(1) ?? '?',
      seconds: Math.round((Date.now() - started) / 1000),
    });
  } finally {
    producing = false;
    await Promise.all(procs.map((p) => killHard(p)));
    await reader.disconnect().catch(() => undefined);
    await ingest.close();
  }
};
