// Decoding off the sink's main thread. A partition batch's values travel to a
// worker thread in one transferred buffer; the worker decodes, checks the
// contract, maps rows, computes write-once identities and, for the
// tamper-evident log's hook, each record's leaf hash (./batch.ts mapBatch,
// the same function the inline path runs) and sends them back: the log's
// canonical JSON and SHA-256 run here, in parallel, beside the decoding.
// The main thread is left the ClickHouse round trips, the write-once
// judgement and the Kafka commits, so the decode of one chunk overlaps the
// insert of the one before it.
//
// The worker is pure computation and holds no state a batch depends on: if it
// cannot start or dies, the request in flight and every later one are decoded
// inline by the same function (a warning says so), and nothing is lost either
// way — offsets are committed by the main thread only after the rows are
// durable.
import type { Worker } from 'node:worker_threads';
import { DECISIONS, SIGNALS, TRUST_TRANSITIONS, type TableSpec } from '../../schemas/clickhouse/tables.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import type { HashedLeaf } from '../../schemas/audit-log/leaf-batch.ts';
import { LEAF_KINDS, type LeafKind } from '../../schemas/audit-log/leaf.ts';
import { mapBatch, type MappedBatch, type Rejected, type SinkMessage, type TableRows, type TopicRole } from './batch.ts';
import { createSinkDecoder, type SinkDecoder } from './decode.ts';
import { startModuleWorker } from '../lib/worker.ts';

/** One chunk of a partition batch: the values packed end to end, `lengths[i]` -1 for a null value. */
export type DecodeRequest = {
  id: number;
  role: TopicRole;
  topic: string;
  partition: number;
  offsets: string[];
  lengths: Int32Array;
  values: ArrayBuffer;
  /** Hash each accepted record's log leaf too (only the sink's onStored hook needs them). */
  withLeaves: boolean;
};

/** Leaves as they cross threads: the hashes end to end in one transferred buffer, the rest in parallel arrays. */
export type WireLeaves = { offsets: string[]; hashes: ArrayBuffer; tenants: string[]; kinds: Uint8Array; refs: string[] };

/** A MappedBatch as it crosses threads: tables by name; rejected records without their bytes (the caller has them). */
type WireTable = Omit<TableRows, 'table'> & { table: string };
export type DecodeAnswer =
  | { id: number; tables: WireTable[]; rejected: Rejected[]; tombstones: number; leaves: WireLeaves }
  | { id: number; error: string };

const TABLES: Record<string, TableSpec> = { [DECISIONS.name]: DECISIONS, [SIGNALS.name]: SIGNALS, [TRUST_TRANSITIONS.name]: TRUST_TRANSITIONS };

export const pack = (messages: readonly SinkMessage[]): { offsets: string[]; lengths: Int32Array; values: ArrayBuffer } => {
  const lengths = new Int32Array(messages.length);
  let total = 0;
  messages.forEach((m, i) => {
    lengths[i] = m.value === null ? -1 : m.value.length;
    total += m.value?.length ?? 0;
  });
  const values = new ArrayBuffer(total);
  const into = new Uint8Array(values);
  let at = 0;
  for (const m of messages) {
    if (m.value === null) continue;
    into.set(m.value, at);
    at += m.value.length;
  }
  return { offsets: messages.map((m) => m.offset), lengths, values };
};

export const unpack = (r: Pick<DecodeRequest, 'offsets' | 'lengths' | 'values'>): SinkMessage[] => {
  let at = 0;
  return r.offsets.map((offset, i) => {
    const n = r.lengths[i] ?? -1;
    if (n < 0) return { offset, key: null, value: null };
    const value = Buffer.from(r.values, at, n);
    at += n;
    return { offset, key: null, value };
  });
};

const HASH_BYTES = 32;

export const packLeaves = (leaves: readonly HashedLeaf[]): WireLeaves => {
  const hashes = new Uint8Array(leaves.length * HASH_BYTES);
  const kinds = new Uint8Array(leaves.length);
  leaves.forEach((l, i) => {
    if (l.hash.length !== HASH_BYTES) throw new Error(`leaf hash of offset ${l.offset} has ${l.hash.length} bytes`);
    hashes.set(l.hash, i * HASH_BYTES);
    kinds[i] = LEAF_KINDS.indexOf(l.kind);
  });
  return { offsets: leaves.map((l) => l.offset), hashes: hashes.buffer, tenants: leaves.map((l) => l.tenant), kinds, refs: leaves.map((l) => l.ref) };
};

export const unpackLeaves = (w: WireLeaves): HashedLeaf[] =>
  w.offsets.map((offset, i): HashedLeaf => {
    const kind: LeafKind | undefined = LEAF_KINDS[w.kinds[i] ?? -1];
    if (kind === undefined) throw new Error(`decode thread answered a leaf of no known kind at offset ${offset}`);
    return { offset, hash: new Uint8Array(w.hashes, i * HASH_BYTES, HASH_BYTES), tenant: w.tenants[i] ?? '', kind, ref: w.refs[i] ?? '' };
  });

