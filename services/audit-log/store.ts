// The audit log's ClickHouse tables and every read and write on them.
//
// `audit_log_tree` holds, per log, every leaf (level 0, with the tenant,
// kind, record reference and Kafka offset it came from) and the hashes of the
// complete subtrees at every TILE_HEIGHT-th level — the content of C2SP
// tlog-tiles of height 4, one row per hash, sorted so a tile is one
// contiguous range. A node at any other level is hashed from at most
// 2^(TILE_HEIGHT-1) stored hashes, so a proof or a root needs O(log n) rows,
// fetched in one query. One insert per batch holds a batch's leaves and nodes,
// so a crash leaves either all of them or none.
import type { ClickHouseClient } from '@clickhouse/client';
import { ident, qualified } from '../../schemas/clickhouse/ddl.ts';
import type { LeafKind } from './leaf.ts';
import { perfectNodes, rootOfLeaves, type Frontier, type Hash, type NodeHash, type NodeId } from './merkle.ts';

export const TILE_HEIGHT = 4;
export const TREE_TABLE = 'audit_log_tree';
export const CHECKPOINT_TABLE = 'audit_log_checkpoints';
/** Rows per granule of the tree table: a proof reads a few short ranges, each costs at least one granule. */
const TREE_GRANULARITY = 256;
const HASH_BYTES = 32;
/** Entries of the bounded cache of leaf hashes (~130 B each). */
const HOT_CACHE_ENTRIES = 65_536;

/** A node is stored when it is a leaf or sits on a tile boundary. */
export const isStoredLevel = (level: number): boolean => level % TILE_HEIGHT === 0;

export const toHex = (h: Uint8Array): string => Buffer.from(h).toString('hex');
export const fromHex = (s: string): Hash => new Uint8Array(Buffer.from(s, 'hex'));
// A hash is stored as a UInt256 (32 bytes; JSON carries it as a decimal string) and read with toString().
const toCell = (h: Uint8Array): string => BigInt(`0x${toHex(h)}`).toString();
const fromCell = (s: string): Hash => fromHex(BigInt(s).toString(16).padStart(64, '0'));

export type StoredLeaf = { index: number; hash: Hash; tenant: string; kind: LeafKind; ref: string; offset: string };
export type StoredCheckpoint = { log: string; origin: string; size: number; root: Hash; note: string; signedAt: string };

const SETTINGS = { output_format_json_quote_64bit_integers: 0, date_time_output_format: 'iso' } as const;

