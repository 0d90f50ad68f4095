// The Kafka loop around the pure fold: decode → evolve → publish, thin.
//
// Two delivery modes (README, "Delivery modes"). `transactional`: exactly once
// per group with a Kafka transaction. `idempotent`: per group, (1) the changed
// states with an idempotent producer (the only step PDPs wait for), (2) the
// changelog records, (3) the consumed offsets; a crash in between replays
// events that the deterministic fold turns into the same states again, and a
// restore checks every replayed version against what was already published.
//
// Transactional mode, in detail: the changed trust states
// (session-trust topic), the records the fold wrote (changelog topic) and the
// consumed offsets commit together or not at all. On start the world is read
// back from the changelog, which is then exactly the state whose offsets were
// committed, so nothing is lost, nothing is applied twice and no version goes
// back. initTransactions() with the same transactional id fences a zombie
// predecessor (a killed process whose transaction is still open is aborted).
//
// Time: every batch first ticks the fold to wall time, and a timer ticks it
// every `tickIntervalMs`, so a cause with `expires_at` is released even when no
// event arrives. Expiry transitions are stamped with the expiry instant, so a
// replay that releases them by event time produces the same states.
//
// This file is the lifecycle (start, teardown, bring-up after a restore,
// recovery) and the loop (batch → fold → group → pump, the tick, backpressure);
// they share the state of one closure, which is why it stays ~450 lines. What
// stands alone is beside it: api.ts (what it takes and gives), input.ts (a
// batch → the events to fold, poison dead-lettered), group.ts (seal),
// delivery/ (one file per mode behind one interface), transaction.ts (one
// Kafka transaction), restore.ts and resume.ts + reconcile.ts (after a
// restore), clients.ts (its Kafka clients and topics), timing.ts.
import type { Consumer, EachBatchPayload, Producer } from 'kafkajs';
import { createCodec } from '../../schemas/codec.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import { errorMessage } from '../lib/errors.ts';
import { newProjectorStats, type Projector, type ProjectorDeps, type ProjectorStats } from './api.ts';
import { changelogProducer, ensureProjectorTopics, inputConsumer, statesProducer } from './clients.ts';
import { DEFAULT_DELIVERY } from './config.ts';
import { createIdempotentDelivery, type Marks } from './delivery/idempotent.ts';
import { createTransactionalDelivery } from './delivery/transactional.ts';
import type { DeliveryContext, GroupDelivery } from './delivery/types.ts';
import { DEFAULT_FOLD_CONFIG, evolve, initialWorld, tick, viewOf, type Transition, type World } from './evolve.ts';
import { emptyGroup, isEmptyGroup, seal, type Group } from './group.ts';
import { admitBatch, type AdmitDeps } from './input.ts';
import { inputKey, restoreState, unreadInput, type RestoreDeps } from './restore.ts';
import { createResume } from './resume.ts';
import { copyTiming, countRequests, emptyTiming } from './timing.ts';

export type { Delivery } from './config.ts';
export type { Projector, ProjectorDeps, ProjectorStats } from './api.ts';
export type { TransactionTiming } from './timing.ts';

export const changelogTopicOf = (sessionTrustTopic: string, groupId: string): string => `${sessionTrustTopic}.changelog.${groupId}`;

