// The log writer: one Merkle log per topic partition of the audit topics,
// leaves in partition-offset order. The leaf index is a function of the
// partition's content alone (the count of accepted records before it), and
// the position lives in ClickHouse, not in a consumer offset: a batch handed
// over again after a crash skips every offset up to the log's last leaf, so a
// restart at any point rebuilds exactly the same tree. Signs a checkpoint of
// every log it holds at an interval and on stop.
//
// Two ways to be fed (docs/audit-log.md, "Where it runs"):
//   - hooked (`createHookedAuditLogWriter`): in the audit sink's process, from
//     the sink's `onStored` hook — the leaves of the records the sink stored,
//     hashed by the sink's decoding threads from the rows it stored, appended
//     before the sink commits their offsets;
//   - stand-alone (`createAuditLogWriter`): a consumer group of its own that
//     decodes the topics itself (a writer on other hosts than the sink).
import type { Worker } from 'node:worker_threads';
import type { Admin, Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { Topics } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import { hashBatch, type HashedLeaf, type RawMessage } from '../../schemas/audit-log/leaf-batch.ts';
import { appendLeaf, frontierRoot, type Frontier, type NodeHash } from '../../schemas/audit-log/merkle.ts';
import { formatCheckpoint, signNote, type Signer } from './note.ts';
import type { AuditLogStore, StoredCheckpoint, StoredLeaf } from './store.ts';
import type { LeafRequest } from './leaf-worker.ts';
import { ensureTopics } from '../lib/kafka.ts';
import { startModuleWorker } from '../lib/worker.ts';

export const logIdOf = (topic: string, partition: number): string => `${topic}/${partition}`;
export const originOf = (prefix: string, log: string): string => `${prefix}/${log}`;

/** The checkpoint topic, created when missing (one partition: a total order of every log's checkpoints). */
export const ensureCheckpointTopic = async (admin: Admin, topic: string, kafka: { replication: number; minInsyncReplicas: number }): Promise<void> => {
  await ensureTopics(admin, [
    { topic, numPartitions: 1, replicationFactor: kafka.replication, configEntries: [{ name: 'min.insync.replicas', value: String(kafka.minInsyncReplicas) }] },
  ]);
};

export type AuditLogWriterDeps = {
  kafka: Kafka;
  store: AuditLogStore;
  topics: Pick<Topics, 'decisions' | 'signals' | 'sessionTrust'>;
  groupId: string;
  signer: Signer;
  originPrefix: string;
  checkpointTopic: string;
  checkpointIntervalMs: number;
  log: Logger;
  codec?: Codec;
  now?: () => Date;
  /** Called after a batch's leaves are durable, before its offset is committed (tests crash here). */
  afterAppend?: (log: string, size: number) => void | Promise<void>;
  /** The stand-alone writer: decode and hash in a thread of its own (default), not on the thread of its consumer. */
  hashThread?: boolean;
};

export type Hasher = {
  /** Decodes raw Kafka values (the stand-alone writer) and hashes their leaves. */
  hash(trust: boolean, topic: string, partition: number, messages: RawMessage[]): Promise<HashedLeaf[]>;
  close(): Promise<void>;
};

export const inlineHasher = (codec: Codec): Hasher => ({
  hash: (trust, topic, partition, messages) => Promise.resolve(hashBatch(codec, trust, topic, partition, messages)),
  close: () => Promise.resolve(),
});

/** One worker thread; if it cannot start or dies, the batch in flight and every later one are hashed inline (same function). */
export const threadHasher = (codec: Codec, log: Pick<Logger, 'warn'>): Hasher => {
  const inline = inlineHasher(codec);
  let worker: Worker | undefined;
  try {
    worker = startModuleWorker(import.meta.url, 'leaf-worker');
    worker.unref();
  } catch (e) {
    log.warn({ err: e }, 'audit log: hashing thread did not start, hashing inline');
    return inline;
  }
  let next = 0;
  const waiting = new Map<number, { resolve: (l: HashedLeaf[]) => void; fallback: () => void }>();
  const fail = (e: unknown): void => {
    log.warn({ err: e }, 'audit log: hashing thread failed, hashing inline');
    worker = undefined;
    for (const w of waiting.values()) w.fallback();
    waiting.clear();
  };
  worker.on('message', (a: { id: number; leaves?: HashedLeaf[]; error?: string }) => {
    const w = waiting.get(a.id);
    if (w === undefined) return;
    waiting.delete(a.id);
    if (a.leaves !== undefined) w.resolve(a.leaves);
    else w.fallback();
  });
  worker.on('error', fail);
  worker.on('exit', (code) => {
    if (worker !== undefined) fail(new Error(`hashing thread exited with ${code}`));
  });
  const ask = (request: Omit<LeafRequest, 'id'>, inlined: () => Promise<HashedLeaf[]>): Promise<HashedLeaf[]> => {
    const w = worker;
    if (w === undefined) return inlined();
    return new Promise<HashedLeaf[]>((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve, fallback: () => inlined().then(resolve, reject) });
      w.postMessage({ ...request, id });
    });
  };
  return {
    hash: (trust, topic, partition, messages) => ask({ trust, topic, partition, messages }, () => inline.hash(trust, topic, partition, messages)),
    close: async () => {
      const w = worker;
      worker = undefined;
      await w?.terminate();
    },
  };
};

