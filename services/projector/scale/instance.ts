// Scale-out (README, "Scaling out"): one projector instance among several in
// one consumer group. The group's co-partitioned assigner gives it partitions
// p of decisions and signals; each becomes a task (task.ts) with its own
// world, changelog partition and transactional id. Every instance also reads
// the global kinds of all signals partitions (global.ts) and hands each to
// all its tasks, which fan it out to the sessions they own. On a rebalance a
// task it keeps goes on (input re-read from the committed offsets is skipped
// below what it folded); a revoked one is dropped; a new one fences the old
// owner, restores only its changelog partition and starts where that
// changelog says the previous owner's committed world ends. In the
// idempotent delivery mode the new task claims its epoch before it opens
// (task.ts, README "Scaling out" → "Delivery mode").
import type { Consumer, EachBatchPayload, IMemberAssignment, Producer } from 'kafkajs';
import { statesProducer } from '../clients.ts';
import { createCodec } from '../../../schemas/codec.ts';
import { errorMessage } from '../../lib/errors.ts';
import { newProjectorStats, type Projector, type ProjectorDeps, type ProjectorStats } from '../api.ts';
import { ensureProjectorTopics } from '../clients.ts';
import { DEFAULT_FOLD_CONFIG, evolve, initialWorld, tick } from '../evolve.ts';
import type { AdmitDeps } from '../input.ts';
import type { InputOffset } from '../restore.ts';
import { emptyTiming } from '../timing.ts';
import { coPartitionedAssigner } from './assigner.ts';
import { createGlobalReader } from './global.ts';
import { createPublishedReader } from './published.ts';
import { readChangelogPartitions } from './restore.ts';
import { restoredFrom, type Restored } from './folded.ts';
import { createStandby } from './standby.ts';
import { createTask, isFenced, type Task } from './task.ts';

export const changelogTopicFor = (sessionTrustTopic: string, groupId: string): string => `${sessionTrustTopic}.changelog.${groupId}`;

