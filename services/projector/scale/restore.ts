// Scale-out restore: the changelog records of the partitions an instance was
// just assigned, and only those (read_committed, up to their end offsets
// taken now), through a throwaway group that never commits.
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type { Logger } from '../../lib/log.ts';
import { endOffsets, trackCatchUp } from '../../lib/catch-up.ts';
import { decodeRecord, type ChangelogRecord } from '../changelog.ts';

export const readChangelogPartitions = async (
  deps: { kafka: Kafka; groupId: string; logger: Logger; untilStopped: <T>(p: Promise<T>) => Promise<T> },
  topic: string,
  partitions: readonly number[],
): Promise<Map<number, ChangelogRecord[]>> => {
  const out = new Map<number, ChangelogRecord[]>(partitions.map((p) => [p, []]));
  const admin = deps.kafka.admin();
  await admin.connect();
  let targets: Map<number, bigint>;
  try {
    targets = await endOffsets(admin, topic);
  } finally {
    await admin.disconnect();
  }
  for (const p of [...targets.keys()]) if (!out.has(p)) targets.delete(p);
  if (targets.size === 0) return out;
  const others = [...(await (async () => {
    const a = deps.kafka.admin();
    await a.connect();
    try {
      const md = await a.fetchTopicMetadata({ topics: [topic] });
      return (md.topics[0]?.partitions ?? []).map((x) => x.partitionId).filter((x) => !out.has(x));
    } finally {
      await a.disconnect();
    }
  })())];
  const reader = deps.kafka.consumer({ groupId: `${deps.groupId}-restore-${randomUUID()}`, maxWaitTimeInMs: 100, readUncommitted: false, maxBytesPerPartition: 8 * 1024 * 1024 });
  await reader.connect();
  const caught = trackCatchUp(reader, topic, targets);
  try {
    await reader.subscribe({ topic, fromBeginning: true });
    await reader.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const list = out.get(batch.partition);
        if (list === undefined) return;
        for (const m of batch.messages) {
          if (m.value === null) continue;
          const r = decodeRecord(m.value);
          if (r.ok) list.push(r.value);
          else deps.logger.error({ partition: batch.partition, offset: m.offset, reason: r.error }, 'skipping unreadable changelog record');
        }
      },
    });
    // Partitions other instances own are not fetched (after run: kafkajs pauses only a running consumer; a batch already fetched is ignored above).
    if (others.length > 0) reader.pause([{ topic, partitions: others }]);
    await deps.untilStopped(caught.done);
  } finally {
    caught.dispose();
    await reader.disconnect();
  }
  return out;
};
