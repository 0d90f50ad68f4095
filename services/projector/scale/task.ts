// Scale-out: one input partition's task — Kafka Streams' stream task. Task p
// owns the sessions keyed to partition p: it folds partition p of decisions
// and signals (the group's assignment) and every global event (global.ts)
// into a world of its own (those sessions + its copy of the global facts),
// and commits, per group of folded batches, one Kafka transaction with its
// own transactional id `<group>-<p>`: the changed states (session-trust
// partition p), the changelog records (changelog partition p, with a marker
// holding how far it folded its input and the global kinds) and the consumed
// offsets of partition p. A new owner's initTransactions with that id aborts
// the old owner's open transaction and fails its later ones: a moved
// partition's old owner cannot publish after the new owner started.
import type { Batch, Kafka, Producer } from 'kafkajs';
import type { Codec } from '../../../schemas/codec.ts';
import type { Logger } from '../../lib/log.ts';
import type { ProjectorStats } from '../api.ts';
import { encodeRecord, PUBLISHED_MARKER_KEY, publishedMarkerOf, snapshotFromRecords, type ChangelogRecord } from '../changelog.ts';
import { statesProducer } from '../clients.ts';
import { evolve, restoreWorld, tick, type FoldConfig, type Transition, type World } from '../evolve.ts';
import { emptyGroup, isEmptyGroup, offsetsByTopic, seal, type Group, type OutMessage } from '../group.ts';
import { admitBatch, type AdmitDeps } from '../input.ts';
import { inputKey, type InputOffset } from '../restore.ts';
import { hasErrorType, runTransaction } from '../transaction.ts';
import { isGlobalEvent, type GlobalEntry, type GlobalReader } from './global.ts';

export type TaskDeps = {
  kafka: Kafka;
  partition: number;
  groupId: string;
  changelogTopic: string;
  sessionTrustTopic: string;
  fold: FoldConfig;
  now: () => number;
  codec: Codec;
  logger: Logger;
  admit: AdmitDeps;
  global: GlobalReader;
  /** Counters shared by the instance's tasks. */
  stats: ProjectorStats;
  maxPendingRecords: number;
  /** The task cannot go on: `fenced` when another instance took its transactional id over. */
  onFailure: (fenced: boolean, e: unknown) => void;
};

export type Task = {
  readonly partition: number;
  readonly transactionalId: string;
  /** Fences the previous owner: its open transaction is aborted, its next one fails. `connected`: a producer of this transactional id already connected (not initialised). */
  init(connected?: Producer): Promise<void>;
  /** Rebuilds the world from this partition's changelog records and replays the global kinds past them; returns where to seek the input. */
  open(records: readonly ChangelogRecord[]): InputOffset[];
  isReady(): boolean;
  /** Folds a batch of partition p; false when the task is not (or no longer) folding — the caller pauses the partition. */
  onBatch(batch: Batch, heartbeat?: () => Promise<void>): Promise<boolean>;
  onGlobal(e: GlobalEntry): void;
  onTick(): void;
  sessions(): number;
  /** States folded but not committed yet, and since when the oldest of them waits (wall ms). */
  unpublished(): { count: number; since: number | undefined };
  /** Resolves once everything folded so far committed (or the task failed). */
  flush(): Promise<void>;
  /** Stops folding, lets a running transaction settle, drops what is pending, disconnects. */
  close(): Promise<void>;
};