export const createProjector = (deps: ProjectorDeps): Projector => {
  const { kafka, config, logger } = deps;
  const fold = deps.fold ?? DEFAULT_FOLD_CONFIG;
  const groupId = deps.groupId ?? `${config.kafka.clientId}-projector`;
  const changelogTopic = deps.changelogTopic ?? changelogTopicOf(config.topics.sessionTrust, groupId);
  const transactionalId = deps.transactionalId ?? `${groupId}-0`;
  const tickIntervalMs = deps.tickIntervalMs ?? 1_000;
  const now = deps.now ?? Date.now;
  const codec = deps.codec ?? createCodec();
  const inputTopics = [config.topics.signals, ...(deps.consumeDecisions === false ? [] : [config.topics.decisions])];
  const maxPendingRecords = deps.maxPendingRecords ?? 20_000;
  const maxConcurrentPartitions = deps.maxConcurrentPartitions ?? 64;
  const delivery = deps.delivery ?? DEFAULT_DELIVERY;

  let world: World = initialWorld();
  let producer: Producer | undefined;
  /** Idempotent mode: the changelog producer (steps (2)), apart from `producer` (states, step (1)) so it never queues in front of a state. */
  let logProducer: Producer | undefined;
  let dlq: Producer | undefined;
  let consumer: Consumer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let ready = false;
  let broken = false;
  let recovering: Promise<void> | undefined;
  let starting = false;
  /** Settles when stop() is called: a restore that is still reading gives up instead of holding the stop. */
  let stopRequested!: () => void;
  const stopped = new Promise<never>((_, reject) => {
    stopRequested = () => reject(new Error('projector stopping'));
  });
  stopped.catch(() => undefined);
  const untilStopped = <T>(p: Promise<T>): Promise<T> => Promise.race([p, stopped]);
  const maxPublishLagMs = deps.maxPublishLagMs ?? 30_000;
  const stats: ProjectorStats = newProjectorStats();
  /**
   * "Caught up" must mean "published": states folded but not yet acknowledged
   * by the session-trust topic, and when the oldest of them was folded (the
   * pending group's, else the one being published).
   */
  let unpublished = 0;
  let publishingSince: number | undefined;

  // ---- idempotent mode: what was published but may not be in the changelog
  //
  // `marks` (delivery/idempotent.ts): what the changelog's published marker
  // says was published and folded. `ahead`: after a restore, the sessions
  // whose published versions go past the restored world, with those states'
  // bytes; every replayed version of them is checked against them (see
  // `reconcile`).
  const marks: Marks = { covered: new Map(), folded: new Map() };
  let aheadAtRestore = 0;
  /** Input partitions (topic\0partition → end offset at restore) to fold before the `ahead` sessions are settled. */
  let replayTargets = new Map<string, bigint>();
  const timing = emptyTiming();

  const resume = createResume({ codec, logger, stats });
  const admitDeps: AdmitDeps = { codec, logger, dlq: () => dlq, deadLetterTopic: config.topics.deadLetter, groupId, now, stats };

  const restoreDeps = (): RestoreDeps => ({ kafka, groupId, logger, codec, untilStopped });

  const restore = async (): Promise<World> => {
    const r = await restoreState(restoreDeps(), { changelogTopic, sessionTrustTopic: config.topics.sessionTrust, readPublished: delivery === 'idempotent' });
    stats.restoredRecords = r.records;
    marks.covered = r.covered;
    marks.folded = r.folded;
    resume.restored(r.ahead);
    aheadAtRestore = r.ahead.size;
    return r.world;
  };

  /** Idempotent mode, once the replay folded everything the previous run could have: publish the sessions it left behind what was published. */
  const settleAhead = (): void => {
    const settled = resume.settle(world, (key, next) => {
      addState(viewOf(next));
      pending.touched.add(key);
    });
    if (settled) schedulePump();
  };

  // ---- group commit
  //
  // Batches (from every partition, handled concurrently by kafkajs) and timer
  // ticks fold synchronously into `world` and append their output and their
  // next offsets to `pending`. One transaction at a time commits everything
  // pending; while it runs, the next group accumulates. A group is sealed
  // synchronously — its messages, the changelog records of what it touched and
  // its offsets are taken at that instant — so it holds exactly the world that
  // the offsets it commits imply.
  const addState = (s: SessionTrust): void => {
    if (pending.changed.length === 0) pending.firstAt = now();
    pending.changed.push(s);
    unpublished++;
  };
  /** A group's states were acknowledged by the session-trust topic. */
  const acknowledged = (g: Group): void => {
    unpublished -= g.changed.length;
    publishingSince = undefined;
    stats.published += g.changed.length;
    stats.sessions = world.sessions.size;
  };
  const publishLagMs = (): number => {
    const oldest = publishingSince ?? pending.firstAt;
    return unpublished === 0 || oldest === undefined ? 0 : Math.max(0, now() - oldest);
  };
  let pending: Group = emptyGroup();
  let inFlight: Promise<void> | undefined;
  let pumpScheduled = false;
  let drained: (() => void)[] = [];

  const collect = (t: Transition): void => {
    world = t.world;
    for (const s of resume.reconciled(world, t.changed)) addState(s);
    for (const k of t.touched) pending.touched.add(k);
  };

  /** Invalidates the in-memory world (it may be ahead of or apart from what committed) and rebuilds it from the changelog. */
  const invalidate = (reason: string, e?: unknown): void => {
    if (broken) return;
    broken = true;
    logger.error({ err: e === undefined ? undefined : errorMessage(e), reason }, 'projector state invalidated; recovering from the changelog');
    scheduleRecovery();
  };

  // ---- delivery: one mode behind one interface (delivery/)
  const deliveryContext: DeliveryContext = {
    groupId,
    sessionTrustTopic: config.topics.sessionTrust,
    changelogTopic,
    logger,
    timing,
    producer: () => producer,
    acknowledged: (g) => acknowledged(g),
  };
  const out: GroupDelivery =
    delivery === 'idempotent'
      ? createIdempotentDelivery({
          ...deliveryContext,
          logProducer: () => logProducer,
          marks,
          invalidate: (reason, e) => invalidate(reason, e),
          onIdle: () => {
            if (inFlight === undefined) pump();
          },
        })
      : createTransactionalDelivery(deliveryContext);

  /** Starts the next transaction (or, idempotent, the next group) if none is running and something is pending. */
  const pump = (): void => {
    pumpScheduled = false;
    if (inFlight !== undefined) return;
    if (broken || isEmptyGroup(pending)) {
      if (out.backlog() > 0) return; // groups still record; the recorder pumps again when done
      const waiting = drained;
      drained = [];
      for (const w of waiting) w();
      return;
    }
    if (out.full()) return; // the recorder pumps again when done
    const g = pending;
    pending = emptyGroup();
    publishingSince = g.firstAt;
    // Sealed now, synchronously: the states, the changelog records of the world at this instant, the offsets.
    const run = out.deliver(g, seal(world, g, codec.encodeTrust));
    inFlight = run.then(
      () => {
        inFlight = undefined;
        pump();
      },
      (e: unknown) => {
        inFlight = undefined;
        invalidate('transaction failed', e);
        const waiting = drained;
        drained = [];
        for (const w of waiting) w();
      },
    );
  };

  /** Batches of one fetch are dispatched in the same turn: let them all join the group. */
  const schedulePump = (): void => {
    if (pumpScheduled || inFlight !== undefined) return;
    pumpScheduled = true;
    setImmediate(pump);
  };

  /** Resolves once everything queued so far committed (or the world was invalidated). */
  const flush = (): Promise<void> =>
    new Promise<void>((resolve) => {
      if (out.backlog() === 0 && (broken || (inFlight === undefined && isEmptyGroup(pending)))) return resolve();
      drained.push(resolve);
      schedulePump();
    });

  const onBatch = async ({ batch }: EachBatchPayload): Promise<void> => {
    if (broken) throw new Error('projector is recovering');
    // Backpressure: at most one group commits (idempotent: publishes, and a bounded backlog records) while the next accumulates.
    while ((inFlight !== undefined || out.full()) && pending.changed.length + pending.touched.size >= maxPendingRecords) {
      await (inFlight ?? out.tail());
      if (broken) throw new Error('projector is recovering');
    }
    const key = inputKey(batch.topic, batch.partition);
    const floor = marks.folded.get(key);
    const valid = await admitBatch(batch, floor === undefined ? -1n : BigInt(floor.offset), admitDeps);
    if (broken) throw new Error('projector is recovering');
    // From here to the end: synchronous, so no group is sealed halfway through a batch.
    collect(tick(world, now(), fold));
    for (const v of valid) collect(evolve(world, v.event, fold, v.appendedAt));
    const last = batch.messages.at(-1);
    if (last !== undefined) {
      pending.offsets.set(key, { topic: batch.topic, partition: batch.partition, offset: String(BigInt(last.offset) + 1n) });
      const target = replayTargets.get(key);
      if (target !== undefined && BigInt(last.offset) + 1n >= target) {
        replayTargets.delete(key);
        if (replayTargets.size === 0) settleAhead();
      }
    }
    stats.batches++;
    schedulePump();
  };

  const onTick = (): void => {
    if (!ready || broken) return;
    collect(tick(world, now(), fold));
    if (!isEmptyGroup(pending)) schedulePump();
  };

  const teardown = async (): Promise<void> => {
    ready = false;
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    const c = consumer;
    if (delivery === 'idempotent' && c !== undefined) {
      // Step (3) commits with this consumer: stop fetching, let what is queued
      // (a healthy stop) or running (a recovery) publish and record, then leave.
      try {
        c.pause(inputTopics.map((topic) => ({ topic })));
      } catch {
        // not running (crashed): nothing more will be fetched anyway
      }
      if (!broken) await flush();
      while (inFlight !== undefined) await inFlight;
      for (let t = out.tail(); t !== undefined; t = out.tail()) await t;
    }
    consumer = undefined;
    await c?.disconnect().catch(() => undefined);
    // No more batches: commit what is queued (a healthy stop), or let a running
    // transaction settle before the changelog is read back (a recovery).
    if (!broken) await flush();
    while (inFlight !== undefined) await inFlight;
    for (let t = out.tail(); t !== undefined; t = out.tail()) await t;
    pending = emptyGroup();
    out.reset();
    unpublished = 0;
    publishingSince = undefined;
    const p = producer;
    const l = logProducer;
    const d = dlq;
    producer = undefined;
    logProducer = undefined;
    dlq = undefined;
    await p?.disconnect().catch(() => undefined);
    await l?.disconnect().catch(() => undefined);
    await d?.disconnect().catch(() => undefined);
  };

  const bringUp = async (): Promise<void> => {
    // The producers that own the transactional id come first: initTransactions
    // fences a killed predecessor and aborts its open transaction, so the
    // changelog read below (read_committed) is not held back by it.
    producer = statesProducer(kafka, delivery, transactionalId);
    countRequests(producer, timing);
    await producer.connect();
    if (delivery === 'idempotent') {
      // Steps (2)+(3) are one transaction (`record`, delivery/idempotent.ts); the states of step (1) stay outside it.
      logProducer = changelogProducer(kafka, transactionalId);
      await logProducer.connect();
    }
    const owner = delivery === 'transactional' ? producer : logProducer;
    if (owner !== undefined) await (await owner.transaction()).abort();
    world = await restore();
    pending = emptyGroup();
    unpublished = 0;
    publishingSince = undefined;
    broken = false;
    if (delivery === 'idempotent') replayTargets = resume.size() > 0 ? await unreadInput(restoreDeps(), inputTopics, marks.folded) : new Map();
    dlq = kafka.producer({ idempotent: true });
    await dlq.connect();
    // Causes that expired while we were down are released before new input.
    collect(tick(world, now(), fold));
    await flush();
    if (broken) throw new Error('initial expiry transaction failed');
    const sessionTimeout = deps.sessionTimeoutMs ?? 10_000;
    const c = inputConsumer(kafka, groupId, sessionTimeout);
    // Batches are acknowledged to kafkajs before their transaction commits
    // (pipelining), so the consumer's position can be ahead of the committed
    // offsets. A rejoin or a restart re-reads from the committed offsets: the
    // world would then see those events twice. Rebuild instead.
    let joins = 0;
    c.on(c.events.GROUP_JOIN, () => {
      if (++joins > 1 && consumer === c) invalidate('consumer rejoined the group');
    });
    c.on(c.events.REBALANCING, () => {
      if (consumer === c) invalidate('consumer group rebalancing');
    });
    c.on(c.events.CRASH, (e) => {
      if (consumer === c) invalidate('consumer crashed', e.payload.error);
    });
    consumer = c;
    await c.connect();
    await c.subscribe({ topics: inputTopics, fromBeginning: true });
    await c.run({ autoCommit: false, partitionsConsumedConcurrently: maxConcurrentPartitions, eachBatch: onBatch });
    timer = setInterval(onTick, tickIntervalMs);
    timer.unref();
    stats.sessions = world.sessions.size;
    if (replayTargets.size === 0) settleAhead();
    ready = true;
  };

  const scheduleRecovery = (): void => {
    // While start() brings the pipeline up, it checks `broken` itself when done.
    if (recovering !== undefined || !running || starting) return;
    stats.recoveries++;
    recovering = (async () => {
      // Let the failing eachBatch return before the consumer is disconnected.
      await new Promise((r) => setImmediate(r));
      for (let attempt = 0; running; attempt++) {
        try {
          await teardown();
          await bringUp();
          // Invalidated again while coming up (the new consumer rejoined,
          // crashed, a send failed): its recovery was this one, so go round again.
          if (broken) throw new Error('invalidated while recovering');
          logger.info({ attempt, ...restoreSummary() }, 'projector recovered');
          return;
        } catch (e) {
          logger.error({ err: errorMessage(e), attempt }, 'projector recovery failed; retrying');
          await new Promise((r) => setTimeout(r, Math.min(5_000, 200 * 2 ** attempt)));
        }
      }
    })().finally(() => {
      recovering = undefined;
    });
  };

  /** What the last restore found, for the start / recovery log line: enough to tell afterwards what an instance did around a kill. */
  const restoreSummary = (): Record<string, unknown> => ({
    restored: stats.restoredRecords,
    sessions: world.sessions.size,
    consumedAt: [...marks.folded.values()].map((o) => `${o.topic}/${o.partition}@${o.offset}`),
    publishedAhead: aheadAtRestore,
    replayTo: [...replayTargets].map(([k, end]) => `${k.replace('\u0000', '/')}@${end}`),
  });

  const readiness = (): true | string => {
    if (!ready || broken) return 'restoring state';
    const lag = publishLagMs();
    if (lag > maxPublishLagMs) return `${unpublished} trust states folded but not published for ${lag} ms`;
    return true;
  };

  return {
    async start() {
      if (running) return;
      running = true;
      if (deps.ensureTopics !== false) await ensureProjectorTopics(kafka, config, changelogTopic);
      starting = true;
      try {
        await bringUp();
      } catch (e) {
        running = false;
        await teardown();
        throw e;
      } finally {
        starting = false;
      }
      if (broken) scheduleRecovery();
      logger.info({ groupId, delivery, transactionalId, ...restoreSummary() }, 'projector started');
    },
    async stop() {
      running = false;
      stopRequested();
      await recovering;
      await teardown();
    },
    isReady: () => readiness() === true,
    readiness,
    stats: () => ({ ...stats, sessions: world.sessions.size, unpublished, publishLagMs: publishLagMs() }),
    timing: () => copyTiming(timing),
    activeFreezes: (tenantId) =>
      [...world.freezes.values()].filter((f) => f.tenant_id === tenantId && f.status === 'active').map((f) => ({ ...f.freeze, scope: { ...f.freeze.scope } })),
  };
};
