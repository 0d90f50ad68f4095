// Idempotent delivery, in two stages. (1) publishes a group's states, one
// group at a time, in order. The recorder does (2)+(3) for the groups whose
// (1) finished, in order and coalesced: everything published since its last
// round in one Kafka transaction (the changelog records, the marker and the
// offsets) — so it keeps up however slow it is, and the next group's (1) never
// waits for it (up to `MAX_UNRECORDED` groups). It stops at the first group
// whose (1) failed. Hence the changelog always holds a prefix of the groups,
// the committed offsets never pass the changelog, and the published marker
// never passes a state the changelog lacks.
import { performance } from 'node:perf_hooks';
import type { Producer, RecordMetadata } from 'kafkajs';
import { chunkMessages } from '../../lib/kafka.ts';
import { encodeRecord, PUBLISHED_MARKER_KEY, type ChangelogRecord, type PublishedMarker } from '../changelog.ts';
import { offsetsByTopic, type Group, type OutMessage, type Sealed } from '../group.ts';
import type { InputOffset } from '../restore.ts';
import { runTransaction } from '../transaction.ts';
import type { DeliveryContext, GroupDelivery } from './types.ts';

/**
 * What the changelog records besides the world, persisted as the published
 * marker with each round; set by a restore, moved by each round.
 * `covered`: per session-trust partition, an offset at or before the first
 * published state that the changelog may not cover. `folded`: per input
 * partition (topic\0partition), the next offset the recorded world has not
 * folded — input below it is skipped: the committed group offsets may lag
 * behind the changelog (a commit that failed in a rebalance), and the bounded
 * dedup memory of a session cannot be relied on to recognise a long replay.
 */
export type Marks = {
  covered: Map<number, string>;
  folded: Map<string, InputOffset>;
  /** Scale-out: per session-trust partition, the epoch in force at its `covered` offset (absent: 0). */
  epochs?: Map<number, number>;
};

/** Scale-out (scale/task.ts): one task's partition, its epoch, and what its marker holds besides offsets. */
export type TaskScope = {
  partition: number;
  /** The epoch the task claimed (its states carry it). */
  epoch: () => number;
  /** Taken when a group is delivered (sealed): how far the world of that instant folded the global kinds. */
  global: () => NonNullable<PublishedMarker['global']>;
};

export type IdempotentContext = DeliveryContext & {
  /** The changelog producer (steps (2)+(3)), apart from the states' so it never queues in front of a state. */
  logProducer: () => Producer | undefined;
  marks: Marks;
  /** The world may be ahead of what was written: rebuild it. */
  invalidate: (reason: string, e?: unknown) => void;
  /** The recorder ran out of groups to record: the runtime may start the next group. */
  onIdle: () => void;
  /** Scale-out: the task this delivery writes for (its marker goes to its changelog partition, with its epoch and global positions). */
  task?: TaskScope;
};

/** Groups published but not yet recorded, at most; then the next group waits. */
export const MAX_UNRECORDED = 64;

type Unrecorded = {
  /** Set once (1) settled: its produce results, or undefined if it failed. */
  md?: RecordMetadata[] | undefined;
  done: boolean;
  published: Promise<void>;
  sessions: OutMessage[];
  facts: OutMessage[];
  offsets: Map<string, InputOffset>;
  t0: number;
  /** Scale-out: the global positions as of this group's seal. */
  global?: NonNullable<PublishedMarker['global']>;
};

export const createIdempotentDelivery = (ctx: IdempotentContext): GroupDelivery => {
  const { groupId, logger, timing, marks, invalidate } = ctx;
  let unrecorded: Unrecorded[] = [];
  let recorder: Promise<void> | undefined;

  const publish = async (states: OutMessage[]): Promise<RecordMetadata[]> => {
    const producer = ctx.producer();
    if (producer === undefined) throw new Error('projector not started');
    if (states.length === 0) return [];
    const md: RecordMetadata[] = [];
    for (const chunk of chunkMessages(states)) md.push(...(await producer.send({ topic: ctx.sessionTrustTopic, messages: chunk, acks: -1 })));
    return md;
  };

  const record = async (batch: Unrecorded[]): Promise<void> => {
    const logProducer = ctx.logProducer();
    if (logProducer === undefined) throw new Error('projector not started');
    const t0 = performance.now();
    const marker = new Map(marks.covered);
    const epochs = new Map(marks.epochs ?? []);
    const task = ctx.task;
    // A task always records its marker: it carries the global positions too.
    let moved = task !== undefined;
    for (const u of batch) {
      for (const m of u.md ?? []) {
        const base = m.baseOffset ?? m.offset;
        if (base === undefined) throw new Error('state produce returned no offset');
        // The first offset of the newest recorded group's states on that partition.
        if (!marker.has(m.partition) || BigInt(base) > BigInt(marker.get(m.partition) ?? '0')) {
          marker.set(m.partition, base);
          // Its own states follow its own epoch record: that epoch is in force there.
          if (task !== undefined) epochs.set(m.partition, task.epoch());
        }
        moved = true;
      }
    }
    const offsets = new Map<string, InputOffset>();
    for (const u of batch) for (const [k, o] of u.offsets) offsets.set(k, o);
    const consumed = new Map(marks.folded);
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
      const global = batch.findLast((u) => u.global !== undefined)?.global;
      const markerRecord: ChangelogRecord = {
        kind: 'published',
        value: {
          partitions: [...marker].map(([partition, offset]) => {
            const epoch = epochs.get(partition);
            return task === undefined || epoch === undefined || epoch === 0 ? { partition, offset } : { partition, offset, epoch };
          }),
          consumed: [...consumed.values()],
          ...(global !== undefined && { global }),
        },
      };
      messages.push({ key: PUBLISHED_MARKER_KEY, value: encodeRecord(markerRecord), ...(task !== undefined && { partition: task.partition }) });
    }
    logger.debug({ groups: batch.length }, 'recording a round');
    await runTransaction(logProducer, groupId, [{ topic: ctx.changelogTopic, messages }], offsetsByTopic(offsets.values()));
    marks.covered = marker;
    marks.folded = consumed;
    if (task !== undefined) marks.epochs = epochs;
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
      else ctx.onIdle();
    });
  };

  /** Step (1) for a group sealed now; resolves (never rejects) once its states were published or failed to be. */
  const deliver = (g: Group, sealed: Sealed): Promise<void> => {
    const { states, sessions, facts } = sealed;
    const t0 = performance.now();
    const u: Unrecorded = { done: false, published: Promise.resolve(), sessions, facts, offsets: g.offsets, t0, ...(ctx.task !== undefined && { global: ctx.task.global() }) };
    u.published = publish(states).then(
      (md) => {
        u.md = md;
        u.done = true;
        timing.sendMs += performance.now() - t0;
        timing.transactions++;
        timing.batches += g.offsets.size;
        logger.debug({ states: g.changed.length, ms: Math.round(performance.now() - t0) }, 'published a group');
        ctx.acknowledged(g);
      },
      (e: unknown) => {
        u.done = true;
        invalidate('publishing states failed', e);
      },
    );
    unrecorded.push(u);
    runRecorder();
    return u.published;
  };

  return {
    deliver,
    backlog: () => unrecorded.length,
    full: () => unrecorded.length >= MAX_UNRECORDED,
    tail: () => recorder,
    reset: () => {
      unrecorded = [];
    },
  };
};