/** Errors that mean another producer owns the transactional id now. */
export const isFenced = (e: unknown): boolean => hasErrorType(e, 'PRODUCER_FENCED') || hasErrorType(e, 'INVALID_PRODUCER_EPOCH') || hasErrorType(e, 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED');

export const createTask = (deps: TaskDeps): Task => {
  const { partition: p, fold, now, codec, stats } = deps;
  const transactionalId = `${deps.groupId}-${p}`;
  const logger = deps.logger.child({ partition: p });
  let producer: Producer | undefined;
  let world: World | undefined;
  let ready = false;
  let failed = false;
  let closed = false;
  /** Next input offset to fold, per input topic-partition (`inputKey`): anything below was folded (a re-read after a rejoin is skipped). */
  const next = new Map<string, bigint>();
  /** Next offset of the global kinds folded, per signals partition. */
  const globalNext = new Map<number, bigint>();
  /** What the last committed marker holds. */
  let recorded = { consumed: new Map<string, InputOffset>(), global: new Map<number, string>() };
  let pending: Group = emptyGroup();
  let pendingGlobal = new Map<number, string>();
  let inFlight: Promise<void> | undefined;
  /** The running transaction's states and when its oldest was folded. */
  let inFlightStates = 0;
  let inFlightSince: number | undefined;
  let pendingSince: number | undefined;
  let pumpScheduled = false;
  let drained: (() => void)[] = [];

  const collect = (t: Transition): void => {
    world = t.world;
    if (t.changed.length > 0 && pendingSince === undefined) pendingSince = now();
    for (const s of t.changed) pending.changed.push(s);
    for (const k of t.touched) pending.touched.add(k);
  };

  const fail = (e: unknown): void => {
    if (failed || closed) return;
    failed = true;
    ready = false;
    const fenced = isFenced(e);
    logger.error({ err: e instanceof Error ? e.message : String(e), fenced }, fenced ? 'projector task fenced: another instance owns this partition' : 'projector task failed');
    deps.onFailure(fenced, e);
  };

  const settleDrained = (): void => {
    const waiting = drained;
    drained = [];
    for (const w of waiting) w();
  };

  const pump = (): void => {
    pumpScheduled = false;
    if (inFlight !== undefined) return;
    if (failed || closed || world === undefined || producer === undefined || (isEmptyGroup(pending) && pendingGlobal.size === 0)) return settleDrained();
    const g = pending;
    const gGlobal = pendingGlobal;
    pending = emptyGroup();
    pendingGlobal = new Map();
    inFlightStates = g.changed.length;
    inFlightSince = pendingSince;
    pendingSince = undefined;
    // Sealed now, synchronously: the states, the changelog records of the world at this instant, the marker, the offsets.
    const sealed = seal(world, g, codec.encodeTrust);
    const consumed = new Map(recorded.consumed);
    for (const [k, o] of g.offsets) consumed.set(k, o);
    const global = new Map(recorded.global);
    for (const [q, o] of gGlobal) global.set(q, o);
    const marker: ChangelogRecord = {
      kind: 'published',
      value: { partitions: [], consumed: [...consumed.values()], global: [...global].map(([partition, offset]) => ({ partition, offset })) },
    };
    const here = (m: OutMessage): OutMessage => ({ ...m, partition: p });
    const topicMessages: { topic: string; messages: OutMessage[] }[] = [];
    if (sealed.states.length > 0) topicMessages.push({ topic: deps.sessionTrustTopic, messages: sealed.states.map(here) });
    topicMessages.push({ topic: deps.changelogTopic, messages: [...sealed.sessions, ...sealed.facts, { key: PUBLISHED_MARKER_KEY, value: encodeRecord(marker) }].map(here) });
    const prod = producer;
    inFlight = runTransaction(prod, deps.groupId, topicMessages, offsetsByTopic(sealed.offsets)).then(
      () => {
        recorded = { consumed, global };
        stats.published += g.changed.length;
        inFlight = undefined;
        inFlightStates = 0;
        inFlightSince = undefined;
        pump();
      },
      (e: unknown) => {
        inFlight = undefined;
        fail(e);
        settleDrained();
      },
    );
  };

  const schedulePump = (): void => {
    if (pumpScheduled || inFlight !== undefined) return;
    pumpScheduled = true;
    setImmediate(pump);
  };

  const foldGlobal = (e: GlobalEntry): void => {
    if (world === undefined || e.offset < (globalNext.get(e.partition) ?? 0n)) return;
    collect(evolve(world, e.event, fold, e.appendedAt));
    globalNext.set(e.partition, e.offset + 1n);
    pendingGlobal.set(e.partition, String(e.offset + 1n));
  };

  return {
    partition: p,
    transactionalId,
    async init(connected) {
      producer = connected ?? statesProducer(deps.kafka, 'transactional', transactionalId);
      const prod = producer;
      if (connected === undefined) await prod.connect();
      // Revoked while connecting: do not fence the partition's new owner.
      if (closed) {
        await prod.disconnect().catch(() => undefined);
        throw new Error(`partition ${p} revoked while opening`);
      }
      // initTransactions (kafkajs does it at the first transaction): bumps the epoch, aborts the old owner's open transaction.
      await (await prod.transaction()).abort();
    },
    open(records) {
      const w = restoreWorld(snapshotFromRecords(records));
      world = w;
      const marker = publishedMarkerOf(records);
      recorded = {
        consumed: new Map((marker?.consumed ?? []).map((c) => [inputKey(c.topic, c.partition), c])),
        global: new Map((marker?.global ?? []).map((g) => [g.partition, g.offset])),
      };
      for (const [k, o] of recorded.consumed) next.set(k, BigInt(o.offset));
      for (const [q, o] of recorded.global) globalNext.set(q, BigInt(o));
      // The global kinds read since the recorded positions, by broker time across partitions (offset order within one).
      const replay = deps.global.partitions().flatMap((q) => deps.global.since(q, globalNext.get(q) ?? 0n));
      replay.sort((a, b) => ((a.appendedAt ?? '') < (b.appendedAt ?? '') ? -1 : (a.appendedAt ?? '') > (b.appendedAt ?? '') ? 1 : a.partition - b.partition || (a.offset < b.offset ? -1 : 1)));
      collect(tick(w, now(), fold));
      for (const e of replay) foldGlobal(e);
      ready = true;
      schedulePump();
      logger.info({ restored: records.length, sessions: w.sessions.size, globalReplayed: replay.length, consumedAt: [...recorded.consumed.values()].map((o) => `${o.topic}/${o.partition}@${o.offset}`) }, 'projector task opened');
      return [...recorded.consumed.values()];
    },
    isReady: () => ready && !failed && !closed,
    async onBatch(batch, heartbeat) {
      if (!ready || failed || closed || world === undefined) return false;
      while (inFlight !== undefined && pending.changed.length + pending.touched.size >= deps.maxPendingRecords) {
        // Backpressure holds kafkajs's loop, which is where it heartbeats: a slow transaction must not cost the membership.
        await heartbeat?.().catch(() => undefined);
        await inFlight;
        if (!ready || failed || closed) return false;
      }
      const key = inputKey(batch.topic, batch.partition);
      const valid = await admitBatch(batch, next.get(key) ?? -1n, deps.admit);
      if (!ready || failed || closed || world === undefined) return false;
      // From here to the end: synchronous, so no group is sealed halfway through a batch.
      collect(tick(world, now(), fold));
      // The global kinds of this partition reach the world through the global reader, like every other partition's.
      for (const v of valid) if (!isGlobalEvent(v.event)) collect(evolve(world, v.event, fold, v.appendedAt));
      const last = batch.messages.at(-1);
      if (last !== undefined && BigInt(last.offset) + 1n > (next.get(key) ?? 0n)) {
        const o = BigInt(last.offset) + 1n;
        next.set(key, o);
        pending.offsets.set(key, { topic: batch.topic, partition: batch.partition, offset: String(o) });
      }
      stats.batches++;
      schedulePump();
      return true;
    },
    onGlobal(e) {
      if (!ready || failed || closed || world === undefined) return; // replayed from the reader's log at open
      collect(tick(world, now(), fold));
      foldGlobal(e);
      schedulePump();
    },
    onTick() {
      if (!ready || failed || closed || world === undefined) return;
      collect(tick(world, now(), fold));
      if (!isEmptyGroup(pending)) schedulePump();
    },
    sessions: () => world?.sessions.size ?? 0,
    unpublished: () => ({ count: inFlightStates + pending.changed.length, since: inFlightSince ?? pendingSince }),
    flush: () =>
      new Promise<void>((resolve) => {
        if (failed || closed || (inFlight === undefined && isEmptyGroup(pending) && pendingGlobal.size === 0)) return resolve();
        drained.push(resolve);
        schedulePump();
      }),
    async close() {
      ready = false;
      closed = true;
      while (inFlight !== undefined) await inFlight;
      settleDrained();
      pending = emptyGroup();
      pendingGlobal = new Map();
      const prod = producer;
      producer = undefined;
      world = undefined;
      await prod?.disconnect().catch(() => undefined);
    },
  };
};
