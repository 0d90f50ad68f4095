// The audit log's ClickHouse tables and every read and write on them (one
// file over 400 lines on purpose: the layout, its migrations and every
// statement on it change together).
//
// `audit_log_tree` holds two kinds of rows per log (docs/audit-log.md, "Storage"):
//   - a leaf row per leaf (`row = 'leaf'`): its index, tenant, kind, record
//     reference (a UUID as 16 bytes, any other reference as text) and Kafka
//     offset — where to look for the record, no hash;
//   - hash tiles as C2SP tlog-tiles defines them (`row = 'tile'`, height 8):
//     tile (L, N) holds the hashes of the nodes at level 8·L, indices
//     256·N … 256·N + width − 1, as one row of width × 32 bytes. A full tile
//     has width 256; the right edge is a partial tile, rewritten wider by every
//     batch that grows it (ReplacingMergeTree on `width`: merges keep the
//     widest, readers take the widest they see). A tile's first w hashes never
//     change, so any copy at least as wide as a reader needs is right.
// Any node is hashed from at most 128 hashes of one tile, so a proof or a root
// needs O(log n) tiles — at 10M leaves one level-0 tile, the right edge and
// two small upper levels — fetched in one point read, and recently used tiles
// are kept in a bounded in-process LRU. One insert per batch holds a batch's
// leaf rows and every tile it grew, so a crash leaves either all of them or none.
//
// `audit_log_refs` is a lookup aid, not evidence: one row (tenant, kind, ref →
// log, leaf index, offset) for every leaf that is not its record's first
// stored copy (a harmless duplicate, a conflicting copy). A record's leaves are
// then its first copy's (the write-once index `record_ids` says where it is;
// each level-0 tile's first offset, kept in process, says which 256 leaf rows
// to read) and those rows: O(log n), no scan of the
// references, ~0 bytes in normal traffic. Every leaf it names is read back
// from the leaf rows and must match; verify never reads it.
import type { ClickHouseClient } from '@clickhouse/client';
import { ident, qualified } from '../../schemas/clickhouse/ddl.ts';
import { RECORD_IDS } from '../../schemas/clickhouse/tables.ts';
import type { LeafKind } from '../../schemas/audit-log/leaf.ts';
import { perfectNodes, type Frontier, type Hash, type NodeHash, type NodeId } from '../../schemas/audit-log/merkle.ts';
import { hash as oneShot } from 'node:crypto';

/** Levels per tile (C2SP tlog-tiles: 8, i.e. 256 hashes a full tile). */
export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 2 ** TILE_HEIGHT;
export const TREE_TABLE = 'audit_log_tree';
export const CHECKPOINT_TABLE = 'audit_log_checkpoints';
/** The leaves that are not their record's first stored copy, by record (the lookup aid of `findLeaves`). */
export const REFS_TABLE = 'audit_log_refs';
const HASH_BYTES = 32;
/** Default bound of the in-process tile cache (a full tile counts 16 KiB with its inner levels: 4,096 tiles). */
export const DEFAULT_TILE_CACHE_BYTES = 64 * 1024 * 1024;
/** A writer reads back only the right edge of each log it appends to (a few tiles a log). */
export const WRITER_TILE_CACHE_BYTES = 8 * 1024 * 1024;

export const toHex = (h: Uint8Array): string => Buffer.from(h).toString('hex');
export const fromHex = (s: string): Hash => new Uint8Array(Buffer.from(s, 'hex'));

// A record reference that is a canonical (lower-case) UUID is stored as 16 bytes; anything else as text.
const UUID_REF = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NIL_UUID = '00000000-0000-0000-0000-000000000000';
export const isUuidRef = (ref: string): boolean => UUID_REF.test(ref) && ref !== NIL_UUID;
const refCells = (ref: string): { ref_uuid: string; ref_text: string } => (isUuidRef(ref) ? { ref_uuid: ref, ref_text: '' } : { ref_uuid: NIL_UUID, ref_text: ref });
/** The SQL that reads a reference back (the migration writes the same split). */
const REF_SQL = `if(ref_text != '' OR ref_uuid = toUUID('${NIL_UUID}'), ref_text, toString(ref_uuid))`;
const UUID_SQL = (col: string) => `match(${col}, '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$') AND ${col} != '${NIL_UUID}'`;

/**
 * `firstCopy`: whether the leaf is its record's first stored copy, when the
 * writer knows (the sink's write-once outcome); `append` records every leaf
 * that is not, and asks `record_ids` about those it is not told about.
 */
export type StoredLeaf = { index: number; hash: Hash; tenant: string; kind: LeafKind; ref: string; offset: string; firstCopy?: boolean };
export type StoredCheckpoint = { log: string; origin: string; size: number; root: Hash; note: string; signedAt: string };

/** The read settings, as a statement's SETTINGS clause (why not as per-query settings: `rows` below). */
export const READ_SETTINGS_SQL = "SETTINGS output_format_json_quote_64bit_integers = 0, date_time_output_format = 'iso'";

/**
 * What the write-once index keys a record by (schemas/clickhouse/tables.ts,
 * RECORD_NAMESPACES): decisions and signals share (tenant, event id); a trust
 * transition `session#version` is `version:session` there. Undefined for a
 * reference that cannot be a transition's (no `#version`).
 */
