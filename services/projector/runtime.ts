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
import type { Consumer, EachBatchPayload, Kafka, Message, Producer } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { ActiveFreeze, SessionTrust } from '../../schemas/events.ts';
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

export type Projector = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once restored from the changelog and consuming. */
  isReady(): boolean;
  stats(): ProjectorStats;
  /** A tenant's active freezes as this instance's fold holds them (for ingest's GET /v1/freezes in `--role all`). */
  activeFreezes(tenantId: string): ActiveFreeze[];
};

export const changelogTopicOf = (sessionTrustTopic: string, groupId: string): string => `${sessionTrustTopic}.changelog.${groupId}`;

/** Runs async steps one at a time (batches and timer ticks share the world). */
const createSerial = () => {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
};

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
  const serial = createSerial();

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

  const changelogMessages = (keys: Iterable<string>): Message[] => {
    const out: Message[] = [];
    for (const key of keys) {
      const r = recordOf(world, key);
      if (r !== undefined) out.push({ key, value: encodeRecord(r) });
    }
    return out;
  };

  type Output = { changed: SessionTrust[]; touched: Set<string> };
  const collect = (out: Output, t: Transition): void => {
    world = t.world;
    out.changed.push(...t.changed);
    for (const k of t.touched) out.touched.add(k);
  };

  /** Publishes output (+ offsets) in one transaction. */
  const commit = async (out: Output, offsets?: { topic: string; partition: number; offset: string }): Promise<void> => {
    if (producer === undefined) throw new Error('projector not started');
    if (out.touched.size === 0 && offsets === undefined) return;
    const txn = await producer.transaction();
    try {
      const topicMessages = [];
      if (out.changed.length > 0) topicMessages.push({ topic: config.topics.sessionTrust, messages: out.changed.map(stateMessage) });
      if (out.touched.size > 0) topicMessages.push({ topic: changelogTopic, messages: changelogMessages(out.touched) });
      if (topicMessages.length > 0) await txn.sendBatch({ topicMessages, acks: -1 });
      if (offsets !== undefined) {
        await txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: offsets.topic, partitions: [{ partition: offsets.partition, offset: offsets.offset }] }] });
      }
      await txn.commit();
    } catch (e) {
      await txn.abort().catch(() => undefined);
      throw e;
    }
    stats.published += out.changed.length;
    stats.sessions = world.sessions.size;
  };

  const onBatch = async ({ batch }: EachBatchPayload): Promise<void> => {
    if (broken) throw new Error('projector is recovering');
    await serial(async () => {
      const out: Output = { changed: [], touched: new Set() };
      collect(out, tick(world, now(), fold));
      for (const m of batch.messages) {
        const decoded = m.value === null ? undefined : codec.decodeEvent(m.value);
        if (decoded === undefined || !decoded.ok) {
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
          continue;
        }
        collect(out, evolve(world, decoded.value, fold));
      }
      const last = batch.messages.at(-1);
      const offset = last === undefined ? undefined : { topic: batch.topic, partition: batch.partition, offset: String(BigInt(last.offset) + 1n) };
      try {
        await commit(out, offset);
      } catch (e) {
        // The in-memory world is now ahead of what committed: rebuild it from the changelog.
        broken = true;
        logger.error({ err: errorMessage(e) }, 'transaction failed; recovering from the changelog');
        scheduleRecovery();
        throw e;
      }
      stats.batches++;
    });
  };

  const onTick = (): void => {
    if (!ready || broken) return;
    serial(async () => {
      const out: Output = { changed: [], touched: new Set() };
      collect(out, tick(world, now(), fold));
      if (out.touched.size > 0) await commit(out);
    }).catch((e: unknown) => {
      broken = true;
      logger.error({ err: errorMessage(e) }, 'expiry tick failed; recovering from the changelog');
      scheduleRecovery();
    });
  };

  const teardown = async (): Promise<void> => {
    ready = false;
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    const c = consumer;
    const p = producer;
    const d = dlq;
    consumer = undefined;
    producer = undefined;
    dlq = undefined;
    await c?.disconnect().catch(() => undefined);
    await p?.disconnect().catch(() => undefined);
    await d?.disconnect().catch(() => undefined);
  };

  const bringUp = async (): Promise<void> => {
    world = await restore();
    broken = false;
    producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30_000 });
    await producer.connect();
    dlq = kafka.producer({ idempotent: true });
    await dlq.connect();
    // Causes that expired while we were down are released before new input.
    await serial(async () => {
      const out: Output = { changed: [], touched: new Set() };
      collect(out, tick(world, now(), fold));
      await commit(out);
    });
    const sessionTimeout = deps.sessionTimeoutMs ?? 10_000;
    consumer = kafka.consumer({
      groupId,
      maxWaitTimeInMs: 250,
      readUncommitted: false,
      sessionTimeout,
      rebalanceTimeout: Math.max(sessionTimeout, 10_000),
      heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 5)),
    });
    await consumer.connect();
    await consumer.subscribe({ topics: inputTopics, fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatch: onBatch });
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
      await serial(async () => undefined);
      await teardown();
    },
    isReady: () => ready && !broken,
    stats: () => ({ ...stats, sessions: world.sessions.size }),
    activeFreezes: (tenantId) =>
      [...world.freezes.values()].filter((f) => f.tenant_id === tenantId && f.status === 'active').map((f) => ({ ...f.freeze, scope: { ...f.freeze.scope } })),
  };
};
