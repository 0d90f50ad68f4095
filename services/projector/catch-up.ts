// "Have I read everything that was in this topic when I started?" for a
// consumer reading from the beginning. The targets are the high watermarks at
// start; a partition counts as read once a batch ending at or past
// `target - 1` went by. kafkajs reports batches that hold only transaction
// markers or aborted records too (END_BATCH_PROCESS), so a topic written with
// transactions, whose last offset is a commit marker, is caught up as well.
import type { Admin, Consumer } from 'kafkajs';
import { retryTransient } from '../lib/kafka.ts';

export type CatchUp = {
  /** Resolves once every partition reached its start-time end. */
  done: Promise<void>;
  isDone(): boolean;
  /** Stops listening to the consumer's events. */
  dispose(): void;
};

export const endOffsets = async (admin: Admin, topic: string): Promise<Map<number, bigint>> => {
  const offsets = await retryTransient(() => admin.fetchTopicOffsets(topic));
  const out = new Map<number, bigint>();
  for (const p of offsets) {
    const high = BigInt(p.high);
    const low = BigInt(p.low);
    if (high > low) out.set(p.partition, high);
  }
  return out;
};

export const trackCatchUp = (consumer: Consumer, topic: string, targets: Map<number, bigint>): CatchUp => {
  const remaining = new Map(targets);
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const check = (): void => {
    if (remaining.size === 0) resolve();
  };
  const off = consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    if (e.payload.topic !== topic) return;
    const target = remaining.get(e.payload.partition);
    if (target === undefined) return;
    if (BigInt(e.payload.lastOffset) + 1n >= target) {
      remaining.delete(e.payload.partition);
      check();
    }
  });
  check();
  return { done, isDone: () => remaining.size === 0, dispose: off };
};