export const writeOnceKey = (kind: LeafKind, ref: string): { namespace: 'event' | 'trust'; key: string } | undefined => {
  if (kind !== 'trust') return { namespace: 'event', key: ref };
  const at = ref.lastIndexOf('#');
  const version = ref.slice(at + 1);
  return at < 0 || !/^\d+$/.test(version) ? undefined : { namespace: 'trust', key: `${version}:${ref.slice(0, at)}` };
};
/** The same mapping in SQL, over a leaf row's `kind` and reference (the backfill of migration 5). */
const NAMESPACE_SQL = "if(kind = 'trust', 'trust', 'event')";
const KEY_SQL = (ref: string) => `if(kind = 'trust', concat(splitByChar('#', ${ref})[-1], ':', substring(${ref}, 1, length(${ref}) - length(splitByChar('#', ${ref})[-1]) - 1)), ${ref})`;
/** Keys per write-once lookup of a batch (query parameters travel in the URL of an HTTP server). */
const FIRST_COPY_CHUNK = 2000;
/**
 * Min-max skip index on the leaf rows' Kafka offset. A log's leaf rows are
 * stored in leaf-index order and the offset grows with the leaf index, so the
 * granules' ranges do not overlap: the leaf at (log, offset) is one granule
 * (1,024 rows) read, whatever the log's size. ~16 B a granule. The request
 * path narrows by leaf index first (`tileOfOffset`); the index serves the
 * open-ended last tile there and any other read by offset.
 */
export const OFFSET_INDEX = 'leaf_offset_minmax';

/**
 * A tile in the cache: its hashes (level 0 of the tile) and, computed on first
 * use, the complete nodes of each level above inside it (level k: one per 2^k
 * hashes), so a proof hashes nothing twice.
 */
type Tile = { levels: Uint8Array[] };
const tileWidth = (t: Tile): number => (t.levels[0]?.length ?? 0) / HASH_BYTES;
/** Tile-relative level k of a tile (computing the levels up to it once). */
const tileLevel = (t: Tile, k: number): Uint8Array => {
  for (let j = t.levels.length; j <= k; j++) {
    const below = t.levels[j - 1] as Uint8Array;
    const n = Math.floor(below.length / (2 * HASH_BYTES));
    const out = new Uint8Array(n * HASH_BYTES);
    const pair = new Uint8Array(1 + 2 * HASH_BYTES);
    pair[0] = 1;
    for (let i = 0; i < n; i++) {
      pair.set(below.subarray(2 * i * HASH_BYTES, (2 * i + 2) * HASH_BYTES), 1);
      out.set(sha256(pair), i * HASH_BYTES);
    }
    t.levels.push(out);
  }
  return t.levels[k] as Uint8Array;
};
const sha256 = (b: Uint8Array): Uint8Array => oneShot('sha256', b, 'buffer');

const INSERT_COLUMNS = ['log', 'row', 'level', 'idx', 'width', 'tenant', 'kind', 'ref_uuid', 'ref_text', 'kafka_offset', 'hashes_hex'] as const;
type InsertRow = { log: string; row: 'leaf' | 'tile'; level: number; idx: number; width: number; tenant: string; kind: string; ref_uuid: string; ref_text: string; kafka_offset: string; hashes_hex: string };

