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
import { performance } from 'node:perf_hooks';
import type { Consumer, EachBatchPayload, Kafka, Producer, RecordMetadata } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { ActiveFreeze, SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import type { Config } from '../lib/config.ts';
import { errorMessage, type DeadLetterReason } from '../lib/errors.ts';
import { chunkMessages, ensureTopics, partitionKeyOf, sendToDeadLetter, topicLayout } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { encodeRecord, PUBLISHED_MARKER_KEY, type ChangelogRecord } from './changelog.ts';
import { DEFAULT_FOLD_CONFIG, evolve, initialWorld, tick, viewOf, type FoldConfig, type Transition, type World } from './evolve.ts';
import { emptyGroup, isEmptyGroup, offsetsByTopic, seal, type Group, type OutMessage } from './group.ts';
import { inputKey, restoreState, unreadInput, type RestoreDeps } from './restore.ts';
import { runTransaction } from './transaction.ts';
import { DEFAULT_DELIVERY, type Delivery } from './config.ts';
import { reconcile, settle, type Ahead, type TrustBytes } from './reconcile.ts';

export type { Delivery } from './config.ts';

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
  /** Default `DEFAULT_DELIVERY`. */
  delivery?: Delivery;
  /**
   * Readiness: the projector reports not ready while a state it folded has
   * waited longer than this to reach the session-trust topic (default 30 s).
   */
  maxPublishLagMs?: number;
};

export type ProjectorStats = {
  sessions: number;
  published: number;
  batches: number;
  deadLettered: number;
  recoveries: number;
  restoredRecords: number;
  /** Idempotent mode, after a restore: replayed versions found already published with the same content (not sent again). */
  republishSkipped: number;
  /** Idempotent mode, after a restore: sessions whose replay diverged from what was published and moved past it. */
  rebased: number;
  /** Idempotent mode, after a restore: input records below the recorded marker, skipped (already folded). */
  replaySkipped: number;
  /** Input records whose Kafka key disagreed with their event's tenant / subject (dead-lettered, not folded). */
  keyMismatches: number;
  /** Trust states the fold produced that the session-trust topic has not acknowledged yet (0 at rest). */
  unpublished: number;
  /** Age of the oldest of those, ms (0 when there is none). */
  publishLagMs: number;
};

/** In idempotent mode: `transactions` counts groups; beginMs and commitMs are 0, sendMs is step (1) (states), offsetsMs the recording transaction, steps (2)+(3) (changelog and offsets). */
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
  /** True once restored from the changelog and consuming, and no folded state waits longer than `maxPublishLagMs` to be published. */
  isReady(): boolean;
  /** `true`, or why the projector is not ready. */
  readiness(): true | string;
  stats(): ProjectorStats;
  /** Cumulative time spent in each step of the output transactions (ms), for benchmarks and diagnosis. */
  timing(): TransactionTiming;
  /** A tenant's active freezes as this instance's fold holds them (for ingest's GET /v1/freezes in `--role all`). */
  activeFreezes(tenantId: string): ActiveFreeze[];
};

/**
 * Retries of the output producers: never give up (a failure invalidates the
 * world), and start at 5 ms — a transaction that starts right after a commit
 * gets CONCURRENT_TRANSACTIONS until the commit markers are written (ms), and
 * the cluster's 100 ms first back-off would add that much to every
 * propagation (kafkajs#304).
 */
const OUTPUT_RETRY = { initialRetryTime: 5, maxRetryTime: 2_000, retries: Number.MAX_SAFE_INTEGER };

/** A Kafka record timestamp (ms as a string) as an ISO time, or undefined when it is missing or absurd. */
const isoOfRecordTime = (timestamp: string | undefined): string | undefined => {
  const ms = Number(timestamp);
  return timestamp === undefined || !Number.isFinite(ms) || ms <= 0 || ms > 8.64e15 ? undefined : new Date(ms).toISOString();
};