export const createScaledProjector = (deps: ProjectorDeps): Projector => {
  const { kafka, config, logger } = deps;
  // Scale-out's default is transactional (an explicit choice is needed for the other one: README, "Scaling out" → "Delivery mode").
  const delivery = deps.delivery ?? 'transactional';
  const fold = deps.fold ?? DEFAULT_FOLD_CONFIG;
  const groupId = deps.groupId ?? `${config.kafka.clientId}-projector`;
  const changelogTopic = deps.changelogTopic ?? changelogTopicFor(config.topics.sessionTrust, groupId);
  const tickIntervalMs = deps.tickIntervalMs ?? 1_000;
  const now = deps.now ?? Date.now;
  const codec = deps.codec ?? createCodec();
  const signals = config.topics.signals;
  const inputTopics = [signals, ...(deps.consumeDecisions === false ? [] : [config.topics.decisions])];
  const sessionTimeout = deps.sessionTimeoutMs ?? 10_000;
  const stats: ProjectorStats = newProjectorStats();
  let running = false;
  let consumer: Consumer | undefined;
  let dlq: Producer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let consumerFailure: string | undefined;
  /** The tasks of the latest assignment (opening ones included). */
  const tasks = new Map<number, Task>();
  let assigned = new Set<number>();
  let joined = false;
  /** Assignments received so far (a fenced partition's reopen is void once another came). */
  let joins = 0;
  const opening = new Set<Promise<void>>();
  /**
   * Producers of the partitions this instance does not own, connected but not
   * initialised (initialising is the fence): a takeover skips the connection
   * set-up. Refilled after each assignment; part of the warm standby.
   */
  const spares = new Map<number, Promise<Producer | undefined>>();
  const partitionCount = config.kafka.partitions;
  const refillSpares = (): void => {
    if (!running || standby === undefined) return;
    for (let p = 0; p < partitionCount; p++) {
      if (tasks.has(p) || spares.has(p)) continue;
      const prod = statesProducer(kafka, 'transactional', `${groupId}-${p}`);
      spares.set(
        p,
        prod.connect().then(
          () => prod,
          () => undefined,
        ),
      );
    }
  };
  const takeSpare = async (p: number): Promise<Producer | undefined> => {
    const s = spares.get(p);
    spares.delete(p);
    return s === undefined ? undefined : await s;
  };
  let stopRequested!: () => void;
  const stopped = new Promise<never>((_, reject) => {
    stopRequested = () => reject(new Error('projector stopping'));
  });
  stopped.catch(() => undefined);
  const untilStopped = <T>(p: Promise<T>): Promise<T> => Promise.race([p, stopped]);

  /** The global table as this instance holds it (no sessions): for `activeFreezes`. */
  const globalWorld = initialWorld();
  const global = createGlobalReader({
    kafka,
    topic: signals,
    groupId,
    codec,
    logger,
    onEntry: (e) => {
      evolve(globalWorld, e.event, fold, e.appendedAt);
      for (const t of tasks.values()) t.onGlobal(e);
    },
  });
  /** Warm standby of every changelog partition (default on): a task opens from memory instead of a restore read. */
  const standby = deps.standby === false ? undefined : createStandby({ kafka, topic: changelogTopic, groupId, logger, untilStopped, mode: deps.standby === 'bytes' ? 'bytes' : 'folded' });
  /** Idempotent: this instance's reader of its own partitions of session-trust, for the tasks' repair of a zombie's late states. */
  const published = delivery === 'idempotent' ? createPublishedReader({ kafka, topic: config.topics.sessionTrust, groupId, partitions: config.kafka.partitions }) : undefined;
  const admitDeps: AdmitDeps = { codec, logger, dlq: () => dlq, deadLetterTopic: config.topics.deadLetter, groupId, now, stats };

  const pausePartition = (c: Consumer | undefined, p: number): void => {
    try {
      c?.pause(inputTopics.map((topic) => ({ topic, partitions: [p] })));
    } catch {
      // not running: nothing is fetched anyway
    }
  };

  /** Input of partition p continues where the task's restored world ends (the start when nothing was recorded). */
  const resumeAt = (p: number, at: InputOffset[]): void => {
    const c = consumer;
    if (c === undefined) return;
    for (const topic of inputTopics) c.seek({ topic, partition: p, offset: at.find((o) => o.topic === topic)?.offset ?? '-2' });
    c.resume(inputTopics.map((topic) => ({ topic, partitions: [p] })));
  };

  const openTasks = (partitions: number[], attempt = 0): void => {
    const fresh = partitions.map((p) => {
      const t: Task = createTask({
        kafka,
        partition: p,
        groupId,
        changelogTopic,
        sessionTrustTopic: config.topics.sessionTrust,
        fold,
        now,
        codec,
        logger,
        admit: admitDeps,
        global,
        stats,
        maxPendingRecords: deps.maxPendingRecords ?? 20_000,
        onFailure: (fenced) => taskFailed(t, fenced),
        delivery,
        inputTopics,
        untilStopped,
        ...(published !== undefined && { published }),
      });
      tasks.set(p, t);
      return t;
    });
    const current = (t: Task): boolean => running && tasks.get(t.partition) === t;
    const run = (async () => {
      const t0 = Date.now();
      try {
        // Fence first: the old owner's open transaction is aborted, so the read_committed restore is not held back by it.
        await untilStopped(Promise.all(fresh.map(async (t) => t.init(await takeSpare(t.partition)))));
        const initMs = Date.now() - t0;
        const ps = fresh.filter(current).map((t) => t.partition);
        const restored =
          standby === undefined
            ? new Map([...(await readChangelogPartitions({ kafka, groupId, logger, untilStopped }, changelogTopic, ps))].map(([p, rs]) => [p, restoredFrom(rs)] as const))
            : new Map(await Promise.all(ps.map(async (p) => [p, await standby.restored(p)] as const)));
        const restoredOf = (p: number): Restored => restored.get(p) ?? restoredFrom([]);
        // Idempotent: each new task claims its epoch and reads back what was published past its changelog.
        if (delivery === 'idempotent') await untilStopped(Promise.all(fresh.filter(current).map((t) => t.claim(restoredOf(t.partition)))));
        for (const t of fresh) {
          if (!current(t)) continue;
          const r = restoredOf(t.partition);
          stats.restoredRecords += r.records;
          resumeAt(t.partition, t.open(r));
        }
        logger.info({ partitions: fresh.filter(current).map((t) => t.partition), ms: Date.now() - t0, initMs }, 'projector partitions opened');
        refillSpares();
      } catch (e) {
        for (const t of fresh) {
          if (!current(t)) {
            void t.close();
            continue;
          }
          tasks.delete(t.partition);
          void t.close();
        }
        if (!running) return;
        // Idempotent: fenced while claiming = another instance took the partition after this one's fence: as taskFailed.
        const fenced = delivery === 'idempotent' && isFenced(e);
        logger.error({ err: errorMessage(e), partitions, attempt, fenced }, fenced ? 'opening projector partitions fenced; reopened once heartbeats confirm the assignment' : 'opening projector partitions failed; retrying');
        if (fenced) reopenWhenConfirmed(partitions);
        else setTimeout(() => reopen(partitions, attempt + 1), Math.min(5_000, 200 * 2 ** attempt)).unref();
      }
    })();
    opening.add(run);
    void run.finally(() => opening.delete(run));
  };

  /** Opens those of `ps` still assigned and without a task. */
  const reopen = (ps: number[], attempt: number): void => {
    const todo = ps.filter((p) => running && assigned.has(p) && !tasks.has(p));
    if (todo.length > 0) openTasks(todo, attempt);
  };

  const taskFailed = (t: Task, fenced: boolean): void => {
    if (tasks.get(t.partition) !== t) return;
    tasks.delete(t.partition);
    pausePartition(consumer, t.partition);
    stats.recoveries++;
    void t.close();
    if (fenced) reopenWhenConfirmed([t.partition]);
    else setTimeout(() => reopen([t.partition], 0), 200).unref();
  };

  /**
   * Fenced: another instance opened the partition. Who owns it is what the
   * group says, and this member's view of that may be stale: it may have been
   * dropped without knowing yet (the fencer is then the owner), or the fencer
   * may be a member that opened the partition for an earlier generation and
   * has since been revoked (this member is then the owner, and nobody else
   * will open it). So: no retry by timer — one that fired before this member
   * learnt of its own expulsion fenced the real owner back, which fenced it
   * again (a ping-pong after restarts under load) — and no waiting for a
   * rebalance either, which may never come. The partition is opened again
   * once two heartbeats have succeeded since the fence with no new
   * assignment in between: the coordinator then holds this member in the
   * generation whose assignment gives it the partition. Dropped, its
   * heartbeats fail and it rejoins; onJoin then opens what is still its own.
   */
  const reopenWhenConfirmed = (ps: number[]): void => {
    afterHeartbeats.push({ beats: heartbeats + 2, joins, ps });
  };
  /** Fenced partitions waiting for the membership to be confirmed. */
  let afterHeartbeats: { beats: number; joins: number; ps: number[] }[] = [];
  let heartbeats = 0;
  const onHeartbeat = (): void => {
    heartbeats++;
    const due = afterHeartbeats.filter((w) => w.beats <= heartbeats);
    if (due.length === 0) return;
    afterHeartbeats = afterHeartbeats.filter((w) => w.beats > heartbeats);
    // An assignment came in between: onJoin has already opened what is this member's.
    for (const w of due) if (w.joins === joins) reopen(w.ps, 0);
  };

  const onJoin = (c: Consumer, assignment: IMemberAssignment): void => {
    if (consumer !== c) return;
    joins++;
    const mine = new Set(assignment[signals] ?? []);
    joined = true;
    assigned = mine;
    for (const [p, t] of tasks) {
      if (mine.has(p)) continue;
      tasks.delete(p);
      void t.close();
    }
    for (const p of mine) if (tasks.get(p)?.isReady() !== true) pausePartition(c, p);
    const news = [...mine].filter((p) => !tasks.has(p)).sort((a, b) => a - b);
    logger.info({ partitions: [...mine].sort((a, b) => a - b), opening: news }, 'projector assignment');
    deps.onAssignment?.([...mine].sort((a, b) => a - b));
    if (news.length > 0) openTasks(news);
    else refillSpares();
  };

  const onBatch = async ({ batch, isStale, heartbeat }: EachBatchPayload): Promise<void> => {
    // A batch fetched before a seek (a task opened at another offset) is not the input that follows.
    if (isStale()) return;
    const t = tasks.get(batch.partition);
    if (t === undefined || !t.isReady() || !(await t.onBatch(batch, heartbeat))) pausePartition(consumer, batch.partition);
  };

  const onTick = (): void => {
    tick(globalWorld, now(), fold);
    for (const t of tasks.values()) t.onTick();
  };

  /** Published means published (README, "The runtime"): states folded and not committed yet, over the tasks, and the age of the oldest. */
  const unpublished = (): { count: number; lagMs: number } => {
    let count = 0;
    let oldest: number | undefined;
    for (const t of tasks.values()) {
      const u = t.unpublished();
      count += u.count;
      if (u.since !== undefined && (oldest === undefined || u.since < oldest)) oldest = u.since;
    }
    return { count, lagMs: count === 0 || oldest === undefined ? 0 : Math.max(0, now() - oldest) };
  };
  const maxPublishLagMs = deps.maxPublishLagMs ?? 30_000;

  const readiness = (): true | string => {
    if (!running || !joined) return 'joining the projector group';
    if (consumerFailure !== undefined) return `consumer failed: ${consumerFailure}`;
    const waiting = [...assigned].filter((p) => tasks.get(p)?.isReady() !== true);
    if (waiting.length > 0) return `restoring partitions ${waiting.join(',')}`;
    const u = unpublished();
    return u.lagMs > maxPublishLagMs ? `${u.count} trust states folded but not published for ${u.lagMs} ms` : true;
  };

  return {
    async start() {
      if (running) return;
      running = true;
      try {
        if (deps.ensureTopics !== false) await ensureProjectorTopics(kafka, config, changelogTopic);
        dlq = kafka.producer({ idempotent: true });
        await dlq.connect();
        // The global table first: a session whose partition opens inherits the revocations and freezes already raised.
        await untilStopped(Promise.all([global.start(), standby?.start(), published?.start()]));
        const c = kafka.consumer({
          groupId,
          partitionAssigners: [coPartitionedAssigner(() => [...tasks.keys()])],
          maxWaitTimeInMs: 100,
          readUncommitted: false,
          sessionTimeout,
          rebalanceTimeout: Math.max(sessionTimeout, 10_000),
          heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 10)),
        });
        consumer = c;
        c.on(c.events.GROUP_JOIN, (e) => onJoin(c, e.payload.memberAssignment));
        c.on(c.events.HEARTBEAT, () => {
          if (consumer === c) onHeartbeat();
        });
        // When this member learnt of a rebalance (a failover's detection: the group's session timeout, then a heartbeat).
        c.on(c.events.REBALANCING, () => logger.info({ partitions: [...assigned].sort((a, b) => a - b) }, 'projector group rebalancing'));
        c.on(c.events.CRASH, (e) => {
          if (consumer !== c) return;
          logger.error({ err: errorMessage(e.payload.error), restart: e.payload.restart }, 'projector consumer crashed');
          if (!e.payload.restart) consumerFailure = errorMessage(e.payload.error);
        });
        await c.connect();
        await c.subscribe({ topics: inputTopics, fromBeginning: true });
        await c.run({ autoCommit: false, partitionsConsumedConcurrently: deps.maxConcurrentPartitions ?? 64, eachBatch: onBatch });
        timer = setInterval(onTick, tickIntervalMs);
        timer.unref();
        // Ready once this member's first assignment is open.
        while (running && (!joined || opening.size > 0 || readiness() !== true)) await untilStopped(new Promise((r) => setTimeout(r, 20)));
        logger.info({ groupId, delivery, partitions: [...assigned], global: global.size() }, 'projector started (scale-out)');
      } catch (e) {
        await this.stop();
        throw e;
      }
    },
    async stop() {
      running = false;
      stopRequested();
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      const c = consumer;
      try {
        c?.pause(inputTopics.map((topic) => ({ topic })));
      } catch {
        // not running
      }
      // Commit what is folded before leaving the group: the next owner starts from there.
      await Promise.all([...tasks.values()].map((t) => t.flush()));
      consumer = undefined;
      await c?.disconnect().catch(() => undefined);
      await Promise.all([...tasks.values()].map((t) => t.close()));
      tasks.clear();
      await global.stop();
      await standby?.stop();
      await published?.stop();
      const idle = [...spares.values()];
      spares.clear();
      await Promise.all(idle.map(async (sp) => (await sp)?.disconnect().catch(() => undefined)));
      const d = dlq;
      dlq = undefined;
      await d?.disconnect().catch(() => undefined);
    },
    isReady: () => readiness() === true,
    readiness,
    stats: () => {
      const u = unpublished();
      return { ...stats, sessions: [...tasks.values()].reduce((n, t) => n + t.sessions(), 0), unpublished: u.count, publishLagMs: u.lagMs };
    },
    timing: () => emptyTiming(),
    activeFreezes: (tenantId) =>
      [...globalWorld.freezes.values()].filter((f) => f.tenant_id === tenantId && f.status === 'active').map((f) => ({ ...f.freeze, scope: { ...f.freeze.scope } })),
  };
};