export const createAuditLogStore = (client: ClickHouseClient, database: string) => {
  const tree = qualified(database, TREE_TABLE);
  const checkpoints = qualified(database, CHECKPOINT_TABLE);

  const rows = async <T>(query: string, params: Record<string, unknown> = {}): Promise<T[]> => {
    const rs = await client.query({ query, query_params: params, format: 'JSONEachRow', clickhouse_settings: SETTINGS });
    return rs.json<T>();
  };

  const ensureTables = async (): Promise<void> => {
    await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${ident(database)}` });
    const treeDdl = (name: string) => `CREATE TABLE IF NOT EXISTS ${name} (
        log LowCardinality(String),
        level UInt8,
        idx UInt64,
        hash UInt256,
        tenant LowCardinality(String),
        kind LowCardinality(String),
        ref String,
        kafka_offset UInt64
      ) ENGINE = ReplacingMergeTree ORDER BY (log, level, idx) SETTINGS index_granularity = ${TREE_GRANULARITY}`;
    const engineOf = async (name: string): Promise<string | undefined> =>
      (await rows<{ e: string }>('SELECT engine_full AS e FROM system.tables WHERE database = {db:String} AND name = {name:String}', { db: database, name }))[0]?.e;
    // Migration 2: the tree table of a first version used the default granule (8192 rows); a proof's
    // point reads then decompress whole granules. It is copied into a table of TREE_GRANULARITY-row
    // granules and swapped in. A crash before the swap leaves the old table in place (the copy is redone);
    // one between the two renames is finished here.
    const next = qualified(database, `${TREE_TABLE}_next`);
    const old = qualified(database, `${TREE_TABLE}_v1`);
    const current = await engineOf(TREE_TABLE);
    if (current === undefined && (await engineOf(`${TREE_TABLE}_next`)) !== undefined) await client.command({ query: `RENAME TABLE ${next} TO ${tree}` });
    else if (current !== undefined && !current.includes(`index_granularity = ${TREE_GRANULARITY}`)) {
      await client.command({ query: `DROP TABLE IF EXISTS ${next}` });
      await client.command({ query: treeDdl(next) });
      await client.command({ query: `INSERT INTO ${next} SELECT * FROM ${tree}` });
      await client.command({ query: `RENAME TABLE ${tree} TO ${old}` });
      await client.command({ query: `RENAME TABLE ${next} TO ${tree}` });
    }
    await client.command({ query: `DROP TABLE IF EXISTS ${old}` });
    await client.command({ query: treeDdl(tree) });
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

  type TreeRow = { log: string; level: number; idx: number; hash: string; tenant: string; kind: string; ref: string; kafka_offset: string };

  /** One atomic insert: a batch's leaves and the stored nodes they completed. */
  const append = async (log: string, leaves: readonly StoredLeaf[], nodes: readonly NodeHash[]): Promise<void> => {
    const values: TreeRow[] = [
      ...leaves.map((l) => ({ log, level: 0, idx: l.index, hash: toCell(l.hash), tenant: l.tenant, kind: l.kind, ref: l.ref, kafka_offset: l.offset })),
      ...nodes.filter((n) => n.level > 0 && isStoredLevel(n.level)).map((n) => ({ log, level: n.level, idx: n.index, hash: toCell(n.hash), tenant: '', kind: '', ref: '', kafka_offset: '0' })),
    ];
    if (values.length === 0) return;
    await client.insert({ table: tree, values, format: 'JSONEachRow' });
  };

  /** Size of a log and the Kafka offset of its last leaf (none when empty). */
  const logHead = async (log: string): Promise<{ size: number; lastOffset: string | undefined }> => {
    const [r] = await rows<{ n: number; size: number; last: string | number }>(
      `SELECT count() AS n, max(idx) + 1 AS size, argMax(kafka_offset, idx) AS last FROM ${tree} WHERE log = {log:String} AND level = 0`,
      { log },
    );
    if (r === undefined || Number(r.n) === 0) return { size: 0, lastOffset: undefined };
    return { size: Number(r.size), lastOffset: String(r.last) };
  };

  // A stored hash never changes (a complete subtree's hash is fixed once written), so the stored hashes
  // read are kept in process. Every stored level from TILE_HEIGHT up — one hash per 16 leaves, 32 bytes
  // each in one growing byte array per level: ~21 MB at 10M leaves — is loaded whole on a log's first
  // miss and topped up past the leaves it covers on a later miss. A proof then reads from ClickHouse only
  // the level-0 hashes it needs (the leaf's 16-leaf tile, the right edge's partial tile), through a
  // bounded map of leaf hashes, oldest evicted first.
  type Level = { bytes: Uint8Array; have: Uint8Array; count: number };
  type Upper = { levels: Map<number, Level>; covered: number };
  const upper = new Map<string, Upper>();
  /** Stored hashes wanted, served from the caches, and read from ClickHouse (queries, rows), since the store was made. */
  const reads = { wanted: 0, cached: 0, queries: 0, rows: 0 };
  const hot = new Map<string, Hash>();
  const remember = (key: string, h: Hash): void => {
    if (hot.size >= HOT_CACHE_ENTRIES) {
      let drop = HOT_CACHE_ENTRIES / 4;
      for (const k of hot.keys()) {
        hot.delete(k);
        if (--drop <= 0) break;
      }
    }
    hot.set(key, h);
  };
  const upperGet = (u: Upper | undefined, level: number, idx: number): Hash | undefined => {
    const l = u?.levels.get(level);
    if (l === undefined || idx >= l.count || l.have[idx] !== 1) return undefined;
    return l.bytes.subarray(idx * HASH_BYTES, (idx + 1) * HASH_BYTES);
  };
  const upperSet = (u: Upper, level: number, idx: number, h: Hash): void => {
    let l = u.levels.get(level);
    if (l === undefined) u.levels.set(level, (l = { bytes: new Uint8Array(1024 * HASH_BYTES), have: new Uint8Array(1024), count: 0 }));
    if (idx >= l.have.length) {
      const n = Math.max(idx + 1, l.have.length * 2);
      const bytes = new Uint8Array(n * HASH_BYTES);
      bytes.set(l.bytes);
      const have = new Uint8Array(n);
      have.set(l.have);
      l.bytes = bytes;
      l.have = have;
    }
    l.bytes.set(h, idx * HASH_BYTES);
    l.have[idx] = 1;
    l.count = Math.max(l.count, idx + 1);
    u.covered = Math.max(u.covered, (idx + 1) * 2 ** level);
  };

  type Want = { level: number; idx: number };
  /** Stored hashes by `level/idx`: from the caches, then every missing one in one query (contiguous runs as ranges). */
  const stored = async (log: string, want: readonly Want[]): Promise<Map<string, Hash>> => {
    const out = new Map<string, Hash>();
    let u = upper.get(log);
    const missing: Want[] = [];
    let upperMiss = false;
    reads.wanted += want.length;
    for (const w of want) {
      const key = `${w.level}/${w.idx}`;
      const h = w.level >= TILE_HEIGHT ? upperGet(u, w.level, w.idx) : hot.get(`${log}/${key}`);
      if (h !== undefined) {
        out.set(key, h);
        reads.cached++;
      } else if (w.level >= TILE_HEIGHT) upperMiss = true;
      else missing.push(w);
    }
    if (missing.length === 0 && !upperMiss) return out;
    const params: Record<string, unknown> = { log };
    const where: string[] = [];
    missing.sort((a, b) => a.level - b.level || a.idx - b.idx);
    for (let i = 0; i < missing.length; ) {
      const first = missing[i] as Want;
      let j = i + 1;
      while (j < missing.length && (missing[j] as Want).level === first.level && (missing[j] as Want).idx <= (missing[j - 1] as Want).idx + 1) j++;
      const n = where.length;
      params[`l${n}`] = first.level;
      params[`b${n}`] = first.idx;
      params[`e${n}`] = (missing[j - 1] as Want).idx + 1;
      where.push(`(level = {l${n}:UInt8} AND idx >= {b${n}:UInt64} AND idx < {e${n}:UInt64})`);
      i = j;
    }
    if (upperMiss) {
      // Everything at the upper levels past what the cache covers: the whole of them on a log's first miss.
      params['covered'] = u?.covered ?? 0;
      params['tile'] = TILE_HEIGHT;
      where.push('(level >= {tile:UInt8} AND bitShiftLeft(toUInt64(idx + 1), level) > {covered:UInt64})');
    }
    // Hashes as hex of their 32 big-endian bytes (a UInt256 is stored little-endian); a copy a merge has
    // not collapsed yet is the same hash again.
    const rs = await client.query({
      query: `SELECT level, idx, hex(reverse(reinterpretAsFixedString(hash))) AS h FROM ${tree} WHERE log = {log:String} AND (${where.join(' OR ')})`,
      query_params: params,
      format: 'JSONCompactEachRow',
      clickhouse_settings: SETTINGS,
    });
    const found = await rs.json<[number, number, string]>();
    reads.queries++;
    reads.rows += found.length;
    if (upperMiss && u === undefined) {
      u = { levels: new Map(), covered: 0 };
      upper.set(log, u);
    }
    for (const [levelCell, idxCell, hex] of found) {
      const level = Number(levelCell);
      const idx = Number(idxCell);
      const key = `${level}/${idx}`;
      const h = fromHex(hex);
      out.set(key, h);
      if (level >= TILE_HEIGHT && u !== undefined) upperSet(u, level, idx, h);
      else remember(`${log}/${key}`, h);
    }
    return out;
  };

  /** The stored hashes a list of nodes needs (cached, else fetched in one query), then each node hashed from them. */
  const nodes = async (log: string, ids: readonly NodeId[]): Promise<Map<string, Hash>> => {
    const out = new Map<string, Hash>();
    if (ids.length === 0) return out;
    const ranges = ids.map((id) => {
      const base = id.level - (id.level % TILE_HEIGHT);
      const span = 2 ** (id.level - base);
      return { id, base, begin: id.index * span, end: (id.index + 1) * span };
    });
    const want: Want[] = [];
    for (const r of ranges) for (let i = r.begin; i < r.end; i++) want.push({ level: r.base, idx: i });
    const got = await stored(log, want);
    for (const r of ranges) {
      const parts: Hash[] = [];
      for (let i = r.begin; i < r.end; i++) {
        const h = got.get(`${r.base}/${i}`);
        if (h === undefined) throw new Error(`audit log ${log}: node ${r.base}/${i} is not stored`);
        parts.push(h);
      }
      out.set(`${r.id.level}/${r.id.index}`, r.id.level === r.base ? (parts[0] as Hash) : rootOfLeaves(parts).slice());
    }
    return out;
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

  const leaves = async (log: string, from = 0, to?: number): Promise<StoredLeaf[]> => {
    const found = await rows<{ idx: number; h: string; tenant: string; kind: LeafKind; ref: string; kafka_offset: string | number }>(
      `SELECT idx, toString(hash) AS h, tenant, kind, ref, kafka_offset FROM ${tree}
       WHERE log = {log:String} AND level = 0 AND idx >= {from:UInt64}${to !== undefined ? ' AND idx < {to:UInt64}' : ''}
       ORDER BY idx LIMIT 1 BY idx`,
      { log, from, to },
    );
    return found.map((r) => ({ index: Number(r.idx), hash: fromCell(r.h), tenant: r.tenant, kind: r.kind, ref: r.ref, offset: String(r.kafka_offset) }));
  };

  /** The leaves of one record (first copy first): a decision or signal by event id, a transition by session#version. */
  const findLeaves = async (tenant: string | undefined, kind: LeafKind, ref: string): Promise<(StoredLeaf & { log: string })[]> => {
    const found = await rows<{ log: string; idx: number; h: string; tenant: string; kind: LeafKind; ref: string; kafka_offset: string | number }>(
      `SELECT log, idx, toString(hash) AS h, tenant, kind, ref, kafka_offset FROM ${tree}
       WHERE level = 0 AND kind = {kind:String} AND ref = {ref:String}${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''}
       ORDER BY log, idx LIMIT 1 BY log, idx`,
      { kind, ref, tenant },
    );
    return found.map((r) => ({ log: r.log, index: Number(r.idx), hash: fromCell(r.h), tenant: r.tenant, kind: r.kind, ref: r.ref, offset: String(r.kafka_offset) }));
  };

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
    (await rows<{ log: string }>(`SELECT DISTINCT log FROM ${tree} WHERE level = 0 ORDER BY log`)).map((r) => r.log);

  return { readStats: () => ({ ...reads }), ensureTables, append, logHead, nodes, nodeFrom, frontierAt, leaves, findLeaves, saveCheckpoint, latestCheckpoints, checkpointsOf, checkpointAt, logs };
};

export type AuditLogStore = ReturnType<typeof createAuditLogStore>;
