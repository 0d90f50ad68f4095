// Restore: what the projector reads back before it consumes again. The
// changelog (read whole, read_committed) gives the world and the published
// marker; in idempotent mode the session-trust topic from the marker to its
// end gives the states published past that world (`ahead`, checked by
// reconcile.ts), and the input between the committed offsets / the marker and
// the end is what the replay must fold before those sessions are settled.
import { randomUUID } from 'node:crypto';
import type { IHeaders, Kafka } from 'kafkajs';
import type { Codec } from '../../schemas/codec.ts';
import type { Logger } from '../lib/log.ts';
import { endOffsets, trackCatchUp } from '../lib/catch-up.ts';
import { createEpochGate } from '../pdp-client/epoch.ts';
import { decodeRecord, publishedMarkerOf, snapshotFromRecords, type ChangelogRecord } from './changelog.ts';
import { restoreWorld, sessionKeyOf, type World } from './evolve.ts';
import type { Ahead } from './reconcile.ts';

export type InputOffset = { topic: string; partition: number; offset: string };

/** Key of an input partition in the maps below. */
export const inputKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

export type RestoreDeps = {
  kafka: Kafka;
  /** The projector's consumer group (throwaway readers are named after it). */
  groupId: string;
  logger: Logger;
  codec: Codec;
  /** Races a wait against the projector's stop: a restore still reading gives up when it stops. */
  untilStopped: <T>(p: Promise<T>) => Promise<T>;
};

export type Restored = {
  world: World;
  /** Changelog records read. */
  records: number;
  /** Per session-trust partition: the offset from which published states may lie past the world (the marker). */
  covered: Map<number, string>;
  /** Per input partition (`inputKey`): the next offset the recorded world has not folded (the marker). */
  folded: Map<string, InputOffset>;
  /** Idempotent mode: sessions published past the restored world (empty otherwise). */
  ahead: Map<string, Ahead>;
};

/** A topic's end offsets now, through a short-lived admin client. */
export const endOffsetsNow = async (kafka: Kafka, topic: string): Promise<Map<number, bigint>> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await endOffsets(admin, topic);
  } finally {
    await admin.disconnect();
  }
};

const partitionsOf = async (kafka: Kafka, topic: string): Promise<number[]> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    return (md.topics[0]?.partitions ?? []).map((x) => x.partitionId);
  } finally {
    await admin.disconnect();
  }
};

/**
 * Reads `topic` from the beginning until every partition of `targets`
 * (partition → end offset at start) is reached, through a throwaway group
 * that never commits; `seekTo` skips a partition's known prefix.
 */
const readToEnd = async (
  deps: RestoreDeps,
  topic: string,
  targets: Map<number, bigint>,
  o: { name: string; readUncommitted: boolean; seekTo?: (partition: number) => bigint; onlyTargets?: boolean },
  onMessage: (partition: number, m: { offset: string; key: Buffer | null; value: Buffer | null; headers?: IHeaders }) => void,
): Promise<void> => {
  if (targets.size === 0) return;
  const reader = deps.kafka.consumer({ groupId: `${deps.groupId}-${o.name}-${randomUUID()}`, maxWaitTimeInMs: 200, readUncommitted: o.readUncommitted });
  await reader.connect();
  const caught = trackCatchUp(reader, topic, targets);
  try {
    await reader.subscribe({ topic, fromBeginning: true });
    await reader.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (o.onlyTargets === true && !targets.has(batch.partition)) return;
        for (const m of batch.messages) onMessage(batch.partition, m);
      },
    });
    // The other partitions are not fetched (after run: kafkajs pauses only a running consumer; a batch already fetched is dropped above).
    if (o.onlyTargets === true) {
      const others = (await partitionsOf(deps.kafka, topic)).filter((p) => !targets.has(p));
      if (others.length > 0) reader.pause([{ topic, partitions: others }]);
    }
    if (o.seekTo !== undefined) for (const partition of targets.keys()) if (o.seekTo(partition) > 0n) reader.seek({ topic, partition, offset: String(o.seekTo(partition)) });
    await deps.untilStopped(caught.done);
  } finally {
    caught.dispose();
    await reader.disconnect();
  }
};

/** Every changelog record up to the end offsets at start (read_committed). */
const readChangelog = async (deps: RestoreDeps, topic: string): Promise<ChangelogRecord[]> => {
  const targets = await endOffsetsNow(deps.kafka, topic);
  const records: ChangelogRecord[] = [];
  await readToEnd(deps, topic, targets, { name: 'restore', readUncommitted: false }, (partition, m) => {
    if (m.value === null) return;
    const r = decodeRecord(m.value);
    if (r.ok) records.push(r.value);
    else deps.logger.error({ partition, offset: m.offset, reason: r.error }, 'skipping unreadable changelog record');
  });
  deps.logger.debug({ targets: [...targets].map(([p, o]) => `${p}:${o}`), records: records.length }, 'changelog read');
  return records;
};

