// The projector's surface: what `createProjector` takes and what it gives
// (runtime.ts), apart from the code so the contract reads on one page.
import type { Codec } from '../../schemas/codec.ts';
import type { ActiveFreeze } from '../../schemas/events.ts';
import type { Kafka } from 'kafkajs';
import type { Config } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import type { Delivery } from './config.ts';
import type { FoldConfig } from './evolve.ts';
import type { TransactionTiming } from './timing.ts';

export type ProjectorDeps = {
  kafka: Kafka;
  config: Pick<Config, 'topics' | 'kafka'>;
  logger: Logger;
  fold?: FoldConfig;
  /** Consumer group of the projector; one group per deployment. */
  groupId?: string;
  /** Default `<groupId>.changelog` next to the session-trust topic name. */
  changelogTopic?: string;
  /** Default `<groupId>-0`: one instance owns it; a restarted instance fences its predecessor. */
  transactionalId?: string;
  tickIntervalMs?: number;
  /**
   * Consumer session timeout. A killed instance holds its partitions until it
   * expires, so this bounds how long a replacement waits (default 10 s).
   */
  sessionTimeoutMs?: number;
  /** Wall clock (ms); injected so tests can drive expiry. */
  now?: () => number;
  codec?: Codec;
  /** Learn session facts from decisions too (default true). */
  consumeDecisions?: boolean;
  /** Backpressure: a batch waits for the running transaction once this many records are queued for the next one (default 20 000). */
  maxPendingRecords?: number;
  /** Partition batches kafkajs hands over at once; they share one transaction (default 64). */
  maxConcurrentPartitions?: number;
  /** Create missing topics at start (default true). */
  ensureTopics?: boolean;
  /** Default `DEFAULT_DELIVERY`. */
  delivery?: Delivery;
  /**
   * Readiness: the projector reports not ready while a state it folded has
   * waited longer than this to reach the session-trust topic (default 30 s).
   */
  maxPublishLagMs?: number;
  /**
   * Scale-out: keep a warm standby of every changelog partition, so a task taken over opens from memory:
   * `true`/`folded` (default) with each partition's world folded as its records are read, `bytes` with the
   * records decoded at open, `false` none (a restore read at open).
   */
  standby?: boolean | 'folded' | 'bytes';
  /** Scale-out: called with this member's partitions after every join of the group. */
  onAssignment?: (partitions: number[]) => void;
};

export type ProjectorStats = {
  sessions: number;
  published: number;
  batches: number;
  deadLettered: number;
  recoveries: number;
  restoredRecords: number;
  /** Idempotent mode, after a restore: replayed versions found already published with the same content (not sent again). */
  republishSkipped: number;
  /** Idempotent mode, after a restore: sessions whose replay diverged from what was published and moved past it. */
  rebased: number;
  /** Idempotent mode, after a restore: input records below the recorded marker, skipped (already folded). */
  replaySkipped: number;
  /** Scale-out, idempotent: sessions published again because a taken-over owner's late state followed this task's epoch record (scale/task.ts). */
  repaired: number;
  /** Input records whose Kafka key disagreed with their event's tenant / subject (dead-lettered, not folded). */
  keyMismatches: number;
  /** Trust states the fold produced that the session-trust topic has not acknowledged yet (0 at rest). */
  unpublished: number;
  /** Age of the oldest of those, ms (0 when there is none). */
  publishLagMs: number;
};

/** Every counter at zero, for a new runtime or scale-out instance. */
export const newProjectorStats = (): ProjectorStats => ({
  sessions: 0,
  published: 0,
  batches: 0,
  deadLettered: 0,
  recoveries: 0,
  restoredRecords: 0,
  republishSkipped: 0,
  rebased: 0,
  replaySkipped: 0,
  repaired: 0,
  keyMismatches: 0,
  unpublished: 0,
  publishLagMs: 0,
});

export type Projector = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once restored from the changelog and consuming, and no folded state waits longer than `maxPublishLagMs` to be published. */
  isReady(): boolean;
  /** `true`, or why the projector is not ready. */
  readiness(): true | string;
  stats(): ProjectorStats;
  /** Cumulative time spent in each step of the output transactions (ms), for benchmarks and diagnosis. */
  timing(): TransactionTiming;
  /** A tenant's active freezes as this instance's fold holds them (for ingest's GET /v1/freezes in `--role all`). */
  activeFreezes(tenantId: string): ActiveFreeze[];
};
