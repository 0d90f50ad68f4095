// Scale-out, warm standby (Kafka Streams' standby replicas, here of every
// partition): the instance keeps reading the whole changelog (read_committed,
// a throwaway group that never commits) and holds the newest record bytes per
// key of each partition. A task that opens — a failover, a rebalance — then
// restores from memory once the standby has read up to the partition's end
// offset taken after the fence, instead of joining a restore group and
// reading the partition from the start. Memory: every instance holds the
// records of every partition (bytes, decoded at open).
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import type { Logger } from '../../lib/log.ts';
import { endOffsets, trackCatchUp } from '../../lib/catch-up.ts';
import { decodeRecord, type ChangelogRecord } from '../changelog.ts';

export type Standby = {
  /** Resolves once every partition was read to its end offset at start. */
  start(): Promise<void>;
  /** Partition p's records as of at least its end offset now (after the caller fenced the old owner). */
  records(p: number): Promise<ChangelogRecord[]>;
  /** Keys held, all partitions. */
  size(): number;
  stop(): Promise<void>;
};

export const createStandby = (deps: { kafka: Kafka; topic: string; groupId: string; logger: Logger; untilStopped: <T>(p: Promise<T>) => Promise<T> }): Standby => {
  const byPartition = new Map<number, Map<string, Buffer>>();
  /** Next offset per partition (transaction markers included). */
  const position = new Map<number, bigint>();
  let waiters: (() => void)[] = [];
  let consumer: Consumer | undefined;
  let admin: Admin | undefined;

  const progressed = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  return {
    async start() {
      admin = deps.kafka.admin();
      await admin.connect();
      const targets = await endOffsets(admin, deps.topic);
      const c = deps.kafka.consumer({ groupId: `${deps.groupId}-standby-${randomUUID()}`, maxWaitTimeInMs: 50, readUncommitted: false, sessionTimeout: 30_000, maxBytesPerPartition: 8 * 1024 * 1024 });
      consumer = c;
      await c.connect();
      c.on(c.events.END_BATCH_PROCESS, (e) => {
        const next = BigInt(e.payload.lastOffset) + 1n;
        if (next > (position.get(e.payload.partition) ?? 0n)) position.set(e.payload.partition, next);
        progressed();
      });
      const caught = trackCatchUp(c, deps.topic, targets);
      await c.subscribe({ topic: deps.topic, fromBeginning: true });
      await c.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          let keys = byPartition.get(batch.partition);
          if (keys === undefined) byPartition.set(batch.partition, (keys = new Map()));
          for (const m of batch.messages) {
            if (m.key === null) continue;
            const k = m.key.toString('utf8');
            if (m.value === null) keys.delete(k);
            else keys.set(k, m.value);
          }
        },
      });
      await deps.untilStopped(caught.done);
      caught.dispose();
      deps.logger.info({ keys: [...byPartition.values()].reduce((n, m) => n + m.size, 0) }, 'projector standby read the changelog to its start-time end');
    },
    async records(p) {
      const a = admin;
      if (a === undefined) throw new Error('standby not started');
      const end = (await endOffsets(a, deps.topic)).get(p) ?? 0n;
      while ((position.get(p) ?? 0n) < end) await deps.untilStopped(new Promise<void>((r) => waiters.push(r)));
      const out: ChangelogRecord[] = [];
      for (const [key, value] of byPartition.get(p) ?? []) {
        const r = decodeRecord(value);
        if (r.ok) out.push(r.value);
        else deps.logger.error({ partition: p, key, reason: r.error }, 'skipping unreadable changelog record');
      }
      return out;
    },
    size: () => [...byPartition.values()].reduce((n, m) => n + m.size, 0),
    async stop() {
      const c = consumer;
      const a = admin;
      consumer = undefined;
      admin = undefined;
      progressed();
      await c?.disconnect().catch(() => undefined);
      await a?.disconnect().catch(() => undefined);
    },
  };
};