/** The worker's whole job: decode one request. Keys and values of rejected records stay behind. */
export const answer = (decoder: SinkDecoder, r: DecodeRequest): DecodeAnswer => {
  const m = mapBatch(decoder, r.role, r.topic, r.partition, unpack(r), r.withLeaves);
  return {
    id: r.id,
    tables: m.tables.map((t) => ({ ...t, table: t.table.name })),
    rejected: m.rejected.map((x) => ({ ...x, key: null, value: null })),
    tombstones: m.tombstones,
    leaves: packLeaves(m.leaves),
  };
};

/** What the worker transfers rather than copies with its answer. */
export const transferables = (a: DecodeAnswer): ArrayBuffer[] => ('leaves' in a ? [a.leaves.hashes] : []);

const fromWire = (a: Extract<DecodeAnswer, { tables: WireTable[] }>): MappedBatch => ({
  tables: a.tables.map((t) => {
    const table = TABLES[t.table];
    if (table === undefined) throw new Error(`decode thread answered rows of an unknown table ${t.table}`);
    return { ...t, table };
  }),
  rejected: a.rejected,
  tombstones: a.tombstones,
  leaves: unpackLeaves(a.leaves),
});

export type BatchDecoder = {
  decode(role: TopicRole, topic: string, partition: number, messages: readonly SinkMessage[], withLeaves: boolean): Promise<MappedBatch>;
  close(): Promise<void>;
};

/** On the calling thread (tests, or a fallback): the same mapBatch, one batch at a time. */
export const inlineDecoder = (decoder: SinkDecoder = createSinkDecoder()): BatchDecoder => ({
  decode: (role, topic, partition, messages, withLeaves) => Promise.resolve(mapBatch(decoder, role, topic, partition, messages, withLeaves)),
  close: () => Promise.resolve(),
});

/** One worker thread, requests answered in order; if it cannot start or dies, decoding goes inline. */
export const threadDecoder = (log: Pick<Logger, 'warn'>): BatchDecoder => {
  const inline = inlineDecoder();
  let worker: Worker | undefined;
  try {
    worker = startModuleWorker(import.meta.url, 'decode-worker');
    worker.unref();
  } catch (e) {
    log.warn({ err: e }, 'audit sink: decoding thread did not start, decoding inline');
    return inline;
  }
  let next = 0;
  const waiting = new Map<number, { resolve: (m: MappedBatch) => void; reject: (e: unknown) => void; fallback: () => void }>();
  const fail = (e: unknown): void => {
    if (worker === undefined) return;
    log.warn({ err: e }, 'audit sink: decoding thread failed, decoding inline');
    const w = worker;
    worker = undefined;
    void w.terminate();
    for (const x of waiting.values()) x.fallback();
    waiting.clear();
  };
  worker.on('message', (a: DecodeAnswer) => {
    const x = waiting.get(a.id);
    if (x === undefined) return;
    waiting.delete(a.id);
    if ('error' in a) {
      // A throw inside mapBatch is a bug, not a record's fault: the same input inline says it on this thread.
      x.fallback();
      return;
    }
    try {
      x.resolve(fromWire(a));
    } catch (e) {
      x.reject(e);
    }
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`decoding thread exited with ${code}`)));
  return {
    decode: (role, topic, partition, messages, withLeaves) => {
      const w = worker;
      const inlined = () => inline.decode(role, topic, partition, messages, withLeaves);
      if (w === undefined) return inlined();
      const id = next++;
      return new Promise<MappedBatch>((resolve, reject) => {
        waiting.set(id, { resolve, reject, fallback: () => void inlined().then(resolve, reject) });
        const packed = pack(messages);
        const request: DecodeRequest = { id, role, topic, partition, withLeaves, ...packed };
        try {
          w.postMessage(request, [packed.values, packed.lengths.buffer as ArrayBuffer]);
        } catch (e) {
          waiting.delete(id);
          fail(new Error(`decoding thread refused a request: ${errorMessage(e)}`));
          void inlined().then(resolve, reject);
        }
      });
    },
    close: async () => {
      const w = worker;
      worker = undefined;
      for (const x of waiting.values()) x.fallback();
      waiting.clear();
      await w?.terminate();
    },
  };
};

/**
 * `threads` decoding threads, requests dealt round-robin: on a loaded host one
 * thread can fall behind the inserts it is meant to hide behind. Each answers
 * its own requests in order, and the sink awaits chunks in offset order, so
 * the order of records is the same as with one.
 */
export const threadDecoderPool = (log: Pick<Logger, 'warn'>, threads: number): BatchDecoder => {
  const pool = Array.from({ length: Math.max(1, threads) }, () => threadDecoder(log));
  let next = 0;
  return {
    decode: (role, topic, partition, messages, withLeaves) => {
      const d = pool[next++ % pool.length] ?? pool[0];
      if (d === undefined) throw new Error('decoder pool is empty');
      return d.decode(role, topic, partition, messages, withLeaves);
    },
    close: async () => {
      await Promise.all(pool.map((d) => d.close()));
    },
  };
};