type LogState = { frontier: Frontier; lastOffset: string | undefined; signedSize: number };

export type AuditLogWriter = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Signs a checkpoint of every held log that grew since its last one. */
  checkpoint(): Promise<StoredCheckpoint[]>;
  isRunning(): boolean;
};

/** What every writer shares: the per-log state, appending hashed leaves, signing. */
const createLogCore = (deps: Omit<AuditLogWriterDeps, 'kafka' | 'groupId' | 'codec' | 'topics'> & { producer: () => Producer | undefined }) => {
  const now = deps.now ?? (() => new Date());
  const states = new Map<string, LogState>();
  const loading = new Map<string, Promise<LogState>>();
  let signing: Promise<StoredCheckpoint[]> = Promise.resolve([]);
  /** Work on one log runs one task at a time: an append and a state reload never interleave. */
  const tails = new Map<string, Promise<unknown>>();
  const serially = <T>(log: string, task: () => Promise<T>): Promise<T> => {
    const run = (tails.get(log) ?? Promise.resolve()).then(task, task);
    const tail = run.catch(() => undefined);
    tails.set(log, tail);
    void tail.then(() => {
      if (tails.get(log) === tail) tails.delete(log);
    });
    return run;
  };

  const stateOf = async (log: string): Promise<LogState> => {
    const known = states.get(log);
    if (known !== undefined) return known;
    let p = loading.get(log);
    if (p === undefined) {
      p = (async () => {
        const head = await deps.store.logHead(log);
        const latest = (await deps.store.latestCheckpoints(log))[0];
        return { frontier: await deps.store.frontierAt(log, head.size), lastOffset: head.lastOffset, signedSize: latest?.size ?? 0 };
      })();
      loading.set(log, p);
    }
    try {
      const s = await p;
      states.set(log, s);
      return s;
    } finally {
      loading.delete(log);
    }
  };

  /**
   * The partitions held changed (a group join): every log's state is read
   * again from storage (another writer may have appended meanwhile), and every
   * held log is loaded at once, so one that gets no new record (all of it
   * logged before a crash) is still signed.
   */
  const hold = (assignment: Readonly<Record<string, readonly number[]>>): void => {
    const held = Object.entries(assignment).flatMap(([topic, partitions]) => partitions.map((p) => logIdOf(topic, p)));
    for (const log of new Set([...states.keys(), ...held])) {
      // After any append of the log still in flight, never beside it.
      void serially(log, async () => {
        states.delete(log);
        if (held.includes(log)) await stateOf(log);
      }).catch((e: unknown) => deps.log.warn({ err: e, log }, 'audit log: loading log state failed'));
    }
  };

  /**
   * Appends one partition batch: the offsets past the log's last leaf are
   * hashed (`hash` is given only those) and appended in one insert, leaves and
   * the tile nodes they complete together.
   */
  const appendBatch = <T extends { offset: string; outcome?: WriteOnceOutcome }>(topic: string, partition: number, items: readonly T[], hash: (fresh: T[]) => Promise<HashedLeaf[]>): Promise<void> => {
    const log = logIdOf(topic, partition);
    return serially(log, () => appendNow(log, items, hash));
  };
  const appendNow = async <T extends { offset: string; outcome?: WriteOnceOutcome }>(log: string, items: readonly T[], hash: (fresh: T[]) => Promise<HashedLeaf[]>): Promise<void> => {
    const state = await stateOf(log);
    const fresh = state.lastOffset === undefined ? [...items] : items.filter((m) => BigInt(m.offset) > BigInt(state.lastOffset ?? '-1'));
    if (fresh.length === 0) return;
    const hashedLeaves = await hash(fresh);
    // The lookup aid (store.ts, audit_log_refs): the sink's write-once outcome says which leaves are first copies.
    const outcomes = new Map(fresh.map((m) => [m.offset, m.outcome]));
    let frontier = state.frontier;
    const leaves: StoredLeaf[] = [];
    const created: NodeHash[] = [];
    for (const h of hashedLeaves) {
      const leafHash = new Uint8Array(h.hash);
      const outcome = outcomes.get(h.offset);
      leaves.push({ index: frontier.size, hash: leafHash, tenant: h.tenant, kind: h.kind, ref: h.ref, offset: h.offset, ...(outcome !== undefined ? { firstCopy: outcome === 'stored' || outcome === 'replay' } : {}) });
      frontier = appendLeaf(frontier, leafHash, (n) => created.push(n));
    }
    if (leaves.length === 0) return;
    await deps.store.append(log, leaves, created);
    state.frontier = frontier;
    state.lastOffset = leaves[leaves.length - 1]?.offset;
    await deps.afterAppend?.(log, frontier.size);
  };

  const signAll = async (): Promise<StoredCheckpoint[]> => {
    const out: StoredCheckpoint[] = [];
    for (const [log, s] of states) {
      if (s.frontier.size === 0 || s.frontier.size <= s.signedSize) continue;
      const size = s.frontier.size;
      const root = frontierRoot(s.frontier);
      const origin = originOf(deps.originPrefix, log);
      const note = signNote(formatCheckpoint({ origin, size, root }), deps.signer);
      const c: StoredCheckpoint = { log, origin, size, root, note, signedAt: now().toISOString() };
      await deps.store.saveCheckpoint(c);
      await deps.producer()?.send({ topic: deps.checkpointTopic, acks: -1, messages: [{ key: log, value: note }] });
      s.signedSize = Math.max(s.signedSize, size);
      out.push(c);
    }
    return out;
  };
  // One signing round at a time: the interval and stop() may ask at once.
  const checkpoint = (): Promise<StoredCheckpoint[]> => {
    signing = signing.catch(() => []).then(signAll);
    return signing;
  };
  return { hold, appendBatch, checkpoint };
};

