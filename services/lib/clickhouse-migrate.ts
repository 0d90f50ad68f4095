// Applies the versioned migrations of schemas/clickhouse/ddl.ts that a database has not seen,
// records each in `schema_migrations`, then reconciles the configured TTL.
// Safe to run from every instance at every start.
import type { ClickHouseClient } from '@clickhouse/client';
import {
  createDatabaseStatement,
  createMigrationsTableStatement,
  MIGRATIONS,
  MIGRATIONS_TABLE,
  modifyTtlStatement,
  qualified,
  storageTable,
  ttlDaysOf,
  type DdlOptions,
  type Migration,
} from '../../schemas/clickhouse/ddl.ts';
import { STORED_TABLES } from '../../schemas/clickhouse/tables.ts';

export type MigrationReport = { applied: number[]; ttlChanged: string[] };

export const appliedVersions = async (client: ClickHouseClient, database: string): Promise<Set<number>> => {
  const rs = await client.query({
    query: `SELECT DISTINCT version FROM ${qualified(database, MIGRATIONS_TABLE)}`,
    format: 'JSONEachRow',
  });
  const rows = await rs.json<{ version: number }>();
  return new Set(rows.map((r) => Number(r.version)));
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
    // A backfill (migration 3) copies rows of every month at once: no per-block partition cap.
    for (const statement of m.statements(o)) await client.command({ query: statement, clickhouse_settings: { max_partitions_per_insert_block: '0' } });
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
