// "Have I read everything that was in this topic when I started?" for a
// consumer reading from the beginning. The targets are the high watermarks at
// start; a partition counts as read once a batch ending at or past
// `target - 1` went by. kafkajs reports batches that hold only transaction
// markers or aborted records too (END_BATCH_PROCESS), so a topic written with
// transactions, whose last offset is a commit marker, is caught up as well.
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, ConsumerConfig, Kafka } from 'kafkajs';
import { retryTransient } from './kafka.ts';

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

/**
 * A consumer that reads `topic` from its beginning in a group of its own
 * (`<groupPrefix>-<uuid>`, never committing, so it is assigned every
 * partition), subscribed and connected, with its catch-up tracked against the
 * topic's end at start. Connect, the end-offsets read and subscribe are retried
 * on Kafka's transient errors (a broker still electing leaders, a rebalance):
 * a view that cannot start would take its whole process down. The caller runs
 * the consumer and disposes `catchUp` on close.
 */
export const readFromStart = async (
  kafka: Kafka,
  o: { topic: string; groupPrefix: string; config?: Omit<ConsumerConfig, 'groupId'> },
): Promise<{ consumer: Consumer; catchUp: CatchUp }> => {
  const admin = kafka.admin();
  await retryTransient(() => admin.connect());
  let targets: Map<number, bigint>;
  try {
    targets = await endOffsets(admin, o.topic);
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({ maxWaitTimeInMs: 250, ...o.config, groupId: `${o.groupPrefix}-${randomUUID()}` });
  const catchUp = trackCatchUp(consumer, o.topic, targets);
  await retryTransient(() => consumer.connect());
  await retryTransient(() => consumer.subscribe({ topic: o.topic, fromBeginning: true }));
  return { consumer, catchUp };
};