/** Connects the checkpoint producer and the signing interval; returns how to stop them. */
const startSigning = async (kafka: Kafka, intervalMs: number, checkpoint: () => Promise<StoredCheckpoint[]>, log: Logger) => {
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const timer = setInterval(() => {
    checkpoint().catch((e: unknown) => log.warn({ err: e }, 'audit log: checkpoint failed'));
  }, intervalMs);
  timer.unref();
  return { producer, stop: () => clearInterval(timer) };
};

/** The stand-alone writer: a consumer group of its own on the audit topics, decoding them itself. */
export const createAuditLogWriter = (deps: AuditLogWriterDeps): AuditLogWriter => {
  const codec = deps.codec ?? createCodec();
  let hasher: Hasher = inlineHasher(codec);
  let consumer: Consumer | undefined;
  let signing: { producer: Producer; stop: () => void } | undefined;
  let running = false;
  let stopping = false;
  const core = createLogCore({ ...deps, producer: () => signing?.producer });

  const handleBatch = async ({ batch, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> => {
    const { topic, partition, messages } = batch;
    const last = messages[messages.length - 1];
    if (last === undefined) return;
    const trust = topic === deps.topics.sessionTrust;
    await core.appendBatch(topic, partition, messages.map((m): RawMessage => ({ offset: m.offset, value: m.value })), (fresh) => hasher.hash(trust, topic, partition, fresh));
    if (isRunning() && !isStale()) {
      await consumer?.commitOffsets([{ topic, partition, offset: (BigInt(last.offset) + 1n).toString() }]);
    }
    await heartbeat();
  };

  return {
    start: async () => {
      if (running) return;
      stopping = false;
      if (deps.hashThread !== false) hasher = threadHasher(codec, deps.log);
      signing = await startSigning(deps.kafka, deps.checkpointIntervalMs, core.checkpoint, deps.log);
      const c = deps.kafka.consumer({ groupId: deps.groupId, sessionTimeout: 10_000, heartbeatInterval: 2_000, allowAutoTopicCreation: false, maxWaitTimeInMs: 200 });
      consumer = c;
      c.on(c.events.GROUP_JOIN, (ev) => core.hold(ev.payload.memberAssignment));
      c.on(c.events.CRASH, (ev) => {
        // kafkajs restarts the consumer itself, unless stop() has begun.
        running = ev.payload.restart && !stopping;
        deps.log.error({ err: ev.payload.error }, 'audit log: consumer crashed');
      });
      await c.connect();
      await c.subscribe({ topics: [deps.topics.decisions, deps.topics.signals, deps.topics.sessionTrust], fromBeginning: true });
      await c.run({ autoCommit: false, eachBatchAutoResolve: true, partitionsConsumedConcurrently: 3, eachBatch: handleBatch });
      running = true;
      deps.log.info({ groupId: deps.groupId }, 'audit log: writing (own consumer group)');
    },
    stop: async () => {
      running = false;
      stopping = true;
      signing?.stop();
      await consumer?.disconnect();
      await core.checkpoint();
      await signing?.producer.disconnect();
      await hasher.close();
      hasher = inlineHasher(codec);
      consumer = undefined;
      signing = undefined;
    },
    checkpoint: core.checkpoint,
    isRunning: () => running,
  };
};

/**
 * The sink's write-once outcome of a record (its `StoredOutcome`): `stored` and
 * `replay` are the record's first stored copy, `duplicate` and `conflict` not.
 */
export type WriteOnceOutcome = 'stored' | 'duplicate' | 'conflict' | 'replay';
/** One partition batch the audit sink stored (its `StoredBatch`): the leaf of each accepted record, in offset order, hashed by the sink, with its write-once outcome. */
export type SinkStoredBatch = { topic: string; partition: number; records: readonly (HashedLeaf & { outcome?: WriteOnceOutcome })[] };

export type HookedAuditLogWriter = AuditLogWriter & {
  /** The sink's `onStored`: appends the batch's leaves; resolves once they are durable (the sink commits after). */
  onStored(batch: SinkStoredBatch): Promise<void>;
  /** The sink's `onAssigned`: the partitions the sink now owns. */
  onAssigned(assignment: Readonly<Record<string, readonly number[]>>): void;
};

/**
 * The writer fed by the audit sink's hook, in the sink's process: no consumer,
 * no decode and no hashing of its own. The sink hands over the leaf of every record it accepted
 * (first copies, duplicates, conflicts and replays alike) after the batch is
 * durable and before its offsets are committed, so a crash anywhere re-reads
 * the batch and hands it over again; offsets up to the log's last leaf are
 * skipped, the rest appended — the same leaves as an uninterrupted run.
 */
export const createHookedAuditLogWriter = (deps: Omit<AuditLogWriterDeps, 'groupId' | 'topics' | 'codec' | 'hashThread'>): HookedAuditLogWriter => {
  let signing: { producer: Producer; stop: () => void } | undefined;
  let running = false;
  const core = createLogCore({ ...deps, producer: () => signing?.producer });
  return {
    start: async () => {
      if (running) return;
      signing = await startSigning(deps.kafka, deps.checkpointIntervalMs, core.checkpoint, deps.log);
      running = true;
      deps.log.info('audit log: writing (from the audit sink)');
    },
    stop: async () => {
      running = false;
      signing?.stop();
      await core.checkpoint();
      await signing?.producer.disconnect();
      signing = undefined;
    },
    checkpoint: core.checkpoint,
    isRunning: () => running,
    // The sink hashed the leaves in its decoding threads; only those past the log's last leaf are appended.
    onStored: (b) => core.appendBatch(b.topic, b.partition, b.records, (fresh) => Promise.resolve(fresh)),
    onAssigned: (assignment) => core.hold(assignment),
  };
};
