// The log writer: its own consumer group on the audit topics, one Merkle log
// per topic partition, leaves in partition-offset order. The leaf index is a
// function of the partition's content alone (the count of accepted records
// before it), and the position lives in ClickHouse, not in the consumer
// offset: a batch re-read after a crash skips every offset up to the log's
// last leaf, so a restart at any point rebuilds exactly the same tree.
// Signs a checkpoint of every log it owns at an interval and on stop.
import { Worker } from 'node:worker_threads';
import type { Admin, Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { Topics } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import { hashBatch, type HashedLeaf, type RawMessage } from './leaf-batch.ts';
import { appendLeaf, frontierRoot, type Frontier, type NodeHash } from './merkle.ts';
import { formatCheckpoint, signNote, type Signer } from './note.ts';
import type { AuditLogStore, StoredCheckpoint, StoredLeaf } from './store.ts';

export const logIdOf = (topic: string, partition: number): string => `${topic}/${partition}`;
export const originOf = (prefix: string, log: string): string => `${prefix}/${log}`;

/** The checkpoint topic, created when missing (one partition: a total order of every log's checkpoints). */
export const ensureCheckpointTopic = async (admin: Admin, topic: string, replication: number): Promise<void> => {
  const existing = await admin.listTopics();
  if (!existing.includes(topic)) await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: replication }], waitForLeaders: true });
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
  /** Decode and hash in a thread of their own (default), not on the thread the sink may share in `--role all`. */
  hashThread?: boolean;
};

export type Hasher = { hash(trust: boolean, topic: string, partition: number, messages: RawMessage[]): Promise<HashedLeaf[]>; close(): Promise<void> };

export const inlineHasher = (codec: Codec): Hasher => ({ hash: (trust, topic, partition, messages) => Promise.resolve(hashBatch(codec, trust, topic, partition, messages)), close: () => Promise.resolve() });

/** The hashing thread. Run from TypeScript sources (tsx), the thread registers tsx before it loads its module. */
const startLeafWorker = (): Worker => {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = new URL(fromSource ? './leaf-worker.ts' : './leaf-worker.js', import.meta.url).href;
  if (!fromSource) return new Worker(new URL(url));
  const api = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url)}); })`, { eval: true });
};

/** One worker thread; if it cannot start or dies, the batch in flight and every later one are hashed inline (same function). */
export const threadHasher = (codec: Codec, log: Pick<Logger, 'warn'>): Hasher => {
  const inline = inlineHasher(codec);
  let worker: Worker | undefined;
  try {
    worker = startLeafWorker();
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
  return {
    hash: (trust, topic, partition, messages) => {
      const w = worker;
      if (w === undefined) return inline.hash(trust, topic, partition, messages);
      return new Promise<HashedLeaf[]>((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, fallback: () => inline.hash(trust, topic, partition, messages).then(resolve, reject) });
        w.postMessage({ id, trust, topic, partition, messages });
      });
    },
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
  /** Signs a checkpoint of every owned log that grew since its last one. */
  checkpoint(): Promise<StoredCheckpoint[]>;
  isRunning(): boolean;
};

export const createAuditLogWriter = (deps: AuditLogWriterDeps): AuditLogWriter => {
  const codec = deps.codec ?? createCodec();
  const now = deps.now ?? (() => new Date());
  const states = new Map<string, LogState>();
  let hasher: Hasher = inlineHasher(codec);
  const loading = new Map<string, Promise<LogState>>();
  let consumer: Consumer | undefined;
  let producer: Producer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let signing: Promise<StoredCheckpoint[]> = Promise.resolve([]);

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

  const handleBatch = async ({ batch, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> => {
    const { topic, partition, messages } = batch;
    const last = messages[messages.length - 1];
    if (last === undefined) return;
    const log = logIdOf(topic, partition);
    const state = await stateOf(log);
    const trust = topic === deps.topics.sessionTrust;
    let frontier = state.frontier;
    const leaves: StoredLeaf[] = [];
    const created: NodeHash[] = [];
    const fresh: RawMessage[] = [];
    for (const m of messages) {
      if (state.lastOffset !== undefined && BigInt(m.offset) <= BigInt(state.lastOffset)) continue;
      fresh.push({ offset: m.offset, value: m.value });
    }
    const hashed = fresh.length === 0 ? [] : await hasher.hash(trust, topic, partition, fresh);
    for (const h of hashed) {
      const hash = new Uint8Array(h.hash);
      leaves.push({ index: frontier.size, hash, tenant: h.tenant, kind: h.kind, ref: h.ref, offset: h.offset });
      frontier = appendLeaf(frontier, hash, (n) => created.push(n));
    }
    if (leaves.length > 0) {
      await deps.store.append(log, leaves, created);
      state.frontier = frontier;
      state.lastOffset = leaves[leaves.length - 1]?.offset;
      await deps.afterAppend?.(log, frontier.size);
    }
    if (isRunning() && !isStale()) {
      await consumer?.commitOffsets([{ topic, partition, offset: (BigInt(last.offset) + 1n).toString() }]);
    }
    await heartbeat();
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
      await producer?.send({ topic: deps.checkpointTopic, acks: -1, messages: [{ key: log, value: note }] });
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

  return {
    start: async () => {
      if (running) return;
      if (deps.hashThread !== false) hasher = threadHasher(codec, deps.log);
      producer = deps.kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const c = deps.kafka.consumer({ groupId: deps.groupId, sessionTimeout: 10_000, heartbeatInterval: 2_000, allowAutoTopicCreation: false, maxWaitTimeInMs: 200 });
      consumer = c;
      // A partition may have moved to another writer and back: its state is re-read from storage.
      // Every assigned log is loaded at once, so one that gets no new record (all of it logged before a crash) is still signed.
      c.on(c.events.GROUP_JOIN, (ev) => {
        states.clear();
        for (const [topic, partitions] of Object.entries(ev.payload.memberAssignment)) {
          for (const p of partitions) stateOf(logIdOf(topic, p)).catch((e: unknown) => deps.log.warn({ err: e, topic, partition: p }, 'audit log: loading log state failed'));
        }
      });
      c.on(c.events.CRASH, (ev) => {
        running = ev.payload.restart;
        deps.log.error({ err: ev.payload.error }, 'audit log: consumer crashed');
      });
      await c.connect();
      await c.subscribe({ topics: [deps.topics.decisions, deps.topics.signals, deps.topics.sessionTrust], fromBeginning: true });
      await c.run({ autoCommit: false, eachBatchAutoResolve: true, partitionsConsumedConcurrently: 3, eachBatch: handleBatch });
      timer = setInterval(() => {
        checkpoint().catch((e: unknown) => deps.log.warn({ err: e }, 'audit log: checkpoint failed'));
      }, deps.checkpointIntervalMs);
      timer.unref();
      running = true;
      deps.log.info({ groupId: deps.groupId }, 'audit log: writing');
    },
    stop: async () => {
      running = false;
      clearInterval(timer);
      await consumer?.disconnect();
      await checkpoint();
      await producer?.disconnect();
      await hasher.close();
      hasher = inlineHasher(codec);
      consumer = undefined;
      producer = undefined;
    },
    checkpoint,
    isRunning: () => running,
  };
};
