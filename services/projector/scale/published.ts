// Scale-out, idempotent delivery: the instance's reader of its own output.
// One consumer of the session-trust topic (read_uncommitted, a throwaway
// group that never commits — kafkajs consumes only through groups), joined
// once at start and paused on every partition. A task that claimed partition
// p (task.ts) watches p from just past its epoch record while it owns it: a
// state a zombie appends after that record is seen and repaired (README,
// "Scaling out" → "Delivery mode": compaction would otherwise keep the
// zombie's record as the newest of its session's key). Best effort: a record
// this reader misses is only not repaired.
import { randomUUID } from 'node:crypto';
import type { Consumer, IHeaders, Kafka } from 'kafkajs';

export type PublishedRecord = { offset: string; key: Buffer | null; headers?: IHeaders; value: Buffer | null };

export type PublishedReader = {
  start(): Promise<void>;
  /** Reads partition p from `from` on, in offset order, each record once, until the returned function is called. One watcher per partition. */
  watch(p: number, from: bigint, onRecord: (r: PublishedRecord) => void): () => void;
  stop(): Promise<void>;
};

type Watcher = { from: bigint; next: bigint; onRecord: (r: PublishedRecord) => void };

export const createPublishedReader = (deps: { kafka: Kafka; topic: string; groupId: string; partitions: number }): PublishedReader => {
  const watchers = new Map<number, Watcher>();
  let consumer: Consumer | undefined;
  const pause = (c: Consumer, p: number): void => {
    try {
      c.pause([{ topic: deps.topic, partitions: [p] }]);
    } catch {
      // not running: nothing is fetched anyway
    }
  };

  return {
    async start() {
      const c = deps.kafka.consumer({ groupId: `${deps.groupId}-published-${randomUUID()}`, maxWaitTimeInMs: 100, readUncommitted: true, sessionTimeout: 30_000 });
      consumer = c;
      await c.connect();
      await c.subscribe({ topic: deps.topic, fromBeginning: true });
      await c.run({
        autoCommit: false,
        eachBatch: async ({ batch, isStale }) => {
          const w = watchers.get(batch.partition);
          // A batch fetched before the watcher's seek is not what follows `from`.
          if (w === undefined || isStale()) return;
          for (const m of batch.messages) {
            const o = BigInt(m.offset);
            // A re-read (a rebalance of this one-member group starts from the beginning again) hands nothing twice.
            if (o < w.next || o < w.from) continue;
            w.next = o + 1n;
            w.onRecord(m);
          }
        },
      });
      // Nothing is read until a task watches a partition (after run: kafkajs pauses only a running consumer).
      for (let p = 0; p < deps.partitions; p++) if (!watchers.has(p)) pause(c, p);
    },
    watch(p, from, onRecord) {
      const c = consumer;
      if (c === undefined) throw new Error('published reader not started');
      const w: Watcher = { from, next: from, onRecord };
      watchers.set(p, w);
      c.seek({ topic: deps.topic, partition: p, offset: String(from) });
      c.resume([{ topic: deps.topic, partitions: [p] }]);
      return () => {
        if (watchers.get(p) !== w) return;
        watchers.delete(p);
        pause(c, p);
      };
    },
    async stop() {
      const c = consumer;
      consumer = undefined;
      watchers.clear();
      await c?.disconnect().catch(() => undefined);
    },
  };
};