/** Why a record's key is not the one its event implies (`partitionKeyOf`), or undefined when it is. */
const keyMismatch = (key: Buffer | null, event: TrustfoldEvent): string | undefined => {
  const want = partitionKeyOf(event);
  const got = key?.toString();
  return got === want ? undefined : `record key ${got === undefined ? '(none)' : JSON.stringify(got.slice(0, 200))} is not the event's key ${JSON.stringify(want)}`;
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
  const stats: ProjectorStats = {
    sessions: 0,
    published: 0,
    batches: 0,
    deadLettered: 0,
    recoveries: 0,
    restoredRecords: 0,
    republishSkipped: 0,
    rebased: 0,
    replaySkipped: 0,
    keyMismatches: 0,
    unpublished: 0,
    publishLagMs: 0,
  };
  /**
   * "Caught up" must mean "published": states folded but not yet acknowledged
   * by the session-trust topic, and when the oldest of them was folded (the
   * pending group's, else the one being published).
   */
  let unpublished = 0;
  let publishingSince: number | undefined;

  // ---- idempotent mode: what was published but may not be in the changelog
  //
  // `covered`: per session-trust partition, an offset at or before the first
  // published state that the changelog may not cover (persisted as the
  // published marker with each changelog write). `ahead`: after a restore,
  // the sessions whose published versions go past the restored world, with
  // those states' bytes; every replayed version of them is checked against
  // them (see `reconcile`).
  let covered = new Map<number, string>();
  /**
   * Idempotent mode: per input partition (topic\0partition), the next offset
   * the recorded world has not folded (persisted in the marker). Input below
   * it is skipped: the committed group offsets may lag behind the changelog
   * (a commit that failed in a rebalance), and the bounded dedup memory of a
   * session cannot be relied on to recognise a long replay.
   */
  let folded = new Map<string, { topic: string; partition: number; offset: string }>();
  let ahead = new Map<string, Ahead>();
  let aheadAtRestore = 0;
  /** Input partitions (topic\0partition → end offset at restore) to fold before the `ahead` sessions are settled. */
  let replayTargets = new Map<string, bigint>();
  const timing: TransactionTiming = { transactions: 0, batches: 0, beginMs: 0, sendMs: 0, offsetsMs: 0, commitMs: 0, maxMs: 0, requests: {} };

  const trustBytes: TrustBytes = {
    encode: (state) => codec.encodeTrust(state),
    decode: (bytes) => {
      const r = codec.decodeTrust(bytes);
      return r.ok ? r.value : undefined;
    },
  };


  const restoreDeps = (): RestoreDeps => ({ kafka, groupId, logger, codec, untilStopped });

  const restore = async (): Promise<World> => {
    const r = await restoreState(restoreDeps(), { changelogTopic, sessionTrustTopic: config.topics.sessionTrust, readPublished: delivery === 'idempotent' });
    stats.restoredRecords = r.records;
    covered = r.covered;
    folded = r.folded;
    ahead = r.ahead;
    aheadAtRestore = ahead.size;
    return r.world;
  };

  /** Idempotent mode, after a restore: what to publish of a fold step's states (see reconcile.ts), applied to `ahead` and the world. */
  const reconciled = (changed: SessionTrust[]): SessionTrust[] => {
    if (ahead.size === 0) return changed;
    const r = reconcile(ahead, changed, trustBytes);
    for (const [key, v] of r.verified) {
      const a = ahead.get(key);
      if (a !== undefined) a.verified = v;
    }
    for (const key of r.settled) ahead.delete(key);
    for (const [key, p] of r.provenance) {
      const ws = world.sessions.get(key);
      if (ws !== undefined && ws.version === p.version) world.sessions.set(key, { ...ws, caused_by: p.caused_by, updated_at: p.updated_at });
    }
    for (const [key, d] of r.shifts) {
      const ws = world.sessions.get(key);
      if (ws !== undefined) world.sessions.set(key, { ...ws, version: ws.version + d });
    }
    for (const d of r.diverged) logger.warn({ session: d.session, tenant: d.tenant, replayed: d.replayed, published: d.published }, 'replay diverged from published states; moving past them');
    stats.republishSkipped += r.skipped;
    stats.rebased += r.diverged.length;
    return r.publish;
  };

  /** Once the replay folded everything the previous run could have: publish the sessions it left behind what was published. */
  const settleAhead = (): void => {
    if (ahead.size === 0) return;
    const { republish, unknown } = settle(ahead, (key) => world.sessions.get(key)?.version);
    for (const key of unknown) logger.warn({ key }, 'a published session is unknown after the replay');
    for (const [key, version] of republish) {
      const ws = world.sessions.get(key);
      if (ws === undefined) continue;
      const next = { ...ws, version };
      world.sessions.set(key, next);
      addState(viewOf(next));
      pending.touched.add(key);
      stats.rebased++;
    }
    ahead.clear();
    schedulePump();
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
    for (const s of reconciled(t.changed)) addState(s);
    for (const k of t.touched) pending.touched.add(k);
  };

  /** Invalidates the in-memory world (it may be ahead of or apart from what committed) and rebuilds it from the changelog. */
  const invalidate = (reason: string, e?: unknown): void => {
    if (broken) return;
    broken = true;
    logger.error({ err: e === undefined ? undefined : errorMessage(e), reason }, 'projector state invalidated; recovering from the changelog');
    scheduleRecovery();
  };

  const transact = async (g: Group): Promise<void> => {
    if (producer === undefined) throw new Error('projector not started');
    const sealed = seal(world, g, codec.encodeTrust);
    const topicMessages: { topic: string; messages: OutMessage[] }[] = [];
    if (sealed.states.length > 0) topicMessages.push({ topic: config.topics.sessionTrust, messages: sealed.states });
    const changelog = [...sealed.sessions, ...sealed.facts];
    if (changelog.length > 0) topicMessages.push({ topic: changelogTopic, messages: changelog });
    const offsets = offsetsByTopic(sealed.offsets);
    if (topicMessages.length === 0 && offsets.length === 0) return;
    const steps = await runTransaction(producer, groupId, topicMessages, offsets);
    timing.transactions++;
    timing.beginMs += steps.beginMs;
    timing.sendMs += steps.sendMs;
    timing.offsetsMs += steps.offsetsMs;
    timing.commitMs += steps.commitMs;
    timing.maxMs = Math.max(timing.maxMs, steps.beginMs + steps.sendMs + steps.offsetsMs + steps.commitMs);
    timing.batches += g.offsets.size;
    acknowledged(g);
  };

  // ---- idempotent delivery
  //
  // Two stages. (1) publishes a group's states, one group at a time, in order.
  // The recorder does (2)+(3) for the groups whose (1) finished, in order and
  // coalesced: everything published since its last round in one Kafka
  // transaction (the changelog records, the marker and the offsets) — so it keeps
  // up however slow it is, and the next group's (1) never waits for it (up to
  // `maxUnrecorded` groups). It stops at the first group whose (1) failed.
  // Hence the changelog always holds a prefix of the groups, the committed
  // offsets never pass the changelog, and the published marker never passes a
  // state the changelog lacks.
  type Unrecorded = {
    /** Set once (1) settled: its produce results, or undefined if it failed. */
    md?: RecordMetadata[] | undefined;
    done: boolean;
    published: Promise<void>;
    sessions: OutMessage[];
    facts: OutMessage[];
    offsets: Map<string, { topic: string; partition: number; offset: string }>;
    t0: number;
  };
  const maxUnrecorded = 64;
  let unrecorded: Unrecorded[] = [];
  let recorder: Promise<void> | undefined;

  const publish = async (states: OutMessage[]): Promise<RecordMetadata[]> => {
    if (producer === undefined) throw new Error('projector not started');
    if (states.length === 0) return [];
    const md: RecordMetadata[] = [];
    for (const chunk of chunkMessages(states)) md.push(...(await producer.send({ topic: config.topics.sessionTrust, messages: chunk, acks: -1 })));
    return md;
  };

  const record = async (batch: Unrecorded[]): Promise<void> => {
    if (logProducer === undefined) throw new Error('projector not started');
    const t0 = performance.now();
    const marker = new Map(covered);
    let moved = false;
    for (const u of batch) {
      for (const m of u.md ?? []) {
        const base = m.baseOffset ?? m.offset;
        if (base === undefined) throw new Error('state produce returned no offset');
        // The first offset of the newest recorded group's states on that partition.
        if (!marker.has(m.partition) || BigInt(base) > BigInt(marker.get(m.partition) ?? '0')) marker.set(m.partition, base);
        moved = true;
      }
    }
    const offsets = new Map<string, { topic: string; partition: number; offset: string }>();
    for (const u of batch) for (const [k, o] of u.offsets) offsets.set(k, o);
    const consumed = new Map(folded);
    for (const [k, o] of offsets) {
      const before = consumed.get(k);
      if (before === undefined || BigInt(o.offset) > BigInt(before.offset)) consumed.set(k, o);
      moved = true;
    }
    // (2)+(3) as one Kafka transaction: the session records, the records of
    // the facts that fan out (users, freezes), the published marker and the
    // consumed offsets are recorded together or not at all. A kill anywhere
    // in between leaves the changelog and the committed offsets exactly at
    // the previous round (the transaction is aborted by the next instance's
    // initTransactions), so a restore never sees half a round — a fact
    // recorded without a session it reached, or the other way round.
    const messages = batch.flatMap((u) => u.sessions);
    for (const u of batch) messages.push(...u.facts);
    if (moved) {
      const markerRecord: ChangelogRecord = {
        kind: 'published',
        value: { partitions: [...marker].map(([partition, offset]) => ({ partition, offset })), consumed: [...consumed.values()] },
      };
      messages.push({ key: PUBLISHED_MARKER_KEY, value: encodeRecord(markerRecord) });
    }
    logger.debug({ groups: batch.length }, 'recording a round');
    await runTransaction(logProducer, groupId, [{ topic: changelogTopic, messages }], offsetsByTopic(offsets.values()));
    covered = marker;
    folded = consumed;
    const t1 = performance.now();
    logger.debug({ groups: batch.length, records: messages.length, offsets: [...offsets.values()], ms: Math.round(t1 - t0) }, 'recorded a round');
    timing.offsetsMs += t1 - t0;
    for (const u of batch) timing.maxMs = Math.max(timing.maxMs, t1 - u.t0);
  };

  const runRecorder = (): void => {
    if (recorder !== undefined) return;
    recorder = (async () => {
      while (unrecorded.length > 0) {
        const head = unrecorded[0];
        if (head === undefined) break;
        await head.published;
        let n = 0;
        while (n < unrecorded.length && unrecorded[n]?.done === true) n++;
        const batch = unrecorded.slice(0, n);
        if (batch.some((u) => u.md === undefined)) {
          // A group failed to publish (the world is invalidated): record none from there on.
          const ok = batch.slice(0, batch.findIndex((u) => u.md === undefined));
          unrecorded = [];
          if (ok.length > 0) await record(ok).catch((e: unknown) => invalidate('recording groups failed', e));
          return;
        }
        try {
          await record(batch);
        } catch (e) {
          unrecorded = [];
          invalidate('recording groups failed', e);
          return;
        }
        unrecorded = unrecorded.slice(n);
      }
    })().finally(() => {
      recorder = undefined;
      if (unrecorded.length > 0) runRecorder();
      else if (inFlight === undefined) pump();
    });
  };

  const startIdempotent = (g: Group): void => {
    // Sealed now, synchronously: the states, the changelog records of the world at this instant, the offsets.
    const { states, sessions, facts } = seal(world, g, codec.encodeTrust);
    const t0 = performance.now();
    const u: Unrecorded = { done: false, published: Promise.resolve(), sessions, facts, offsets: g.offsets, t0 };
    u.published = publish(states).then(
      (md) => {
        u.md = md;
        u.done = true;
        timing.sendMs += performance.now() - t0;
        timing.transactions++;
        timing.batches += g.offsets.size;
        logger.debug({ states: g.changed.length, ms: Math.round(performance.now() - t0) }, 'published a group');
        acknowledged(g);
      },
      (e: unknown) => {
        u.done = true;
        invalidate('publishing states failed', e);
      },
    );
    unrecorded.push(u);
    runRecorder();
    inFlight = u.published.then(() => {
      inFlight = undefined;
      pump();
    });
  };

  /** Starts the next transaction (or, idempotent, the next group) if none is running and something is pending. */
  const pump = (): void => {
    pumpScheduled = false;
    if (inFlight !== undefined) return;
    if (broken || isEmptyGroup(pending)) {
      if (unrecorded.length > 0) return; // groups still record; the recorder pumps again when done
      const waiting = drained;
      drained = [];
      for (const w of waiting) w();
      return;
    }
    if (delivery === 'idempotent') {
      if (unrecorded.length >= maxUnrecorded) return; // the recorder pumps again when done
      const g = pending;
      pending = emptyGroup();
      publishingSince = g.firstAt;
      startIdempotent(g);
      return;
    }
    const g = pending;
    pending = emptyGroup();
    publishingSince = g.firstAt;
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
      if (unrecorded.length === 0 && (broken || (inFlight === undefined && isEmptyGroup(pending)))) return resolve();
      drained.push(resolve);
      schedulePump();
    });

  const onBatch = async ({ batch }: EachBatchPayload): Promise<void> => {
    if (broken) throw new Error('projector is recovering');
    // Backpressure: at most one group commits (idempotent: publishes, and a bounded backlog records) while the next accumulates.
    while ((inFlight !== undefined || unrecorded.length >= maxUnrecorded) && pending.changed.length + pending.touched.size >= maxPendingRecords) {
      await (inFlight ?? recorder);
      if (broken) throw new Error('projector is recovering');
    }
    /** Each decoded event with its record's broker time (log-append time on the input topics). */
    const valid: { event: TrustfoldEvent; appendedAt: string | undefined }[] = [];
    const key = inputKey(batch.topic, batch.partition);
    const floor = folded.get(key);
    const skipBelow = floor === undefined ? -1n : BigInt(floor.offset);
    for (const m of batch.messages) {
      // Already in the restored world (and dead-lettered, if it was poison).
      if (BigInt(m.offset) < skipBelow) {
        stats.replaySkipped++;
        continue;
      }
      const decoded = m.value === null ? undefined : codec.decodeEvent(m.value);
      // The record's key must be the one its payload implies: a record keyed
      // as another tenant's or session's lands on that partition and (with
      // several instances) on another owner; it is not folded.
      const keyRefusal = decoded === undefined || !decoded.ok ? undefined : keyMismatch(m.key, decoded.value);
      if (decoded !== undefined && decoded.ok && keyRefusal === undefined) {
        valid.push({ event: decoded.value, appendedAt: isoOfRecordTime(m.timestamp) });
        continue;
      }
      if (keyRefusal !== undefined) stats.keyMismatches++;
      const [reason, message]: [DeadLetterReason, string] =
        decoded === undefined ? ['empty_value', 'message has no value'] : !decoded.ok ? [decoded.error.code, decoded.error.message] : ['key_mismatch', keyRefusal ?? ''];
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
      while (recorder !== undefined) await recorder;
    }
    consumer = undefined;
    await c?.disconnect().catch(() => undefined);
    // No more batches: commit what is queued (a healthy stop), or let a running
    // transaction settle before the changelog is read back (a recovery).
    if (!broken) await flush();
    while (inFlight !== undefined) await inFlight;
    while (recorder !== undefined) await recorder;
    pending = emptyGroup();
    unrecorded = [];
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
    producer =
      delivery === 'transactional'
        ? kafka.producer({
            transactionalId,
            idempotent: true,
            maxInFlightRequests: 1,
            transactionTimeout: 30_000,
            retry: OUTPUT_RETRY,
          })
        : kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: OUTPUT_RETRY });
    producer.on(producer.events.REQUEST, (e) => {
      const r = (timing.requests[e.payload.apiName] ??= { n: 0, ms: 0 });
      r.n++;
      r.ms += e.payload.duration;
    });
    await producer.connect();
    if (delivery === 'idempotent') {
      // Steps (2)+(3) are one transaction (see `record`); the states of step (1) stay outside it.
      logProducer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30_000, retry: OUTPUT_RETRY });
      await logProducer.connect();
    }
    const owner = delivery === 'transactional' ? producer : logProducer;
    if (owner !== undefined) await (await owner.transaction()).abort();
    world = await restore();
    pending = emptyGroup();
    unpublished = 0;
    publishingSince = undefined;
    broken = false;
    if (delivery === 'idempotent') replayTargets = ahead.size > 0 ? await unreadInput(restoreDeps(), inputTopics, folded) : new Map();
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
    consumedAt: [...folded.values()].map((o) => `${o.topic}/${o.partition}@${o.offset}`),
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
    timing: () => ({ ...timing, requests: Object.fromEntries(Object.entries(timing.requests).map(([k, v]) => [k, { ...v }])) }),
    activeFreezes: (tenantId) =>
      [...world.freezes.values()].filter((f) => f.tenant_id === tenantId && f.status === 'active').map((f) => ({ ...f.freeze, scope: { ...f.freeze.scope } })),
  };
};
