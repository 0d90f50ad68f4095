// The Kafka loop around the pure fold: decode → evolve → publish, thin.
//
// Exactly-once per batch with a Kafka transaction: the changed trust states
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
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Consumer, EachBatchPayload, Kafka, Message, Producer, Transaction } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { ActiveFreeze, SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import type { Config } from '../lib/config.ts';
import { errorMessage } from '../lib/errors.ts';
import { ensureTopics, sendToDeadLetter, sessionKey, topicLayout } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { trackCatchUp, endOffsets } from './catch-up.ts';
import { decodeRecord, encodeRecord, recordOf, snapshotFromRecords, type ChangelogRecord } from './changelog.ts';
import { DEFAULT_FOLD_CONFIG, evolve, initialWorld, restoreWorld, tick, type FoldConfig, type Transition, type World } from './evolve.ts';

export type ProjectorDeps = {
  kafka: Kafka;
  config: Pick<Config, 'topics' | 'kafka'>;
  logger: Logger;
  fold?: FoldConfig;
  /** Consumer group of the projector; one group per deployment. */
  groupId?: string;
  /** Default `<groupId>.changelog` next to the session-trust topic name. */
  changelogTopic?: string;
  /** Default `<groupId>-0`: one instance owns it; a restarted instance fences its predecessor. */
  transactionalId?: string;
  tickIntervalMs?: number;
  /**
   * Consumer session timeout. A killed instance holds its partitions until it
   * expires, so this bounds how long a replacement waits (default 10 s).
   */
  sessionTimeoutMs?: number;
  /** Wall clock (ms); injected so tests can drive expiry. */
  now?: () => number;
  codec?: Codec;
  /** Learn session facts from decisions too (default true). */
  consumeDecisions?: boolean;
  /** Backpressure: a batch waits for the running transaction once this many records are queued for the next one (default 20 000). */
  maxPendingRecords?: number;
  /** Partition batches kafkajs hands over at once; they share one transaction (default 64). */
  maxConcurrentPartitions?: number;
  /** Create missing topics at start (default true). */
  ensureTopics?: boolean;
};

export type ProjectorStats = {
  sessions: number;
  published: number;
  batches: number;
  deadLettered: number;
  recoveries: number;
  restoredRecords: number;
};

export type TransactionTiming = {
  transactions: number;
  /** Partition batches those transactions covered. */
  batches: number;
  beginMs: number;
  sendMs: number;
  offsetsMs: number;
  commitMs: number;
  maxMs: number;
  /** Broker requests of the transactional producer: count and total round-trip ms per API. */
  requests: Record<string, { n: number; ms: number }>;
};

export type Projector = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once restored from the changelog and consuming. */
  isReady(): boolean;
  stats(): ProjectorStats;
  /** Cumulative time spent in each step of the output transactions (ms), for benchmarks and diagnosis. */
  timing(): TransactionTiming;
  /** A tenant's active freezes as this instance's fold holds them (for ingest's GET /v1/freezes in `--role all`). */
  activeFreezes(tenantId: string): ActiveFreeze[];
};

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

  let world: World = initialWorld();
  let producer: Producer | undefined;
  let dlq: Producer | undefined;
  let consumer: Consumer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let ready = false;
  let broken = false;
  let recovering: Promise<void> | undefined;
  const stats: ProjectorStats = { sessions: 0, published: 0, batches: 0, deadLettered: 0, recoveries: 0, restoredRecords: 0 };
  const timing: TransactionTiming = { transactions: 0, batches: 0, beginMs: 0, sendMs: 0, offsetsMs: 0, commitMs: 0, maxMs: 0, requests: {} };

  const restore = async (): Promise<World> => {
    const admin = kafka.admin();
    await admin.connect();
    let targets: Map<number, bigint>;
    try {
      targets = await endOffsets(admin, changelogTopic);
    } finally {
      await admin.disconnect();
    }
    const records: ChangelogRecord[] = [];
    if (targets.size > 0) {
      // A throwaway group that never commits: the changelog is always read whole.
      const reader = kafka.consumer({ groupId: `${groupId}-restore-${randomUUID()}`, maxWaitTimeInMs: 200 });
      await reader.connect();
      const caught = trackCatchUp(reader, changelogTopic, targets);
      try {
        await reader.subscribe({ topic: changelogTopic, fromBeginning: true });
        await reader.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              if (m.value === null) continue;
              const r = decodeRecord(m.value);
              if (r.ok) records.push(r.value);
              else logger.error({ partition: batch.partition, offset: m.offset, reason: r.error }, 'skipping unreadable changelog record');
            }
          },
        });
        await caught.done;
      } finally {
        caught.dispose();
        await reader.disconnect();
      }
    }
    stats.restoredRecords = records.length;
    return restoreWorld(snapshotFromRecords(records));
  };

  const stateMessage = (s: SessionTrust): Message => ({
    key: sessionKey(s.tenant_id, s.session_id),
    value: codec.encodeTrust(s),
    headers: { 'trustfold-tenant': s.tenant_id, 'trustfold-session': s.session_id, 'trustfold-version': String(s.version) },
  });

  // ---- group commit
  //
  // Batches (from every partition, handled concurrently by kafkajs) and timer
  // ticks fold synchronously into `world` and append their output and their
  // next offsets to `pending`. One transaction at a time commits everything
  // pending; while it runs, the next group accumulates. A group is sealed
  // synchronously — its messages, the changelog records of what it touched and
  // its offsets are taken at that instant — so it holds exactly the world that
  // the offsets it commits imply.
  type Group = { changed: SessionTrust[]; touched: Set<string>; offsets: Map<string, { topic: string; partition: number; offset: string }> };
  const emptyGroup = (): Group => ({ changed: [], touched: new Set(), offsets: new Map() });
  let pending: Group = emptyGroup();
  let inFlight: Promise<void> | undefined;
  let pumpScheduled = false;
  let drained: (() => void)[] = [];
  const isEmpty = (g: Group): boolean => g.touched.size === 0 && g.offsets.size === 0;

  const collect = (t: Transition): void => {
    world = t.world;
    for (const s of t.changed) pending.changed.push(s);
    for (const k of t.touched) pending.touched.add(k);
  };

  /** Invalidates the in-memory world (it may be ahead of or apart from what committed) and rebuilds it from the changelog. */
  const invalidate = (reason: string, e?: unknown): void => {
    if (broken) return;
    broken = true;
    logger.error({ err: e === undefined ? undefined : errorMessage(e), reason }, 'projector state invalidated; recovering from the changelog');
    scheduleRecovery();
  };

  const sealed = (g: Group): { topicMessages: { topic: string; messages: Message[] }[]; offsets: { topic: string; partitions: { partition: number; offset: string }[] }[] } => {
    const topicMessages: { topic: string; messages: Message[] }[] = [];
    if (g.changed.length > 0) topicMessages.push({ topic: config.topics.sessionTrust, messages: g.changed.map(stateMessage) });
    const changelog: Message[] = [];
    for (const key of g.touched) {
      const r = recordOf(world, key);
      if (r !== undefined) changelog.push({ key, value: encodeRecord(r) });
    }
    if (changelog.length > 0) topicMessages.push({ topic: changelogTopic, messages: changelog });
    const byTopic = new Map<string, { partition: number; offset: string }[]>();
    for (const o of g.offsets.values()) {
      const list = byTopic.get(o.topic) ?? [];
      list.push({ partition: o.partition, offset: o.offset });
      byTopic.set(o.topic, list);
    }
    return { topicMessages, offsets: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) };
  };

  const isConcurrentTransactions = (e: unknown): boolean => {
    for (let c: unknown = e; typeof c === 'object' && c !== null; c = (c as { cause?: unknown }).cause) {
      if ((c as { type?: unknown }).type === 'CONCURRENT_TRANSACTIONS') return true;
    }
    return false;
  };

  /**
   * AddOffsetsToTxn is not retried by kafkajs; right after a commit the
   * coordinator answers CONCURRENT_TRANSACTIONS until the markers are written
   * (milliseconds), so retry that one error briefly.
   */
  const sendOffsets = async (txn: Transaction, topics: { topic: string; partitions: { partition: number; offset: string }[] }[]): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await txn.sendOffsets({ consumerGroupId: groupId, topics });
        return;
      } catch (e) {
        if (!isConcurrentTransactions(e) || attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, Math.min(50, 2 + attempt * 2)));
      }
    }
  };

  const transact = async (g: Group): Promise<void> => {
    if (producer === undefined) throw new Error('projector not started');
    const { topicMessages, offsets } = sealed(g);
    if (topicMessages.length === 0 && offsets.length === 0) return;
    const t0 = performance.now();
    const txn = await producer.transaction();
    const t1 = performance.now();
    try {
      if (topicMessages.length > 0) await txn.sendBatch({ topicMessages, acks: -1 });
      const t2 = performance.now();
      if (offsets.length > 0) await sendOffsets(txn, offsets);
      const t3 = performance.now();
      await txn.commit();
      const t4 = performance.now();
      timing.transactions++;
      timing.beginMs += t1 - t0;
      timing.sendMs += t2 - t1;
      timing.offsetsMs += t3 - t2;
      timing.commitMs += t4 - t3;
      timing.maxMs = Math.max(timing.maxMs, t4 - t0);
      timing.batches += g.offsets.size;
    } catch (e) {
      await txn.abort().catch(() => undefined);
      throw e;
    }
    stats.published += g.changed.length;
    stats.sessions = world.sessions.size;
  };

  /** Starts the next transaction if none is running and something is pending. */
  const pump = (): void => {
    pumpScheduled = false;
    if (inFlight !== undefined) return;
    if (broken || isEmpty(pending)) {
      const waiting = drained;
      drained = [];
      for (const w of waiting) w();
      return;
    }
    const g = pending;
    pending = emptyGroup();
    const run = transact(g);
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
      if (broken || (inFlight === undefined && isEmpty(pending))) return resolve();
      drained.push(resolve);
      schedulePump();
    });

  const onBatch = async ({ batch }: EachBatchPayload): Promise<void> => {
    if (broken) throw new Error('projector is recovering');
    // Backpressure: at most one group commits while the next accumulates.
    while (inFlight !== undefined && pending.changed.length + pending.touched.size >= maxPendingRecords) {
      await inFlight;
      if (broken) throw new Error('projector is recovering');
    }
    const valid: TrustfoldEvent[] = [];
    for (const m of batch.messages) {
      const decoded = m.value === null ? undefined : codec.decodeEvent(m.value);
      if (decoded !== undefined && decoded.ok) {
        valid.push(decoded.value);
        continue;
      }
      const reason = decoded === undefined ? 'empty_value' : decoded.error.code;
      const message = decoded === undefined ? 'message has no value' : decoded.error.message;
      logger.warn({ topic: batch.topic, partition: batch.partition, offset: m.offset, reason }, 'dead-lettering poison message');
      if (dlq !== undefined) {
        await sendToDeadLetter(
          dlq,
          config.topics.deadLetter,
          { topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value, reason, message, consumer: groupId },
          new Date(now()),
        );
      }
      stats.deadLettered++;
    }
    if (broken) throw new Error('projector is recovering');
    // From here to the end: synchronous, so no group is sealed halfway through a batch.
    collect(tick(world, now(), fold));
    for (const e of valid) collect(evolve(world, e, fold));
    const last = batch.messages.at(-1);
    if (last !== undefined) {
      pending.offsets.set(`${batch.topic}\u0000${batch.partition}`, { topic: batch.topic, partition: batch.partition, offset: String(BigInt(last.offset) + 1n) });
    }
    stats.batches++;
    schedulePump();
  };

  const onTick = (): void => {
    if (!ready || broken) return;
    collect(tick(world, now(), fold));
    if (!isEmpty(pending)) schedulePump();
  };

  const teardown = async (): Promise<void> => {
    ready = false;
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    const c = consumer;
    consumer = undefined;
    await c?.disconnect().catch(() => undefined);
    // No more batches: commit what is queued (a healthy stop), or let a running
    // transaction settle before the changelog is read back (a recovery).
    if (!broken) await flush();
    while (inFlight !== undefined) await inFlight;
    pending = emptyGroup();
    const p = producer;
    const d = dlq;
    producer = undefined;
    dlq = undefined;
    await p?.disconnect().catch(() => undefined);
    await d?.disconnect().catch(() => undefined);
  };

  const bringUp = async (): Promise<void> => {
    world = await restore();
    pending = emptyGroup();
    broken = false;
    producer = kafka.producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 30_000,
      // A transaction that starts right after a commit gets CONCURRENT_TRANSACTIONS
      // until the commit markers are written (ms); the cluster's 100 ms first
      // back-off would add that much to every propagation (kafkajs#304).
      retry: { initialRetryTime: 5, maxRetryTime: 2_000, retries: Number.MAX_SAFE_INTEGER },
    });
    producer.on(producer.events.REQUEST, (e) => {
      const r = (timing.requests[e.payload.apiName] ??= { n: 0, ms: 0 });
      r.n++;
      r.ms += e.payload.duration;
    });
    await producer.connect();
    dlq = kafka.producer({ idempotent: true });
    await dlq.connect();
    // Causes that expired while we were down are released before new input.
    collect(tick(world, now(), fold));
    await flush();
    if (broken) throw new Error('initial expiry transaction failed');
    const sessionTimeout = deps.sessionTimeoutMs ?? 10_000;
    const c = kafka.consumer({
      groupId,
      maxWaitTimeInMs: 250,
      readUncommitted: false,
      sessionTimeout,
      rebalanceTimeout: Math.max(sessionTimeout, 10_000),
      heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 5)),
    });
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
    ready = true;
  };

  const scheduleRecovery = (): void => {
    if (recovering !== undefined || !running) return;
    stats.recoveries++;
    recovering = (async () => {
      // Let the failing eachBatch return before the consumer is disconnected.
      await new Promise((r) => setImmediate(r));
      for (let attempt = 0; running; attempt++) {
        try {
          await teardown();
          await bringUp();
          logger.info({ attempt }, 'projector recovered');
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

  return {
    async start() {
      if (running) return;
      running = true;
      if (deps.ensureTopics !== false) {
        const admin = kafka.admin();
        await admin.connect();
        try {
          const sessionTrust = topicLayout({ topics: config.topics, kafka: config.kafka }).find((t) => t.topic === config.topics.sessionTrust);
          await ensureTopics(admin, [
            ...topicLayout({ topics: config.topics, kafka: config.kafka }),
            { ...sessionTrust, topic: changelogTopic, numPartitions: config.kafka.partitions, replicationFactor: config.kafka.replication },
          ]);
        } finally {
          await admin.disconnect();
        }
      }
      try {
        await bringUp();
      } catch (e) {
        running = false;
        await teardown();
        throw e;
      }
      logger.info({ groupId, transactionalId, restored: stats.restoredRecords, sessions: world.sessions.size }, 'projector started');
    },
    async stop() {
      running = false;
      await recovering;
      await teardown();
    },
    isReady: () => ready && !broken,
    stats: () => ({ ...stats, sessions: world.sessions.size }),
    timing: () => ({ ...timing, requests: Object.fromEntries(Object.entries(timing.requests).map(([k, v]) => [k, { ...v }])) }),
    activeFreezes: (tenantId) =>
      [...world.freezes.values()].filter((f) => f.tenant_id === tenantId && f.status === 'active').map((f) => ({ ...f.freeze, scope: { ...f.freeze.scope } })),
  };
};