/**
 * Idempotent mode: reads the session-trust topic from the published marker
 * (the beginning for partitions it does not name) to its current end and
 * returns the sessions with a published version above the restored one.
 * read_uncommitted: anything a PDP may have seen counts as published — and
 * only that: the epoch rule (pdp-client/epoch.ts) drops what every reader
 * drops, a state of an owner taken over before it. Scale-out: `partitions`
 * limits the read to a task's own, and `epochs` gives the epoch in force at
 * each one's marker offset (the marker records it).
 */
export const readPublishedAhead = async (
  deps: RestoreDeps,
  topic: string,
  covered: ReadonlyMap<number, string>,
  restored: World,
  o: {
    partitions?: readonly number[];
    epochs?: ReadonlyMap<number, number>;
    /** Filled with the sessions whose newest record in the read is one the epoch rule refuses (scale-out: to publish again). */
    staleNewest?: Set<string>;
    /** Called with the epoch of every epoch record read (scale-out: one above the claim was not made by it). */
    epochSeen?: (epoch: number) => void;
  } = {},
): Promise<Map<string, Ahead>> => {
  const ends = await endOffsetsNow(deps.kafka, topic);
  const from = (partition: number): bigint => BigInt(covered.get(partition) ?? '0');
  for (const [partition, end] of ends) if (from(partition) >= end || (o.partitions !== undefined && !o.partitions.includes(partition))) ends.delete(partition);
  const gate = createEpochGate({ start: new Map([...ends.keys()].filter((p) => from(p) > 0n).map((p) => [p, { offset: from(p), epoch: o.epochs?.get(p) ?? 0 }])) });
  const out = new Map<string, Ahead>();
  // Skips what the changelog already covers (an optimisation: records below it are ignored anyway).
  await readToEnd(deps, topic, ends, { name: 'published', readUncommitted: true, seekTo: from, onlyTargets: o.partitions !== undefined }, (partition, m) => {
    if (m.value === null || BigInt(m.offset) < from(partition)) return;
    const verdict = gate.judge(partition, m.offset, m);
    if (verdict.kind === 'epoch') return o.epochSeen?.(verdict.epoch);
    const r = deps.codec.decodeTrust(m.value);
    const key = r.ok ? sessionKeyOf(r.value.tenant_id, r.value.session_id) : undefined;
    if (verdict.kind === 'refused') {
      deps.logger.warn({ partition, offset: m.offset, reason: verdict.reason, why: verdict.why }, 'published states: not counted (epoch rule)');
      if (key !== undefined && verdict.reason === 'stale_epoch') o.staleNewest?.add(key);
      return;
    }
    if (!r.ok || key === undefined) return;
    o.staleNewest?.delete(key);
    if (r.value.version <= (restored.sessions.get(key)?.version ?? 0)) return;
    let a = out.get(key);
    if (a === undefined) out.set(key, (a = { max: 0, published: new Map(), verified: 0 }));
    a.max = Math.max(a.max, r.value.version);
    if (!a.published.has(r.value.version)) a.published.set(r.value.version, m.value);
  });
  return out;
};

/** The world, the marker and (idempotent mode) the published states past the world. */
export const restoreState = async (deps: RestoreDeps, o: { changelogTopic: string; sessionTrustTopic: string; readPublished: boolean }): Promise<Restored> => {
  const records = await readChangelog(deps, o.changelogTopic);
  const world = restoreWorld(snapshotFromRecords(records));
  const marker = publishedMarkerOf(records);
  const covered = new Map((marker?.partitions ?? []).map((p) => [p.partition, p.offset]));
  const folded = new Map((marker?.consumed ?? []).map((c) => [inputKey(c.topic, c.partition), c]));
  const ahead = o.readPublished ? await readPublishedAhead(deps, o.sessionTrustTopic, covered, world) : new Map<string, Ahead>();
  return { world, records: records.length, covered, folded, ahead };
};

/**
 * Idempotent mode, restore with published states ahead: the input partitions
 * not yet folded (from the later of the committed offset and the recorded
 * marker) → their end offset now. The replay folds up to there before the
 * sessions still ahead are settled.
 */
export const unreadInput = async (deps: RestoreDeps, inputTopics: readonly string[], folded: ReadonlyMap<string, InputOffset>): Promise<Map<string, bigint>> => {
  const admin = deps.kafka.admin();
  await admin.connect();
  try {
    const out = new Map<string, bigint>();
    const committed = await admin.fetchOffsets({ groupId: deps.groupId, topics: [...inputTopics] });
    for (const topic of inputTopics) {
      const ends = await endOffsets(admin, topic);
      const from = new Map((committed.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      for (const [partition, end] of ends) {
        const recorded = folded.get(inputKey(topic, partition));
        const committedAt = from.get(partition) ?? -1n;
        const recordedAt = recorded === undefined ? -1n : BigInt(recorded.offset);
        if ((committedAt > recordedAt ? committedAt : recordedAt) < end) out.set(inputKey(topic, partition), end);
      }
    }
    return out;
  } finally {
    await admin.disconnect();
  }
};
