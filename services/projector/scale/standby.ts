// Scale-out, warm standby (Kafka Streams' standby replicas, here of every
// partition): the instance keeps reading the whole changelog (read_committed,
// a throwaway group that never commits) and holds the newest record bytes per
// key of each partition. A task that opens — a failover, a rebalance — then
// restores from memory once the standby has read up to the partition's end
// offset taken after the fence, instead of joining a restore group and
// reading the partition from the start.
//
// `folded` (the default): each record is also decoded and applied, as it is
// read, to a world per partition (folded.ts), so a takeover hands that world
// over instead of decoding and restoring the partition's records at open — an
// open that grows with the partition's sessions (seconds at 100k) becomes a
// hand-over. The standby then folds a new world for that partition from the
// bytes it holds, in the background, a thousand records per turn of the event
// loop, for the next takeover. `bytes`: records are decoded at open.
// Memory: every instance holds the records of every partition (bytes), and in
// `folded` their worlds as well; CPU: every instance decodes every record.
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import type { Logger } from '../../lib/log.ts';
import { endOffsets, trackCatchUp } from '../../lib/catch-up.ts';
import { decodeRecord, type ChangelogRecord } from '../changelog.ts';
import { createFolding, restoredFrom, type Folding, type Restored } from './folded.ts';

export type Standby = {
  /** Resolves once every partition was read to its end offset at start. */
  start(): Promise<void>;
  /** Partition p restored as of at least its end offset now: the folded world handed over (`folded`), or its records restored. */
  restored(p: number): Promise<Restored>;
  /** Keys held, all partitions. */
  size(): number;
  stop(): Promise<void>;
};

export type StandbyMode = 'folded' | 'bytes';

/** How long after a hand-over the standby starts folding that partition anew. */
const REFOLD_DELAY_MS = 3_000;

export const createStandby = (deps: { kafka: Kafka; topic: string; groupId: string; logger: Logger; untilStopped: <T>(p: Promise<T>) => Promise<T>; mode?: StandbyMode }): Standby => {
  const folded = (deps.mode ?? 'folded') === 'folded';
  const byPartition = new Map<number, Map<string, Buffer>>();
  /**
   * Folded: per partition, the world of its records so far — `dirty` after a
   * tombstone of a held key (a folding cannot take a record back: the next
   * takeover restores from the bytes and folds anew).
   */
  const folds = new Map<number, Folding | 'dirty'>();
  /** Folded: partitions being folded anew from their bytes, with the keys that changed meanwhile. */
  const refolding = new Map<number, { touched: Set<string>; done: Promise<void>; kick: () => void }>();
  let stopped = false;
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

  /** Partition p read up to its end offset as of now (after the caller's fence). */
  const caughtUp = async (p: number): Promise<void> => {
    const a = admin;
    if (a === undefined) throw new Error('standby not started');
    const end = (await endOffsets(a, deps.topic)).get(p) ?? 0n;
    while ((position.get(p) ?? 0n) < end) await deps.untilStopped(new Promise<void>((r) => waiters.push(r)));
  };

  const unreadable = (p: number, key: string, reason: string): void => deps.logger.error({ partition: p, key, reason }, 'skipping unreadable changelog record');

  const decodeAll = (p: number): ChangelogRecord[] => {
    const out: ChangelogRecord[] = [];
    for (const [key, value] of byPartition.get(p) ?? []) {
      const r = decodeRecord(value);
      if (r.ok) out.push(r.value);
      else unreadable(p, key, r.error);
    }
    return out;
  };

  const applyBytes = (f: Folding, p: number, key: string, value: Buffer): void => {
    const r = decodeRecord(value);
    if (r.ok) f.apply(r.value);
    else unreadable(p, key, r.error);
  };

  /**
   * Folds partition p anew from the bytes held, a thousand keys per turn;
   * records read meanwhile are applied after, newest bytes. It starts a few
   * seconds after the hand-over (not beside the new task's first rounds), or
   * at once when the partition is asked for again before that.
   */
  const refold = (p: number): void => {
    const touched = new Set<string>();
    const f = createFolding();
    let kick!: () => void;
    const kicked = new Promise<void>((r) => (kick = r));
    const timer = setTimeout(kick, REFOLD_DELAY_MS);
    timer.unref();
    const done = (async () => {
      await kicked;
      clearTimeout(timer);
      const keys = [...(byPartition.get(p)?.keys() ?? [])];
      for (let i = 0; i < keys.length; i++) {
        if (i % 1000 === 999) await new Promise<void>((r) => setImmediate(r));
        if (stopped) return;
        const k = keys[i] ?? '';
        const b = byPartition.get(p)?.get(k);
        if (b !== undefined) applyBytes(f, p, k, b);
      }
      for (const k of touched) {
        const b = byPartition.get(p)?.get(k);
        if (b !== undefined) applyBytes(f, p, k, b);
      }
      // A tombstone read meanwhile: the folding would hold the deleted key.
      folds.set(p, [...touched].some((k) => byPartition.get(p)?.get(k) === undefined) ? 'dirty' : f);
    })().finally(() => refolding.delete(p));
    refolding.set(p, { touched, done, kick });
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
          const p = batch.partition;
          let keys = byPartition.get(p);
          if (keys === undefined) byPartition.set(p, (keys = new Map()));
          const again = refolding.get(p);
          let f = folded && again === undefined ? folds.get(p) : undefined;
          if (folded && again === undefined && f === undefined) folds.set(p, (f = createFolding()));
          for (const m of batch.messages) {
            if (m.key === null) continue;
            const k = m.key.toString('utf8');
            again?.touched.add(k);
            if (m.value === null) {
              if (keys.delete(k) && f !== undefined) folds.set(p, (f = 'dirty'));
              continue;
            }
            keys.set(k, m.value);
            if (f !== undefined && f !== 'dirty') applyBytes(f, p, k, m.value);
          }
        },
      });
      await deps.untilStopped(caught.done);
      caught.dispose();
      deps.logger.info({ keys: [...byPartition.values()].reduce((n, m) => n + m.size, 0) }, 'projector standby read the changelog to its start-time end');
    },
    async restored(p) {
      await caughtUp(p);
      if (!folded) return restoredFrom(decodeAll(p));
      const again = refolding.get(p);
      again?.kick();
      await deps.untilStopped(again?.done ?? Promise.resolve());
      const f = folds.get(p);
      // Handed over: the task folds on into it; the standby folds the partition anew for the next takeover.
      const out = f === undefined ? restoredFrom([]) : f === 'dirty' ? restoredFrom(decodeAll(p)) : f.take();
      refold(p);
      return out;
    },
    size: () => [...byPartition.values()].reduce((n, m) => n + m.size, 0),
    async stop() {
      stopped = true;
      for (const r of refolding.values()) r.kick();
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
