// Scale-out: the global table's input. Every instance reads every partition
// of the signals topic — outside the projector group (a throwaway group of
// one member that never commits, as kafkajs consumes only through groups) —
// and keeps the global kinds (role, consent, freeze: keyed by user or freeze,
// so on any partition) in an in-memory log, in offset order per partition.
// Each partition task folds them into its world (fan-out to the sessions it
// owns) and records how far it folded them; a task opened later replays the
// log from its recorded positions. Poison is not dead-lettered here: the
// group member that owns the partition does that.
import { randomUUID } from 'node:crypto';
import type { Consumer, Kafka } from 'kafkajs';
import type { Codec } from '../../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../../schemas/events.ts';
import type { Logger } from '../../lib/log.ts';
import { endOffsets, trackCatchUp } from '../../lib/catch-up.ts';
import { isoOfRecordTime } from '../input.ts';

const GLOBAL_KINDS: ReadonlySet<string> = new Set(['role_revoked', 'role_granted', 'consent_revoked', 'consent_granted', 'change_freeze_raised', 'change_freeze_lifted']);

/** A signal whose effect reaches sessions on other partitions (README, "Scaling out"). */
export const isGlobalEvent = (e: TrustfoldEvent): boolean => e.type === 'signal' && GLOBAL_KINDS.has(e.kind);

export type GlobalEntry = { partition: number; offset: bigint; event: TrustfoldEvent; appendedAt: string | undefined };

export type GlobalReader = {
  /** The signals topic it reads. */
  readonly topic: string;
  /** Resolves once every partition was read to its end offset at start. */
  start(): Promise<void>;
  /** Entries of one partition at or after `from`, in offset order. */
  since(partition: number, from: bigint): GlobalEntry[];
  /** Partitions with entries. */
  partitions(): number[];
  /** The next offset to read of a signals partition (every record before it was taken, or skipped as no global kind). */
  position(partition: number): bigint;
  /** Entries held (all partitions). */
  size(): number;
  stop(): Promise<void>;
};

export const createGlobalReader = (deps: {
  kafka: Kafka;
  topic: string;
  groupId: string;
  codec: Codec;
  logger: Logger;
  /** Called for each new entry, after it joined the log. */
  onEntry: (e: GlobalEntry) => void;
}): GlobalReader => {
  const log = new Map<number, GlobalEntry[]>();
  /** Next offset per partition: a rejoin of the throwaway group re-reads from the beginning; what was read is skipped. */
  const next = new Map<number, bigint>();
  /** Per partition, past the last batch handled (transaction markers included): how far the reader has read. */
  const fetched = new Map<number, bigint>();
  let consumer: Consumer | undefined;
  let size = 0;

  const take = (partition: number, offset: string, value: Buffer | null, timestamp: string): void => {
    const o = BigInt(offset);
    if (o < (next.get(partition) ?? 0n)) return;
    next.set(partition, o + 1n);
    if (value === null) return;
    const d = deps.codec.decodeEvent(value);
    if (!d.ok || !isGlobalEvent(d.value)) return;
    const entry: GlobalEntry = { partition, offset: o, event: d.value, appendedAt: isoOfRecordTime(timestamp) };
    let list = log.get(partition);
    if (list === undefined) log.set(partition, (list = []));
    list.push(entry);
    size++;
    deps.onEntry(entry);
  };

  return {
    topic: deps.topic,
    async start() {
      const admin = deps.kafka.admin();
      await admin.connect();
      let targets: Map<number, bigint>;
      try {
        targets = await endOffsets(admin, deps.topic);
      } finally {
        await admin.disconnect();
      }
      const c = deps.kafka.consumer({ groupId: `${deps.groupId}-global-${randomUUID()}`, maxWaitTimeInMs: 100, readUncommitted: false, sessionTimeout: 30_000 });
      consumer = c;
      c.on(c.events.END_BATCH_PROCESS, (e) => {
        const n = BigInt(e.payload.lastOffset) + 1n;
        if (n > (fetched.get(e.payload.partition) ?? 0n)) fetched.set(e.payload.partition, n);
      });
      await c.connect();
      const caught = trackCatchUp(c, deps.topic, targets);
      await c.subscribe({ topic: deps.topic, fromBeginning: true });
      await c.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) take(batch.partition, m.offset, m.value, m.timestamp);
        },
      });
      await caught.done;
      caught.dispose();
      deps.logger.info({ entries: size }, 'projector global table read to its start-time end');
    },
    since(partition, from) {
      const list = log.get(partition) ?? [];
      // Offsets grow along the list: binary search for the first at or after `from`.
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((list[mid]?.offset ?? 0n) < from) lo = mid + 1;
        else hi = mid;
      }
      return list.slice(lo);
    },
    partitions: () => [...log.keys()].sort((a, b) => a - b),
    position: (partition) => {
      const a = next.get(partition) ?? 0n;
      const b = fetched.get(partition) ?? 0n;
      return a > b ? a : b;
    },
    size: () => size,
    async stop() {
      const c = consumer;
      consumer = undefined;
      await c?.disconnect().catch(() => undefined);
    },
  };
};
