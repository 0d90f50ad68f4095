// The write-once index, mirrored in memory as a Bloom filter: which
// (tenant, namespace, key) the index may hold. A chunk's ids that the filter
// has never seen are certainly not stored and skip the ClickHouse lookup;
// only the others (true copies and ~0.01 % false positives) are looked up.
//
// Why: record_ids is sorted by key and ids are random, so a lookup of a chunk
// of keys passes over nearly every granule of the index — its cost grows with
// the whole index, not with the chunk. The filter's test is a few memory
// reads per id, whatever the index holds.
//
// Staying exact beside other sink instances. Every sink instance writes
// record_ids; this filter must know every row any of them made visible
// before a chunk is judged. A plain MergeTree numbers each inserted part with
// the next value of one table-wide counter, taken under the same lock that
// makes the part visible, so parts become visible in block-number order and a
// merged part covers exactly the blocks of its sources (its name says
// `<partition>_<min>_<max>_<level>[_<mutation>]`). The filter remembers the
// highest block it has read (`watermark`); a catch-up reads, in one query
// (one snapshot of the parts), the rows of every part whose highest block is
// above it — the parts inserted since, by any instance, or merged from them —
// and no part at or below it can ever appear again. So after a catch-up the
// filter holds every row visible at that instant. A ReplicatedMergeTree numbers
// blocks per partition and a replica may fetch them out of order, and a
// Distributed table spans shards: there the filter is off (`filterSupported`)
// and every chunk is looked up as before.
//
// What is left is the race the lookup always had: two instances judging the
// same id at the same instant, each before the other's insert is visible; the
// index's reader takes the lowest (ingest time, coordinates) as the first copy.
import type { ClickHouseClient } from '@clickhouse/client';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import type { RecordIdentity } from '../../schemas/clickhouse/rows-identity.ts';
import { RECORD_IDS, type RecordNamespace } from '../../schemas/clickhouse/tables.ts';
import { randomInt } from 'node:crypto';

/**
 * False-positive rate each layer is sized for (19 bits a key before rounding). Each false positive is an id
 * looked up, and a lookup of even a few random keys reads a granule of the index per key: at 0.1 % a chunk of
 * 8,192 ids still looked up ~8 granules (measured: 88 ids over 200k decisions on a 2.2M-id index).
 */
export const FILTER_FALSE_POSITIVE = 0.0001;
/** Keys the first layer is sized for; each further layer holds twice the one before. */
export const FILTER_FIRST_LAYER_KEYS = 1 << 20;
/** A layer's bits stay addressable by a 32-bit hash. */
const MAX_LAYER_BITS = 2 ** 31;

type Layer = { bits: Uint32Array; mask: number; hashes: number; capacity: number; keys: number };

const layerFor = (capacity: number, falsePositive: number): Layer => {
  const wanted = Math.ceil((-capacity * Math.log(falsePositive)) / Math.LN2 ** 2);
  let m = 1 << 10;
  while (m < wanted && m < MAX_LAYER_BITS) m *= 2;
  // Bits are rounded up to a power of two (a mask instead of a division); the hashes stay those of the optimal
  // size, so the spare bits lower the false-positive rate rather than add probes.
  const hashes = Math.max(1, Math.round(-Math.log2(falsePositive)));
  return { bits: new Uint32Array(m / 32), mask: m - 1, hashes, capacity, keys: 0 };
};

/**
 * Two 32-bit hashes of (tenant, namespace, key) as UTF-16 code units with a
 * separator after each part, seeded per process so nobody can choose ids
 * that collide in every sink's filter: a collision only costs a lookup, never
 * a wrong verdict. Written to `pair` (no string joined, no array per call:
 * the sink hashes every id of every chunk and every index row it reads).
 */
const pair = new Uint32Array(2);
let h1 = 0;
let h2 = 0;
const mixIn = (s: string): void => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  // The separator (0x10000, past every UTF-16 code unit) keeps ("a", "bc") apart from ("ab", "c").
  h1 = Math.imul(h1 ^ 0x10000, 0x01000193);
  h2 = Math.imul(h2 ^ 0x10000, 0x5bd1e995);
  h2 ^= h2 >>> 15;
};
const hashParts = (tenant: string, namespace: string, key: string, seed1: number, seed2: number): void => {
  h1 = seed1 >>> 0;
  h2 = seed2 >>> 0;
  mixIn(tenant);
  mixIn(namespace);
  mixIn(key);
  // murmur3's finaliser on each, so every bit of the input reaches every bit of the output.
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  h2 ^= h2 >>> 16;
  h2 = Math.imul(h2, 0x85ebca6b);
  h2 ^= h2 >>> 13;
  h2 = Math.imul(h2, 0xc2b2ae35);
  h2 ^= h2 >>> 16;
  pair[0] = h1;
  pair[1] = h2 | 1;
};

export type KeyFilter = {
  add(tenant: string, namespace: RecordNamespace, key: string): void;
  /** false: certainly never added. true: added, or a false positive. */
  mightContain(tenant: string, namespace: RecordNamespace, key: string): boolean;
  keys(): number;
  bytes(): number;
};

/**
 * A scalable Bloom filter: layers of growing capacity, each sized for
 * `falsePositive`; a key is added to the newest layer, tested against all.
 */