export const createAuditLogStore = (client: ClickHouseClient, database: string, o: { tileCacheBytes?: number } = {}) => {
  const tree = qualified(database, TREE_TABLE);
  const checkpoints = qualified(database, CHECKPOINT_TABLE);
  const refs = qualified(database, REFS_TABLE);
  const recordIds = qualified(database, RECORD_IDS.name);
  const cacheLimit = o.tileCacheBytes ?? DEFAULT_TILE_CACHE_BYTES;

  /**
   * A read. Its settings go in the statement's SETTINGS clause, not as the
   * client's per-query settings: the embedded engine applies those with a SET
   * on its session and resets them with a second statement after the query
   * (services/lib/clickhouse.ts) — two engine calls a read instead of one, on
   * every read of a proof's request path.
   */
  const rows = async <T>(query: string, params: Record<string, unknown> = {}): Promise<T[]> => {
    const rs = await client.query({ query: `${query}\n${READ_SETTINGS_SQL}`, query_params: params, format: 'JSONEachRow' });
    return rs.json<T>();
  };

  const treeDdl = (name: string) => `CREATE TABLE IF NOT EXISTS ${name} (
        log LowCardinality(String),
        row Enum8('leaf' = 1, 'tile' = 2),
        level UInt8,
        idx UInt64 CODEC(Delta, ZSTD(1)),
        width UInt16,
        tenant LowCardinality(String),
        kind LowCardinality(String),
        ref_uuid UUID CODEC(NONE),
        ref_text String CODEC(ZSTD(1)),
        kafka_offset UInt64 CODEC(Delta, ZSTD(1)),
        hashes_hex String EPHEMERAL,
        hashes String DEFAULT unhex(hashes_hex) CODEC(NONE),
        INDEX ${OFFSET_INDEX} kafka_offset TYPE minmax GRANULARITY 1
      ) ENGINE = ReplacingMergeTree(width) ORDER BY (log, row, level, idx)
      SETTINGS index_granularity = 1024, index_granularity_bytes = 16384`;

  // One row per leaf that is not its record's first stored copy; a row written twice (a batch appended
  // again after a crash) collapses on merge, and readers take each leaf once.
  const refsDdl = (name: string) => `CREATE TABLE IF NOT EXISTS ${name} (
        tenant LowCardinality(String),
        kind LowCardinality(String),
        record_ref String,
        log LowCardinality(String),
        idx UInt64,
        kafka_offset UInt64
      ) ENGINE = ReplacingMergeTree ORDER BY (tenant, kind, record_ref, log, idx)`;

  const exists = async (name: string): Promise<boolean> =>
    (await rows<{ n: number }>('SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = {name:String}', { db: database, name }))[0]?.n !== 0;
  // The write-once index is the sink's (its migrations create it): a writer or an API may start before it exists.
  let idsExist = false;
  const hasRecordIds = async (): Promise<boolean> => (idsExist ||= await exists(RECORD_IDS.name));

  /** Active parts of the tree table that hold rows but no skip-index data (written before migration 4). */
  const unindexedParts = async (): Promise<number> =>
    Number(
      (
        await rows<{ n: number }>(
          'SELECT count() AS n FROM system.parts WHERE database = {db:String} AND table = {name:String} AND active AND rows > 0 AND secondary_indices_compressed_bytes = 0',
          { db: database, name: TREE_TABLE },
        )
      )[0]?.n ?? 0,
    );

  const ensureTables = async (): Promise<void> => {
    await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${ident(database)}` });
    const hasHashColumn = async (name: string): Promise<boolean> =>
      (await rows<{ n: number }>("SELECT count() AS n FROM system.columns WHERE database = {db:String} AND table = {name:String} AND name = 'hash'", { db: database, name }))[0]?.n !== 0;
    // Migration 3: a tree table of an earlier version (one row per stored hash, `hash UInt256`, nodes at
    // every 4th level) is rebuilt into leaf rows and tiles in a new table, which is then swapped in. A
    // crash before the swap leaves the old table in place (the copy is redone); one between the two
    // renames is finished here.
    const next = qualified(database, `${TREE_TABLE}_next`);
    const old = qualified(database, `${TREE_TABLE}_old`);
    const current = await exists(TREE_TABLE);
    if (!current && (await exists(`${TREE_TABLE}_next`))) await client.command({ query: `RENAME TABLE ${next} TO ${tree}` });
    else if (current && (await hasHashColumn(TREE_TABLE))) {
      await client.command({ query: `DROP TABLE IF EXISTS ${next}` });
      await client.command({ query: treeDdl(next) });
      await client.command({
        query: `INSERT INTO ${next} (log, row, level, idx, width, tenant, kind, ref_uuid, ref_text, kafka_offset)
          SELECT log, 'leaf', 0, idx, 0, tenant, kind, if(${UUID_SQL('ref')}, toUUID(ref), toUUID('${NIL_UUID}')), if(${UUID_SQL('ref')}, '', ref), kafka_offset
          FROM ${tree} WHERE level = 0 ORDER BY log, idx LIMIT 1 BY log, idx`,
      });
      // Tile (L, N): the stored hashes of level 8L, indices 256N…, in order (a copy not merged yet counted
      // once), each as its 32 big-endian bytes (through hex: a string of bytes would drop a hash's trailing zeros).
      await client.command({
        query: `INSERT INTO ${next} (log, row, level, idx, width, hashes)
          SELECT log, 'tile', intDiv(level, ${TILE_HEIGHT}), intDiv(idx, ${TILE_WIDTH}), count(),
                 unhex(arrayStringConcat(arrayMap(x -> hex(reverse(reinterpretAsFixedString(x.2))), arraySort(x -> x.1, groupArray((idx, hash))))))
          FROM (SELECT log, level, idx, any(hash) AS hash FROM ${tree} WHERE level % ${TILE_HEIGHT} = 0 GROUP BY log, level, idx)
          GROUP BY log, level, intDiv(idx, ${TILE_WIDTH})`,
      });
      await client.command({ query: `RENAME TABLE ${tree} TO ${old}` });
      await client.command({ query: `RENAME TABLE ${next} TO ${tree}` });
    }
    await client.command({ query: `DROP TABLE IF EXISTS ${old}` });
    await client.command({ query: `DROP TABLE IF EXISTS ${qualified(database, `${TREE_TABLE}_v1`)}` });
    await client.command({ query: treeDdl(tree) });
    // Migration 4: a tree table made before the offset index gets it, and every part written before is
    // indexed (a mutation, waited for). A crash after the ADD leaves parts without it: those are still
    // read correctly (a part without the index is scanned) and are indexed at the next start.
    await client.command({ query: `ALTER TABLE ${tree} ADD INDEX IF NOT EXISTS ${OFFSET_INDEX} kafka_offset TYPE minmax GRANULARITY 1` });
    if (await unindexedParts()) await client.command({ query: `ALTER TABLE ${tree} MATERIALIZE INDEX ${OFFSET_INDEX}`, clickhouse_settings: { mutations_sync: '2' } });
    // Migration 5: the lookup aid of a store made before it, filled in a table of its own that is then
    // renamed into place — so its existence means "complete". Every leaf the write-once index does not
    // name as a first copy gets a row (all of them when there is no index). A crash before the rename
    // leaves no table: the fill is redone at the next start.
    const refsNext = qualified(database, `${REFS_TABLE}_next`);
    if (!(await exists(REFS_TABLE))) {
      await client.command({ query: `DROP TABLE IF EXISTS ${refsNext}` });
      await client.command({ query: refsDdl(refsNext) });
      const firstCopies = (await hasRecordIds())
        ? `LEFT ANTI JOIN (SELECT DISTINCT tenant, namespace, record_key, concat(kafka_topic, '/', toString(kafka_partition)) AS log, kafka_offset FROM ${recordIds}) AS f
           ON l.tenant = f.tenant AND l.namespace = f.namespace AND l.record_key = f.record_key AND l.log = f.log AND l.kafka_offset = f.kafka_offset`
        : '';
      await client.command({
        query: `INSERT INTO ${refsNext} (tenant, kind, record_ref, log, idx, kafka_offset)
          SELECT l.tenant, l.kind, l.ref, l.log, l.idx, l.kafka_offset
          FROM (SELECT log, idx, tenant, kind, ref, kafka_offset, ${NAMESPACE_SQL} AS namespace, ${KEY_SQL('ref')} AS record_key
                FROM (SELECT log, idx, tenant, kind, ${REF_SQL} AS ref, kafka_offset FROM ${tree} WHERE row = 'leaf' ORDER BY log, idx LIMIT 1 BY log, idx)) AS l
          ${firstCopies}`,
      });
      await client.command({ query: `RENAME TABLE ${refsNext} TO ${refs}` });
    }
    await client.command({ query: `DROP TABLE IF EXISTS ${refsNext}` });
    await client.command({
      query: `CREATE TABLE IF NOT EXISTS ${checkpoints} (
        log LowCardinality(String),
        origin String,
        size UInt64,
        root_hex String,
        note String,
        signed_at DateTime64(3, 'UTC')
      ) ENGINE = ReplacingMergeTree ORDER BY (log, size)`,
    });
  };

  // ---- tiles: a bounded LRU in process, one point read for what it misses ----
  /** Tiles by `log \0 level/idx`, each the widest copy seen; oldest use evicted first. A tile counts twice its hashes (its inner levels). */
  const cache = new Map<string, Tile>();
  let cacheBytes = 0;
  /** Tiles wanted, served from the cache, and read from ClickHouse (queries, rows, ms in those queries), since the store was made. */
  const reads = { wanted: 0, cached: 0, queries: 0, rows: 0, queryMs: 0 };
  const tileKey = (log: string, level: number, idx: number): string => `${log}\u0000${level}/${idx}`;
  const cost = (t: Tile): number => 2 * tileWidth(t) * HASH_BYTES;
  const cacheGet = (key: string, width: number): Tile | undefined => {
    const t = cache.get(key);
    if (t === undefined || tileWidth(t) < width) return undefined;
    cache.delete(key);
    cache.set(key, t);
    return t;
  };
  const cachePut = (key: string, t: Tile): void => {
    const had = cache.get(key);
    if (had !== undefined) {
      if (tileWidth(had) >= tileWidth(t)) return;
      cache.delete(key);
      cacheBytes -= cost(had);
    }
    if (cost(t) > cacheLimit) return;
    cache.set(key, t);
    cacheBytes += cost(t);
    for (const [k, v] of cache) {
      if (cacheBytes <= cacheLimit) break;
      cache.delete(k);
      cacheBytes -= cost(v);
    }
  };
  const tileOf = (bytes: Uint8Array): Tile => ({ levels: [bytes] });

  type TileWant = { level: number; idx: number; width: number };
  /** The tiles wanted, each at least `width` hashes wide: from the cache, every missing one in one point read. */
  const tiles = async (log: string, want: readonly TileWant[]): Promise<Map<string, Tile>> => {
    const out = new Map<string, Tile>();
    const missing = new Map<string, TileWant>();
    for (const w of want) {
      const key = tileKey(log, w.level, w.idx);
      const had = out.get(key);
      const need = Math.max(w.width, missing.get(key)?.width ?? 0);
      if (had !== undefined && tileWidth(had) >= need) continue;
      reads.wanted++;
      const t = cacheGet(key, need);
      if (t !== undefined) {
        reads.cached++;
        out.set(key, t);
        missing.delete(key);
      } else missing.set(key, { ...w, width: need });
    }
    if (missing.size === 0) return out;
    const params: Record<string, unknown> = { log };
    const where = [...missing.values()].map((w, n) => {
      params[`l${n}`] = w.level;
      params[`i${n}`] = w.idx;
      return `(level = {l${n}:UInt8} AND idx = {i${n}:UInt64})`;
    });
    const t0 = performance.now();
    // No per-query settings: one engine call, not two (see rows).
    const rs = await client.query({
      query: `SELECT level, idx, hex(hashes) AS h FROM ${tree} WHERE log = {log:String} AND row = 'tile' AND (${where.join(' OR ')})`,
      query_params: params,
      format: 'JSONCompactEachRow',
    });
    const found = await rs.json<[number, number | string, string]>();
    reads.queryMs += performance.now() - t0;
    reads.queries++;
    reads.rows += found.length;
    for (const [level, idx, hex] of found) {
      const key = tileKey(log, Number(level), Number(idx));
      const t = tileOf(new Uint8Array(Buffer.from(hex, 'hex')));
      cachePut(key, t);
      const had = out.get(key);
      if (had === undefined || tileWidth(t) > tileWidth(had)) out.set(key, t);
    }
    for (const [key, w] of missing) {
      const t = out.get(key);
      if (t === undefined || tileWidth(t) < w.width) {
        throw new Error(`audit log ${log}: tile ${w.level}/${w.idx} holds ${t === undefined ? 0 : tileWidth(t)} of the ${w.width} hashes needed`);
      }
    }
    return out;
  };

  /** Where a perfect subtree's hashes lie: tile (L, N), positions [pos, pos + span) of it. */
  const placeOf = (id: NodeId) => {
    const level = Math.floor(id.level / TILE_HEIGHT);
    const span = 2 ** (id.level - level * TILE_HEIGHT);
    const first = id.index * span;
    const idx = Math.floor(first / TILE_WIDTH);
    return { level, idx, pos: first - idx * TILE_WIDTH, span, inner: id.level - level * TILE_HEIGHT };
  };

  /** Each node hashed from the tile that holds it (the tiles from the cache, else one point read). */
  const nodes = async (log: string, ids: readonly NodeId[]): Promise<Map<string, Hash>> => {
    const out = new Map<string, Hash>();
    if (ids.length === 0) return out;
    const places = ids.map((id) => ({ id, ...placeOf(id) }));
    const got = await tiles(log, places.map((p) => ({ level: p.level, idx: p.idx, width: p.pos + p.span })));
    for (const p of places) {
      const t = got.get(tileKey(log, p.level, p.idx));
      if (t === undefined) throw new Error(`audit log ${log}: tile ${p.level}/${p.idx} was not read`);
      const at = p.pos / p.span;
      out.set(`${p.id.level}/${p.id.index}`, tileLevel(t, p.inner).slice(at * HASH_BYTES, (at + 1) * HASH_BYTES));
    }
    return out;
  };

  /**
   * One atomic insert: a batch's leaf rows and every tile its new nodes grew
   * (`nodes` as `appendLeaf` reports them, leaves included; those at a tile
   * level are stored). A tile already partly stored is rewritten wider, its
   * stored prefix read through the cache.
   */
  const append = async (log: string, leaves: readonly StoredLeaf[], created: readonly NodeHash[]): Promise<void> => {
    const grown = new Map<string, { level: number; idx: number; first: number; hashes: NodeHash[] }>();
    for (const n of created) {
      if (n.level % TILE_HEIGHT !== 0) continue;
      const level = n.level / TILE_HEIGHT;
      const idx = Math.floor(n.index / TILE_WIDTH);
      const key = tileKey(log, level, idx);
      let g = grown.get(key);
      if (g === undefined) grown.set(key, (g = { level, idx, first: n.index - idx * TILE_WIDTH, hashes: [] }));
      g.hashes.push(n);
    }
    const prefixes = await tiles(log, [...grown.values()].filter((g) => g.first > 0).map((g) => ({ level: g.level, idx: g.idx, width: g.first })));
    const written: [string, Tile][] = [];
    const values: InsertRow[] = leaves.map((l) => ({ log, row: 'leaf', level: 0, idx: l.index, width: 0, tenant: l.tenant, kind: l.kind, ...refCells(l.ref), kafka_offset: l.offset, hashes_hex: '' }));
    for (const [key, g] of grown) {
      const width = g.first + g.hashes.length;
      const t = new Uint8Array(width * HASH_BYTES);
      const prefix = prefixes.get(key)?.levels[0];
      if (g.first > 0) t.set((prefix ?? new Uint8Array()).subarray(0, g.first * HASH_BYTES));
      g.hashes.forEach((n, i) => {
        if (n.index !== g.idx * TILE_WIDTH + g.first + i) throw new Error(`audit log ${log}: nodes of tile ${g.level}/${g.idx} are not contiguous`);
        t.set(n.hash, (g.first + i) * HASH_BYTES);
      });
      values.push({ log, row: 'tile', level: g.level, idx: g.idx, width, tenant: '', kind: '', ref_uuid: NIL_UUID, ref_text: '', kafka_offset: '0', hashes_hex: toHex(t) });
      written.push([key, tileOf(t)]);
    }
    if (values.length === 0) return;
    // The lookup aid before the leaves: a crash in between leaves rows naming leaves not appended yet.
    // The batch handed over again appends the same leaves at the same indices and writes the rows again;
    // should it never come, findLeaves drops a row whose leaf row does not match it.
    const others = await notFirstCopies(log, leaves);
    if (others.length > 0) {
      await client.insert({ table: refs, values: others.map((l) => ({ tenant: l.tenant, kind: l.kind, record_ref: l.ref, log, idx: l.index, kafka_offset: l.offset })), format: 'JSONEachRow' });
    }
    await client.insert({ table: tree, columns: [...INSERT_COLUMNS], values, format: 'JSONEachRow' });
    for (const [key, t] of written) cachePut(key, t);
  };

  /**
   * The leaves of a batch that are not their record's first stored copy: those
   * the writer says are not, and of those it says nothing about (the
   * stand-alone writer) every one the write-once index does not name at its
   * own coordinates — so one not stored yet (the sink behind the writer) gets
   * a row too. A row too many costs bytes, never an answer.
   */
  const notFirstCopies = async (log: string, leaves: readonly StoredLeaf[]): Promise<StoredLeaf[]> => {
    const unknown = leaves.filter((l) => l.firstCopy === undefined);
    const proven = new Set<number>();
    if (unknown.length > 0 && (await hasRecordIds())) {
      const at = log.lastIndexOf('/');
      const topic = log.slice(0, at);
      const partition = Number(log.slice(at + 1));
      const idOf = (tenant: string, namespace: string, key: string, offset: string) => `${tenant}\u0000${namespace}\u0000${key}\u0000${offset}`;
      for (let i = 0; i < unknown.length; i += FIRST_COPY_CHUNK) {
        const chunk = unknown.slice(i, i + FIRST_COPY_CHUNK).flatMap((l) => {
          const k = writeOnceKey(l.kind, l.ref);
          return k === undefined ? [] : [{ l, ...k }];
        });
        if (chunk.length === 0) continue;
        const found = await rows<{ tenant: string; namespace: string; record_key: string; kafka_offset: string | number }>(
          `SELECT tenant, namespace, record_key, kafka_offset FROM ${recordIds}
           WHERE namespace IN {ns:Array(String)} AND tenant IN {tenants:Array(String)} AND record_key IN {keys:Array(String)}
             AND kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32}`,
          { ns: [...new Set(chunk.map((c) => c.namespace))], tenants: [...new Set(chunk.map((c) => c.l.tenant))], keys: [...new Set(chunk.map((c) => c.key))], topic, partition },
        );
        const first = new Set(found.map((r) => idOf(r.tenant, r.namespace, r.record_key, String(r.kafka_offset))));
        for (const c of chunk) if (first.has(idOf(c.l.tenant, c.namespace, c.key, c.l.offset))) proven.add(c.l.index);
      }
    }
    return leaves.filter((l) => l.firstCopy === false || (l.firstCopy === undefined && !proven.has(l.index)));
  };

  /** Size of a log and the Kafka offset of its last leaf (none when empty). */
  const logHead = async (log: string): Promise<{ size: number; lastOffset: string | undefined }> => {
    const [r] = await rows<{ n: number; size: number; last: string | number }>(
      `SELECT count() AS n, max(idx) + 1 AS size, argMax(kafka_offset, idx) AS last FROM ${tree} WHERE log = {log:String} AND row = 'leaf'`,
      { log },
    );
    if (r === undefined || Number(r.n) === 0) return { size: 0, lastOffset: undefined };
    return { size: Number(r.size), lastOffset: String(r.last) };
  };

  /**
   * Loads into the cache the tiles every proof against a log's latest
   * checkpoint reads whatever the leaf: the upper levels (highest first, up to
   * half the cache) and the level-0 tiles from that checkpoint's right edge on.
   * The API calls it when it starts, so no request pays for it.
   */
  const warm = async (only?: string): Promise<{ logs: number; tiles: number }> => {
    const latest = new Map((await latestCheckpoints(only)).map((c) => [c.log, c.size]));
    // A log not signed yet: from its head.
    for (const log of only !== undefined ? [only] : await logs()) if (!latest.has(log)) latest.set(log, (await logHead(log)).size);
    const cap = Math.max(1, Math.floor(cacheLimit / 2 / (TILE_WIDTH * HASH_BYTES)));
    let loaded = 0;
    for (const [log, size] of latest) {
      const found = await rows<{ level: number; idx: number; h: string }>(
        `SELECT level, idx, hex(hashes) AS h FROM ${tree} WHERE log = {log:String} AND row = 'tile' AND (level >= 1 OR idx >= {edge:UInt64})
         ORDER BY level DESC, idx DESC, width DESC LIMIT 1 BY level, idx LIMIT {cap:UInt64}`,
        { log, edge: Math.floor(size / TILE_WIDTH), cap },
      );
      for (const r of found) cachePut(tileKey(log, Number(r.level), Number(r.idx)), tileOf(new Uint8Array(Buffer.from(r.h, 'hex'))));
      loaded += found.length;
      await extendTileStarts(log);
    }
    return { logs: latest.size, tiles: loaded };
  };

  /** A node reader for merkle.hashRange over a prefetched map. */
  const nodeFrom = (m: Map<string, Hash>) => (id: NodeId): Hash => {
    const h = m.get(`${id.level}/${id.index}`);
    if (h === undefined) throw new Error(`node ${id.level}/${id.index} was not fetched`);
    return h;
  };

  /** The frontier of a log at `size`, from storage (a writer's state after a restart). */
  const frontierAt = async (log: string, size: number): Promise<Frontier> => {
    const ids = perfectNodes({ begin: 0, end: size });
    const m = await nodes(log, ids);
    return { size, nodes: ids.map((id) => ({ ...id, hash: nodeFrom(m)(id) })) };
  };

  /** The level-0 hashes of [from, to) read from the store itself (never the cache): verify's view. */
  const storedLeafHashes = async (log: string, from: number, to: number | undefined): Promise<Map<number, Uint8Array>> => {
    const found = await rows<{ idx: number; h: string }>(
      `SELECT idx, hex(hashes) AS h FROM ${tree} WHERE log = {log:String} AND row = 'tile' AND level = 0 AND idx >= {a:UInt64}${to !== undefined ? ' AND idx < {b:UInt64}' : ''}
       ORDER BY idx, width DESC LIMIT 1 BY idx`,
      { log, a: Math.floor(from / TILE_WIDTH), b: to !== undefined ? Math.ceil(to / TILE_WIDTH) : undefined },
    );
    return new Map(found.map((r) => [Number(r.idx), new Uint8Array(Buffer.from(r.h, 'hex'))]));
  };
  const NO_HASH = new Uint8Array(HASH_BYTES);
  /** A leaf's hash out of its tile; a leaf row no stored tile covers gets 32 zero bytes (no root can match it). */
  const hashIn = (t: Map<number, Uint8Array>, index: number): Hash => {
    const tile = t.get(Math.floor(index / TILE_WIDTH));
    const pos = (index % TILE_WIDTH) * HASH_BYTES;
    return tile !== undefined && tile.length >= pos + HASH_BYTES ? tile.slice(pos, pos + HASH_BYTES) : NO_HASH.slice();
  };

  type LeafRow = { log: string; idx: number; tenant: string; kind: LeafKind; ref: string; kafka_offset: string | number };
  const LEAF_COLUMNS = `log, idx, tenant, kind, ${REF_SQL} AS ref, kafka_offset`;
  const leafOf = (r: LeafRow, hash: Hash): StoredLeaf => ({ index: Number(r.idx), hash, tenant: r.tenant, kind: r.kind, ref: r.ref, offset: String(r.kafka_offset) });

  /** Every leaf row of [from, to) with its hash from the stored level-0 tiles. */
  const leaves = async (log: string, from = 0, to?: number): Promise<StoredLeaf[]> => {
    const found = await rows<LeafRow>(
      `SELECT ${LEAF_COLUMNS} FROM ${tree}
       WHERE log = {log:String} AND row = 'leaf' AND idx >= {from:UInt64}${to !== undefined ? ' AND idx < {to:UInt64}' : ''}
       ORDER BY idx LIMIT 1 BY idx`,
      { log, from, to },
    );
    const t = await storedLeafHashes(log, from, to);
    return found.map((r) => leafOf(r, hashIn(t, Number(r.idx))));
  };

  // ---- which level-0 tile holds the leaf of an offset: each tile's first offset, per log, in process ----
  /**
   * A log's leaf rows are in leaf-index order and the offset grows with the
   * index, so the offsets of leaves 0, 256, 512, … (each level-0 tile's first
   * leaf) say which tile's 256 leaves hold the leaf of any offset: a read of
   * those leaf rows by primary key, instead of the offset index evaluated over
   * every granule of the log. One entry a tile (~40,000 at 10M leaves, ~1 MB in process), loaded by
   * `warm` or on first use and extended from its end when an offset lies past
   * it. A lookup aid like the rest: nothing is found where the map does not
   * point (verify, which reads every leaf, would report such a store anyway).
   */
  const tileStarts = new Map<string, bigint[]>();
  const extendTileStarts = async (log: string): Promise<bigint[]> => {
    const have = tileStarts.get(log) ?? [];
    const found = await rows<{ idx: number | string; o: number | string }>(
      `SELECT idx, kafka_offset AS o FROM ${tree} WHERE log = {log:String} AND row = 'leaf' AND idx >= {from:UInt64} AND idx % ${TILE_WIDTH} = 0 ORDER BY idx LIMIT 1 BY idx`,
      { log, from: have.length * TILE_WIDTH },
    );
    const next = [...have];
    // A tile whose first leaf row is missing ends the map: offsets past it fall in its last, open-ended tile.
    for (const r of found) {
      if (Number(r.idx) !== next.length * TILE_WIDTH) break;
      next.push(BigInt(String(r.o)));
    }
    tileStarts.set(log, next);
    return next;
  };
  /** The level-0 tile whose leaves would hold the leaf at `offset` (`open`: the last known one, whose leaves run on). */
  const tileOfOffset = async (log: string, offset: string): Promise<{ n: number; open: boolean } | undefined> => {
    const o = BigInt(offset);
    let starts = tileStarts.get(log) ?? [];
    const last = starts[starts.length - 1];
    if (last === undefined || o >= last) starts = await extendTileStarts(log);
    if (starts.length === 0 || o < (starts[0] ?? 0n)) return undefined;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((starts[mid] ?? 0n) <= o) lo = mid;
      else hi = mid - 1;
    }
    return { n: lo, open: lo === starts.length - 1 };
  };

  type Where = { log: string } & ({ by: 'idx'; idx: number } | { by: 'offset'; offset: string });
  /**
   * The leaf rows of one record at these places (by leaf index, or by Kafka
   * offset within the tile `tileOfOffset` names), with the record's tenant,
   * kind and reference as conditions, and in the same statement the level-0
   * tile of each (unless cached), which goes to the cache for the leaf's hash
   * and its proof: one engine call for rows and hashes.
   */
  const leafRowsAt = async (places: readonly Where[], tenant: string | undefined, kind: LeafKind, ref: string): Promise<LeafRow[]> => {
    const params: Record<string, unknown> = { kind, ref, tenant };
    const match = `AND kind = {kind:String} AND ${refCondition(ref)}${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''}`;
    const branches: string[] = [];
    const tilesWanted = new Set<string>();
    for (const [n, p] of places.entries()) {
      params[`log${n}`] = p.log;
      let range: string;
      let tile: number | undefined;
      if (p.by === 'idx') {
        params[`i${n}`] = p.idx;
        range = `idx = {i${n}:UInt64}`;
        tile = Math.floor(p.idx / TILE_WIDTH);
      } else {
        const t = await tileOfOffset(p.log, p.offset);
        if (t === undefined) continue;
        params[`a${n}`] = t.n * TILE_WIDTH;
        params[`b${n}`] = (t.n + 1) * TILE_WIDTH;
        params[`o${n}`] = p.offset;
        range = `idx >= {a${n}:UInt64}${t.open ? '' : ` AND idx < {b${n}:UInt64}`} AND kafka_offset = {o${n}:UInt64}`;
        // The open tile may have grown past what the map knows: its leaf's tile is read when its index is known.
        tile = t.open ? undefined : t.n;
      }
      branches.push(`SELECT 'leaf' AS part, ${LEAF_COLUMNS}, '' AS h FROM ${tree} WHERE log = {log${n}:String} AND row = 'leaf' AND ${range} ${match}`);
      if (tile !== undefined && !cache.has(tileKey(p.log, 0, tile)) && !tilesWanted.has(tileKey(p.log, 0, tile))) {
        tilesWanted.add(tileKey(p.log, 0, tile));
        params[`t${n}`] = tile;
        branches.push(`SELECT 'tile', log, idx, '', '', '', toUInt64(0), hex(hashes) FROM ${tree} WHERE log = {log${n}:String} AND row = 'tile' AND level = 0 AND idx = {t${n}:UInt64}`);
      }
    }
    if (branches.length === 0) return [];
    const found = await rows<LeafRow & { part: 'leaf' | 'tile'; h: string }>(branches.join('\n UNION ALL '), params);
    const leafRows = new Map<string, LeafRow>();
    for (const r of found) {
      if (r.part === 'tile') cachePut(tileKey(r.log, 0, Number(r.idx)), tileOf(new Uint8Array(Buffer.from(r.h, 'hex'))));
      else leafRows.set(`${r.log}\u0000${Number(r.idx)}`, r);
    }
    // (log, index) order, as ClickHouse orders them (bytes, then number).
    return [...leafRows.values()].sort((x, y) => Buffer.compare(Buffer.from(x.log), Buffer.from(y.log)) || Number(x.idx) - Number(y.idx));
  };

  const refCondition = (ref: string): string => (isUuidRef(ref) ? 'ref_uuid = {ref:UUID}' : 'ref_text = {ref:String}');
  /** The leaves found, each with its hash from its level-0 tile (the tiles of a log in one point read, or the cache). */
  const withHashes = async (found: readonly LeafRow[]): Promise<(StoredLeaf & { log: string })[]> => {
    const byLog = new Map<string, LeafRow[]>();
    for (const r of found) byLog.set(r.log, [...(byLog.get(r.log) ?? []), r]);
    const hashes = new Map<string, Map<string, Hash>>();
    for (const [log, rs] of byLog) hashes.set(log, await nodes(log, rs.map((r) => ({ level: 0, index: Number(r.idx) }))));
    return found.map((r) => ({ ...leafOf(r, hashes.get(r.log)?.get(`0/${Number(r.idx)}`) ?? NO_HASH.slice()), log: r.log }));
  };

  /**
   * The leaves of one record (in (log, index) order): a decision or signal by
   * event id, a transition by session#version. O(log n), two point reads:
   * where its copies are (the write-once index keeps the first stored copy's
   * coordinates, the lookup aid every other leaf's, both by primary key), then
   * the leaf rows there (the first copy's among the 256 leaves of the tile its
   * offset falls in, the others' by leaf index) with their level-0 tiles in
   * the same statement (`leafRowsAt`). Each leaf
   * row is read with the record's tenant, kind and reference as conditions,
   * so an aid row naming another record's leaf finds nothing. The same answer
   * as `scanLeaves` (test/integration/audit-log-lookup.test.ts).
   */
  const findLeaves = async (tenant: string | undefined, kind: LeafKind, ref: string): Promise<(StoredLeaf & { log: string })[]> => {
    const ofTenant = tenant !== undefined ? ' AND tenant = {tenant:String}' : '';
    const wk = writeOnceKey(kind, ref);
    const where = [`SELECT 'idx' AS by, log, idx AS at FROM ${refs} WHERE kind = {kind:String} AND record_ref = {ref:String}${ofTenant}`];
    if (wk !== undefined && (await hasRecordIds())) {
      where.push(`SELECT 'offset' AS by, concat(kafka_topic, '/', toString(kafka_partition)) AS log, kafka_offset AS at FROM ${recordIds} WHERE namespace = {ns:String} AND record_key = {key:String}${ofTenant}`);
    }
    const copies = await rows<{ by: 'idx' | 'offset'; log: string; at: string | number }>(where.join('\n UNION ALL '), { kind, ref, tenant, ns: wk?.namespace, key: wk?.key });
    const places = copies.map((c): Where => (c.by === 'idx' ? { log: c.log, by: 'idx', idx: Number(c.at) } : { log: c.log, by: 'offset', offset: String(c.at) }));
    return withHashes(await leafRowsAt(places, tenant, kind, ref));
  };

  /**
   * The same answer as `findLeaves` by a scan of the reference column of every
   * leaf row (O(n)): the reference the lookup is tested and measured against.
   */
  const scanLeaves = async (tenant: string | undefined, kind: LeafKind, ref: string): Promise<(StoredLeaf & { log: string })[]> => {
    const found = await rows<LeafRow>(
      `SELECT ${LEAF_COLUMNS} FROM ${tree}
       WHERE row = 'leaf' AND kind = {kind:String} AND ${refCondition(ref)}${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''}
       ORDER BY log, idx LIMIT 1 BY log, idx`,
      { kind, ref, tenant },
    );
    return withHashes(found);
  };

  /**
   * The leaf of the copy of a record stored at Kafka offset `offset` of `log`
   * (its log's partition), or undefined when no leaf there is that record's —
   * the same leaf as `findLeaves(tenant, kind, ref)` lists for that log and
   * offset, read with its tile in one statement (`leafRowsAt`).
   */
  const leafAt = async (log: string, offset: string, tenant: string | undefined, kind: LeafKind, ref: string): Promise<(StoredLeaf & { log: string }) | undefined> =>
    (await withHashes(await leafRowsAt([{ log, by: 'offset', offset }], tenant, kind, ref)))[0];

  const saveCheckpoint = async (c: StoredCheckpoint): Promise<void> => {
    await client.insert({
      table: checkpoints,
      values: [{ log: c.log, origin: c.origin, size: c.size, root_hex: toHex(c.root), note: c.note, signed_at: c.signedAt.replace('T', ' ').replace('Z', '') }],
      format: 'JSONEachRow',
    });
  };

  type CheckpointRow = { log: string; origin: string; size: number; root_hex: string; note: string; signed_at: string };
  const toCheckpoint = (r: CheckpointRow): StoredCheckpoint => ({ log: r.log, origin: r.origin, size: Number(r.size), root: fromHex(r.root_hex), note: r.note, signedAt: new Date(r.signed_at).toISOString() });

  /** The latest checkpoint of every log (or of one). */
  const latestCheckpoints = async (log?: string): Promise<StoredCheckpoint[]> =>
    (
      await rows<CheckpointRow>(
        `SELECT log, origin, size, root_hex, note, signed_at FROM ${checkpoints}${log !== undefined ? ' WHERE log = {log:String}' : ''}
         ORDER BY log, size DESC LIMIT 1 BY log`,
        { log },
      )
    ).map(toCheckpoint);

  /** Every checkpoint of a log, oldest first. */
  const checkpointsOf = async (log: string): Promise<StoredCheckpoint[]> =>
    (await rows<CheckpointRow>(`SELECT log, origin, size, root_hex, note, signed_at FROM ${checkpoints} WHERE log = {log:String} ORDER BY size LIMIT 1 BY size`, { log })).map(toCheckpoint);

  const checkpointAt = async (log: string, size: number): Promise<StoredCheckpoint | undefined> =>
    (await rows<CheckpointRow>(`SELECT log, origin, size, root_hex, note, signed_at FROM ${checkpoints} WHERE log = {log:String} AND size = {size:UInt64} LIMIT 1`, { log, size })).map(toCheckpoint)[0];

  const logs = async (): Promise<string[]> =>
    (await rows<{ log: string }>(`SELECT DISTINCT log FROM ${tree} WHERE row = 'leaf' ORDER BY log`)).map((r) => r.log);

  return { readStats: () => ({ ...reads, cachedBytes: cacheBytes }), ensureTables, append, logHead, warm, nodes, nodeFrom, frontierAt, leaves, findLeaves, scanLeaves, leafAt, saveCheckpoint, latestCheckpoints, checkpointsOf, checkpointAt, logs };
};

export type AuditLogStore = ReturnType<typeof createAuditLogStore>;
