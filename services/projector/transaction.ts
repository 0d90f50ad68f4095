// One Kafka transaction of the projector: messages for several topics, sent
// in bounded chunks, and the consumed offsets of the projector's group,
// committed together or not at all. Both delivery modes use it — the
// transactional mode for a whole group (states + changelog + offsets), the
// idempotent mode for a recording round (changelog + offsets).
import { performance } from 'node:perf_hooks';
import type { Producer, Transaction } from 'kafkajs';
import { chunkMessages } from '../lib/kafka.ts';
import type { OutMessage } from './group.ts';

export type TopicOffsets = { topic: string; partitions: { partition: number; offset: string }[] }[];

/** Time spent in each step, ms. */
export type TransactionSteps = { beginMs: number; sendMs: number; offsetsMs: number; commitMs: number };

/** kafkajs' protocol error type, on the error or any of its causes. */
export const hasErrorType = (e: unknown, type: string): boolean => {
  for (let c: unknown = e; typeof c === 'object' && c !== null; c = (c as { cause?: unknown }).cause) {
    if ((c as { type?: unknown }).type === type) return true;
  }
  return false;
};

/**
 * AddOffsetsToTxn is not retried by kafkajs; right after a commit the
 * coordinator answers CONCURRENT_TRANSACTIONS until the markers are written
 * (milliseconds), so that one error is retried briefly.
 */
const sendOffsets = async (txn: Transaction, consumerGroupId: string, topics: TopicOffsets): Promise<void> => {
  for (let attempt = 0; ; attempt++) {
    try {
      await txn.sendOffsets({ consumerGroupId, topics });
      return;
    } catch (e) {
      if (!hasErrorType(e, 'CONCURRENT_TRANSACTIONS') || attempt >= 50) throw e;
      await new Promise((r) => setTimeout(r, Math.min(50, 2 + attempt * 2)));
    }
  }
};

/** Runs one transaction on a transactional producer; aborts it and rethrows on any failure. */
export const runTransaction = async (
  producer: Producer,
  consumerGroupId: string,
  topicMessages: readonly { topic: string; messages: OutMessage[] }[],
  offsets: TopicOffsets,
): Promise<TransactionSteps> => {
  const t0 = performance.now();
  const txn = await producer.transaction();
  const t1 = performance.now();
  try {
    // Round i sends the i-th chunk of every topic: one request for a usual group, bounded batches for a backlog.
    const chunks = topicMessages.map(({ topic, messages }) => ({ topic, chunks: chunkMessages(messages) }));
    for (let i = 0; chunks.some((c) => i < c.chunks.length); i++) {
      const round = chunks.flatMap(({ topic, chunks: cs }) => (i < cs.length ? [{ topic, messages: cs[i] ?? [] }] : []));
      await txn.sendBatch({ topicMessages: round, acks: -1 });
    }
    const t2 = performance.now();
    if (offsets.length > 0) await sendOffsets(txn, consumerGroupId, offsets);
    const t3 = performance.now();
    await txn.commit();
    const t4 = performance.now();
    return { beginMs: t1 - t0, sendMs: t2 - t1, offsetsMs: t3 - t2, commitMs: t4 - t3 };
  } catch (e) {
    await txn.abort().catch(() => undefined);
    throw e;
  }
};
