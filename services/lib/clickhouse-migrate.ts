// Applies the versioned migrations of schemas/clickhouse/ddl.ts that a database has not seen,
// records each in `schema_migrations`, then reconciles the configured TTL.
// Safe to run from every instance at every start.
import type { ClickHouseClient } from '@clickhouse/client';
import { randomBytes } from 'node:crypto';
import {
  createDatabaseStatement,
  createMigrationsTableStatement,
  createTableStatements,
  hasStorageSettings,
  ident,
  MIGRATIONS,
  MIGRATIONS_TABLE,
  modifyTtlStatement,
  qualified,
  rebuildCopyName,
  rebuildCopySince,
  storageTable,
  ttlDaysOf,
  type DdlOptions,
  type Migration,
} from '../../schemas/clickhouse/ddl.ts';
import { STORED_TABLES, type TableSpec } from '../../schemas/clickhouse/tables.ts';

export type MigrationReport = { applied: number[]; ttlChanged: string[] };

export const appliedVersions = async (client: ClickHouseClient, database: string): Promise<Set<number>> => {
  const rs = await client.query({
    query: `SELECT DISTINCT version FROM ${qualified(database, MIGRATIONS_TABLE)}`,
    format: 'JSONEachRow',
  });
  const rows = await rs.json<{ version: number }>();
  return new Set(rows.map((r) => Number(r.version)));
};

/** A backfill or a copy writes rows of every month at once: no per-block partition cap. */
const COPY_SETTINGS = { max_partitions_per_insert_block: '0' };

/**
 * How far before a rebuild's copy began its catch-up reaches: an insert that
 * took its `ingested_at` earlier but was not yet visible when the copy read
 * the table is copied by the catch-up. Rows copied twice collapse (same key,
 * same version) and every read takes one copy of an id.
 */
export const REBUILD_CATCH_UP_MS = 10 * 60_000;

/** How long after the swap the catch-up waits for inserts already under way into the previous table. */
export const REBUILD_SETTLE_MS = 5_000;

/**
 * Rebuilds a single node's table into its current definition (a setting the
 * engine cannot ALTER, such as index_granularity), without stopping writers
 * and safe to interrupt anywhere:
 *
 * 1. the rows are copied into `<table>_rebuild_<since>_<nonce>`, made from the
 *    current definition, and the two tables are swapped in one EXCHANGE, so a
 *    writer never finds the table missing;
 * 2. from the previous table, now under the copy's name, the rows ingested
 *    from `since` on (what the sink stored during the copy) are copied again,
 *    once inserts begun before the swap have landed (REBUILD_SETTLE_MS); it is
 *    then dropped.
 *
 * Interrupted in 1 (the table still has the old definition): the next run
 * drops the partial copy and starts again. Interrupted in 2: the table has the
 * new definition, and the previous one, named with its `since`, is caught up
 * from again, then dropped. A second instance migrating at once fills a copy
 * of its own; it swaps only if the table still has the old definition. One
 * instance's cleanup may drop the other's copy while it is being filled: that
 * instance's migration then fails, and its restart finds the table rebuilt.
 */
export const rebuildTable = async (client: ClickHouseClient, o: DdlOptions, t: TableSpec): Promise<void> => {
  const one = async <T>(query: string, params: Record<string, unknown>): Promise<T | undefined> => {
    const rs = await client.query({ query, query_params: params, format: 'JSONEachRow' });
    return (await rs.json<T>())[0];
  };
  const createQueryOf = async (name: string): Promise<string | undefined> =>
    (await one<{ q: string }>('SELECT create_table_query AS q FROM system.tables WHERE database = {db:String} AND name = {name:String}', { db: o.database, name }))?.q;
  const columns = t.columns.map((c) => ident(c.name)).join(', ');
  const table = qualified(o.database, t.name);

  const live = await createQueryOf(t.name);
  if (live === undefined) return;
  if (!hasStorageSettings(t, live)) {
    const now = await one<{ ms: string | number }>('SELECT toUnixTimestamp64Milli(now64(3)) AS ms', {});
    const copy = rebuildCopyName(t, Number(now?.ms) - REBUILD_CATCH_UP_MS, randomBytes(4).toString('hex'));
    const [create] = createTableStatements({ ...t, name: copy }, o);
    if (create === undefined) throw new Error(`no CREATE statement for ${copy}`);
    await client.command({ query: create });
    await client.command({ query: `INSERT INTO ${qualified(o.database, copy)} (${columns}) SELECT ${columns} FROM ${table}`, clickhouse_settings: COPY_SETTINGS });
    const now2 = await createQueryOf(t.name);
    if (now2 !== undefined && !hasStorageSettings(t, now2)) await client.command({ query: `EXCHANGE TABLES ${table} AND ${qualified(o.database, copy)}` });
  }
  const copies = await client.query({
    query: 'SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {prefix:String}) ORDER BY name',
    query_params: { db: o.database, prefix: `${t.name}_rebuild_` },
    format: 'JSONEachRow',
  });
  let settled = false;
  for (const { name } of await copies.json<{ name: string }>()) {
    const since = rebuildCopySince(t, name);
    if (since === undefined) continue;
    const q = await createQueryOf(name);
    // An insert another instance began before the swap still completes into the previous table: let it land
    // before the catch-up reads that table, or the DROP below would take its rows with it.
    if (q !== undefined && !hasStorageSettings(t, q) && !settled) {
      await new Promise((r) => setTimeout(r, REBUILD_SETTLE_MS));
      settled = true;
    }
    // The previous table (old definition): what was stored in it while it was being copied goes over again.
    // A copy with the new definition was never swapped in (an interrupted or a redundant one): dropped.
    if (q !== undefined && !hasStorageSettings(t, q)) {
      await client.command({
        query: `INSERT INTO ${table} (${columns}) SELECT ${columns} FROM ${qualified(o.database, name)} WHERE ingested_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')`,
        query_params: { since },
        clickhouse_settings: COPY_SETTINGS,
      });
    }
    await client.command({ query: `DROP TABLE IF EXISTS ${qualified(o.database, name)} SYNC` });
  }
};

export const migrate = async (
  client: ClickHouseClient,
  o: DdlOptions,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<MigrationReport> => {
  await client.command({ query: createDatabaseStatement(o) });
  await client.command({ query: createMigrationsTableStatement(o) });
  const done = await appliedVersions(client, o.database);
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(m.version)) continue;
    for (const statement of m.statements(o)) await client.command({ query: statement, clickhouse_settings: COPY_SETTINGS });
    if (m.rebuild !== undefined && o.cluster === undefined) await rebuildTable(client, o, m.rebuild);
    await client.insert({
      table: qualified(o.database, MIGRATIONS_TABLE),
      values: [{ version: m.version, name: m.name }],
      format: 'JSONEachRow',
    });
    applied.push(m.version);
  }
  const ttlChanged: string[] = [];
  for (const t of STORED_TABLES) {
    const rs = await client.query({
      query: 'SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {name:String}',
      query_params: { db: o.database, name: storageTable(t, o) },
      format: 'JSONEachRow',
    });
    const [row] = await rs.json<{ create_table_query: string }>();
    if (row === undefined) continue;
    if (ttlDaysOf(row.create_table_query) === o.ttlDays) continue;
    // Existing parts keep their old TTL until merged; rewriting every part at start would stall it.
    await client.command({ query: modifyTtlStatement(t, o), clickhouse_settings: { materialize_ttl_after_modify: 0 } });
    ttlChanged.push(t.name);
  }
  return { applied, ttlChanged };
};