export const createKeyFilter = (opts: { firstLayerKeys?: number; falsePositive?: number; seed?: [number, number] } = {}): KeyFilter => {
  const falsePositive = opts.falsePositive ?? FILTER_FALSE_POSITIVE;
  const [seed1, seed2] = opts.seed ?? [randomInt(2 ** 32 - 1), randomInt(2 ** 32 - 1)];
  const layers: Layer[] = [layerFor(opts.firstLayerKeys ?? FILTER_FIRST_LAYER_KEYS, falsePositive)];
  let total = 0;
  const has = (l: Layer, h1: number, h2: number): boolean => {
    for (let i = 0; i < l.hashes; i++) {
      const bit = (h1 + Math.imul(i, h2)) & l.mask;
      if (((l.bits[bit >>> 5] ?? 0) & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  };
  return {
    add: (tenant, namespace, key) => {
      hashParts(tenant, namespace, key, seed1, seed2);
      const h1 = pair[0] as number;
      const h2 = pair[1] as number;
      let l = layers[layers.length - 1] as Layer;
      if (l.keys >= l.capacity) {
        l = layerFor(l.capacity * 2, falsePositive);
        layers.push(l);
      }
      for (let i = 0; i < l.hashes; i++) {
        const bit = (h1 + Math.imul(i, h2)) & l.mask;
        const word = bit >>> 5;
        l.bits[word] = (l.bits[word] ?? 0) | (1 << (bit & 31));
      }
      l.keys++;
      total++;
    },
    mightContain: (tenant, namespace, key) => {
      hashParts(tenant, namespace, key, seed1, seed2);
      const h1 = pair[0] as number;
      const h2 = pair[1] as number;
      for (const l of layers) if (has(l, h1, h2)) return true;
      return false;
    },
    keys: () => total,
    bytes: () => layers.reduce((s, l) => s + l.bits.byteLength, 0),
  };
};

/** The highest block number of the part a row sits in, from the part's name (see the header). */
const PART_MAX_BLOCK = "toUInt64(splitByChar('_', substring(_part, length(_partition_id) + 2))[2])";

/**
 * The rows of every record_ids part whose highest block is above `watermark`,
 * with that block; the part filter prunes whole parts, so the rows read are the
 * new parts' only.
 */
const indexSinceSql = (database: string): string =>
  `SELECT tenant, namespace, record_key, ${PART_MAX_BLOCK} AS block FROM ${qualified(database, RECORD_IDS.name)}\n` + `WHERE ${PART_MAX_BLOCK} > {watermark:UInt64}`;

/** Whether record_ids numbers its parts the way the filter's catch-up relies on: a plain MergeTree on one server. */
export const filterSupported = async (client: ClickHouseClient, database: string, cluster: string | undefined): Promise<{ ok: boolean; why: string }> => {
  if (cluster !== undefined) return { ok: false, why: `record_ids spans the cluster ${cluster}` };
  const rs = await client.query({
    query: 'SELECT engine FROM system.tables WHERE database = {database:String} AND name = {table:String}',
    query_params: { database, table: RECORD_IDS.name },
    format: 'JSONEachRow',
  });
  const [row] = await rs.json<{ engine: string }>();
  if (row === undefined) return { ok: false, why: 'record_ids does not exist' };
  return row.engine === 'MergeTree' ? { ok: true, why: 'record_ids is a MergeTree' } : { ok: false, why: `record_ids is a ${row.engine}` };
};

export type CatchUp = { rows: number; watermark: number; ms: number };

/** Memory a filter may take by default: ~220M–440M ids at 0.01 %. Past it the sink looks every id up. */
export const DEFAULT_FILTER_MAX_BYTES = 1024 * 1024 * 1024;

/** Thrown by a catch-up that would take the filter past its memory budget; the filter is then of no further use. */
export class FilterOverBudget extends Error {
  constructor(readonly keys: number, readonly bytes: number, readonly budget: number) {
    super(`the write-once filter would hold more than ${keys} keys in more than ${bytes} bytes, past its budget of ${budget}`);
  }
}

export type WriteOnceFilter = {
  /** Reads every index row made visible since the last catch-up, by any instance. */
  catchUp(onProgress?: (rows: number) => void): Promise<CatchUp>;
  /** The ids the index may hold: everything else is certainly absent as of the last catch-up. */
  candidates(ids: readonly RecordIdentity[]): RecordIdentity[];
  /** Rows added so far: a row read again (its part merged with newer ones before a catch-up) counts again. */
  keys(): number;
  bytes(): number;
};

type Row = [string, string, string, string | number];

export const createWriteOnceFilter = (client: ClickHouseClient, database: string, opts: { maxBytes?: number; filter?: KeyFilter } = {}): WriteOnceFilter => {
  const filter = opts.filter ?? createKeyFilter();
  const maxBytes = opts.maxBytes ?? DEFAULT_FILTER_MAX_BYTES;
  let watermark = 0;
  const query = indexSinceSql(database);
  return {
    catchUp: async (onProgress) => {
      const started = performance.now();
      const rs = await client.query({ query, query_params: { watermark }, format: 'JSONCompactEachRow' });
      let rows = 0;
      let highest = watermark;
      for await (const batch of rs.stream<Row>()) {
        for (const r of batch) {
          const [tenant, namespace, key, block] = r.json();
          filter.add(tenant, namespace as RecordNamespace, key);
          if (filter.bytes() > maxBytes) {
            rs.close();
            throw new FilterOverBudget(filter.keys(), filter.bytes(), maxBytes);
          }
          const b = Number(block);
          if (b > highest) highest = b;
          rows++;
          if (onProgress !== undefined && rows % 1_000_000 === 0) onProgress(rows);
        }
      }
      watermark = highest;
      return { rows, watermark, ms: performance.now() - started };
    },
    candidates: (ids) => ids.filter((id) => filter.mightContain(id.tenant, id.namespace, id.key)),
    keys: () => filter.keys(),
    bytes: () => filter.bytes(),
  };
};
