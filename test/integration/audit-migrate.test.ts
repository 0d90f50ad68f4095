// Migrations against the real engine: a database made by migration 1 before
// the token-time codec existed is upgraded by migration 2, which is recorded
// once; running migrate again changes nothing. Migration 3 indexes the
// records stored before the write-once check: the first copy of each id.
import type { ClickHouseClient } from '@clickhouse/client';
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createTableStatements, MIGRATIONS, rebuildCopyName } from '../../schemas/clickhouse/ddl.ts';
import { migrate, REBUILD_CATCH_UP_MS, rebuildTable } from '../../services/lib/clickhouse-migrate.ts';
import { DECISIONS, TOKEN_TIME_CODEC, type TableSpec } from '../../schemas/clickhouse/tables.ts';
import { UNKNOWN_DIGEST } from '../../schemas/clickhouse/ddl.ts';
import { toClickHouseTime } from '../../schemas/clickhouse/rows.ts';
import { closeTestClickHouse, newClient, uniqueDatabase } from '../helpers/clickhouse.ts';

after(closeTestClickHouse);

test('migration 2 sets DoubleDelta on the token times of a table created without it, once', async () => {
  const database = uniqueDatabase('migrate');
  const ch = newClient(database);
  // The decisions table as migration 1 made it before this change: no codec on the token times.
  const before = { ...DECISIONS, columns: DECISIONS.columns.map((c) => (c.codec === TOKEN_TIME_CODEC ? { name: c.name, type: c.type } : c)) };
  const v1 = MIGRATIONS.find((m) => m.version === 1);
  assert.ok(v1);
  await ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` });
  await migrate(ch, { database, ttlDays: 30 }, [{ ...v1, statements: (o) => [...createTableStatements(before, o), ...v1.statements(o)] }]);

  const codecs = async (): Promise<Record<string, string>> => {
    const rs = await ch.query({
      query: 'SELECT name, compression_codec FROM system.columns WHERE database = {db:String} AND table = {t:String} AND name IN {names:Array(String)}',
      query_params: { db: database, t: 'decisions', names: ['token_issued_at', 'token_expires_at'] },
      format: 'JSONEachRow',
    });
    return Object.fromEntries((await rs.json<{ name: string; compression_codec: string }>()).map((r) => [r.name, r.compression_codec]));
  };
  assert.deepEqual(await codecs(), { token_issued_at: '', token_expires_at: '' });

  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [2, 3, 4]);
  const want = `CODEC(${TOKEN_TIME_CODEC})`;
  assert.deepEqual(await codecs(), { token_issued_at: want, token_expires_at: want });
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, []);

  // Rows written after the upgrade still read back. A recent time: a row past the 30-day TTL may be dropped by a
  // background merge before it is read (a fixed date here once failed CI once the calendar passed it).
  const at = toClickHouseTime(new Date(Date.now() - 86_400_000).toISOString());
  const issued = toClickHouseTime(new Date(Date.now() - 86_400_000 - 191_000).toISOString());
  await ch.command({ query: `INSERT INTO ${database}.decisions (tenant, session_id, occurred_at, event_id, token_issued_at, token_expires_at) VALUES ('acme', 'S-9', '${at}', generateUUIDv7(), '${issued}', NULL)` });
  const rs = await ch.query({ query: `SELECT toString(token_issued_at) AS i, token_expires_at AS e FROM ${database}.decisions`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ i: issued, e: null }]);
});

test('migration 3 indexes what was stored before it: per (tenant, id) the lowest Kafka coordinates, digest unknown, once', async () => {
  const database = uniqueDatabase('migrate3');
  const ch = newClient(database);
  const early = MIGRATIONS.filter((m) => m.version < 3);
  await migrate(ch, { database, ttlDays: 30 }, early);
  const id = '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e';
  // Recent times: rows past their TTL are dropped by the backfill's INSERT … SELECT (and would be by merges anyway).
  const ago = (days: number): string => toClickHouseTime(new Date(Date.now() - days * 86_400_000).toISOString());
  // A deny, then a forged allow with the same id (the pre-fix sink stored both), another tenant's id, a trust transition.
  // Separate inserts: separate parts, as separate sink batches made them.
  const decision = (tenant: string, at: string, effect: string, partition: number, offset: number) =>
    ch.command({ query: `INSERT INTO ${database}.decisions (tenant, session_id, occurred_at, event_id, effect, kafka_topic, kafka_partition, kafka_offset) VALUES ('${tenant}', 'S-9', '${at}', '${id}', '${effect}', 'dec', ${partition}, ${offset})` });
  const at = ago(1);
  await decision('acme', at, 'deny', 1, 5);
  await decision('acme', at, 'allow', 1, 9);
  await decision('globex', ago(2), 'allow', 2, 3);
  await ch.command({ query: `INSERT INTO ${database}.trust_transitions (tenant, session_id, version, updated_at, tier, caused_by, kafka_topic, kafka_partition, kafka_offset) VALUES ('acme', 'S-9', 3, '${ago(1)}', 'restricted', '${id}', 'trust', 0, 7)` });
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [3, 4]);
  const index = async () => {
    const rs = await ch.query({ query: `SELECT tenant, namespace, record_key, digest, toString(kafka_offset) AS o FROM ${database}.record_ids ORDER BY tenant, namespace`, format: 'JSONEachRow' });
    return rs.json();
  };
  const want = [
    { tenant: 'acme', namespace: 'event', record_key: id, digest: UNKNOWN_DIGEST, o: '5' },
    { tenant: 'acme', namespace: 'trust', record_key: '3:S-9', digest: UNKNOWN_DIGEST, o: '7' },
    { tenant: 'globex', namespace: 'event', record_key: id, digest: UNKNOWN_DIGEST, o: '3' },
  ];
  assert.deepEqual(await index(), want);
  const evidence = async () => {
    const rs = await ch.query({ query: `SELECT tenant, record_key, toString(first_offset) AS first, toString(kafka_offset) AS copy FROM ${database}.conflicts FINAL`, format: 'JSONEachRow' });
    return rs.json();
  };
  assert.deepEqual(await evidence(), [{ tenant: 'acme', record_key: id, first: '5', copy: '9' }], 'the forged copy stored before the fix is flagged');
  // Run by hand again (a crash between the statements and the record of the migration): nothing doubles.
  const m3 = MIGRATIONS.find((m) => m.version === 3);
  assert.ok(m3);
  for (const statement of m3.statements({ database, ttlDays: 30 })) await ch.command({ query: statement });
  assert.deepEqual(await index(), want);
  assert.equal((await evidence()).length, 1);
});

// ---- migration 4: the decisions table rebuilt with its storage settings ----

/** The decisions table as migrations 1–3 made it: default granules and blocks, no codec on the offsets. */
const DECISIONS_BEFORE_4: TableSpec = {
  ...DECISIONS,
  storageSettings: [],
  columns: DECISIONS.columns.map((c) => (c.name === 'kafka_offset' ? { name: c.name, type: c.type } : c)),
};

const tableQuery = async (ch: ClickHouseClient, database: string, name: string): Promise<string | undefined> => {
  const rs = await ch.query({ query: 'SELECT create_table_query AS q FROM system.tables WHERE database = {db:String} AND name = {name:String}', query_params: { db: database, name }, format: 'JSONEachRow' });
  return (await rs.json<{ q: string }>())[0]?.q;
};
const copiesLeft = async (ch: ClickHouseClient, database: string): Promise<string[]> => {
  const rs = await ch.query({ query: "SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE 'decisions\\_rebuild\\_%'", query_params: { db: database }, format: 'JSONEachRow' });
  return (await rs.json<{ name: string }>()).map((r) => r.name);
};
/**
 * Stored rows as (id, offset, ingested_at), one line each, in order: what a rebuild must keep exactly. FINAL:
 * the rebuild's catch-up may store a row twice (same key, same version), which a merge collapses.
 */
const storedRows = async (ch: ClickHouseClient, database: string, table = 'decisions'): Promise<string[]> => {
  const rs = await ch.query({
    query: `SELECT concat(toString(event_id), ' ', toString(kafka_offset), ' ', toString(ingested_at), ' ', effect) AS r FROM ${database}.${table} FINAL ORDER BY event_id, kafka_offset, ingested_at`,
    format: 'JSONEachRow',
  });
  return (await rs.json<{ r: string }>()).map((x) => x.r);
};
const ago = (ms: number): string => toClickHouseTime(new Date(Date.now() - ms).toISOString());
const OCCURRED_AT = ago(3_600_000);
/** Decision n, with the same content wherever it is stored. */
const insertDecision = (ch: ClickHouseClient, table: string, n: number, offset: number, ingestedAt: string) =>
  ch.command({
    query: `INSERT INTO ${table} (tenant, session_id, occurred_at, event_id, effect, kafka_topic, kafka_partition, kafka_offset, ingested_at) VALUES ('acme', 'S-9', '${OCCURRED_AT}', '01976d2a-0000-7000-8000-${String(n).padStart(12, '0')}', 'allow', 'dec', 0, ${offset}, '${ingestedAt}')`,
  });
/** A database whose decisions table is the one migrations 1–3 made, with rows in two parts. */
const storeBefore4 = async (prefix: string): Promise<{ database: string; ch: ClickHouseClient }> => {
  const database = uniqueDatabase(prefix);
  const ch = newClient(database);
  const v1 = MIGRATIONS.find((m) => m.version === 1);
  assert.ok(v1);
  await ch.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` });
  await migrate(ch, { database, ttlDays: 30 }, [{ ...v1, statements: (o) => [...createTableStatements(DECISIONS_BEFORE_4, o), ...v1.statements(o)] }, ...MIGRATIONS.filter((m) => m.version > 1 && m.version < 4)]);
  await insertDecision(ch, `${database}.decisions`, 1, 10, ago(86_400_000));
  await insertDecision(ch, `${database}.decisions`, 2, 11, ago(60_000));
  return { database, ch };
};

test('migration 4 rebuilds a decisions table made before it: 2048-row granules, smaller blocks, Delta offsets, every row kept as stored, once', async () => {
  const { database, ch } = await storeBefore4('migrate4');
  const before = await storedRows(ch, database);
  assert.equal(before.length, 2);
  assert.doesNotMatch((await tableQuery(ch, database, 'decisions')) ?? '', /index_granularity = 2048/);

  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [4]);
  const after = (await tableQuery(ch, database, 'decisions')) ?? '';
  assert.match(after, /SETTINGS index_granularity = 2048, min_compress_block_size = 16384, max_compress_block_size = 262144/);
  assert.match(after, /`kafka_offset` UInt64 CODEC\(Delta(\(8\))?, ZSTD\(1\)\)/);
  assert.match(after, /PROJECTION by_delegator/);
  assert.match(after, /INDEX idx_event_id event_id TYPE bloom_filter/);
  assert.deepEqual(await storedRows(ch, database), before, 'the same rows, their ingestion times kept');
  assert.deepEqual(await copiesLeft(ch, database), []);
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, []);
  // Written after the rebuild, read back by delegator (the projection); the catch-up's second copy counted once.
  await insertDecision(ch, `${database}.decisions`, 3, 12, ago(0));
  const rs = await ch.query({ query: `SELECT uniqExact(event_id) AS n FROM ${database}.decisions WHERE tenant = 'acme' AND delegator = ''`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ n: 3 }]);
});

test('migration 4 interrupted during the copy: the partial copy is dropped and the copy made again', async () => {
  const { database, ch } = await storeBefore4('migrate4c');
  const before = await storedRows(ch, database);
  // A copy begun by an earlier start (new definition, a row of it copied), never swapped in.
  const stale = rebuildCopyName(DECISIONS, Date.now() - 3_600_000, 'dead0001');
  const [create] = createTableStatements({ ...DECISIONS, name: stale }, { database, ttlDays: 30 });
  await ch.command({ query: create ?? '' });
  await insertDecision(ch, `${database}.${stale}`, 1, 10, ago(86_400_000));
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [4]);
  assert.match((await tableQuery(ch, database, 'decisions')) ?? '', /index_granularity = 2048/);
  assert.deepEqual(await storedRows(ch, database), before);
  assert.deepEqual(await copiesLeft(ch, database), []);
});

test('migration 4 interrupted after the swap: what the sink stored in the previous table during the copy is copied over, then it is dropped', async () => {
  const database = uniqueDatabase('migrate4s');
  const ch = newClient(database);
  await migrate(ch, { database, ttlDays: 30 }, MIGRATIONS.filter((m) => m.version < 4));
  // The swap happened: `decisions` is the copy (new definition) holding rows 1 and 2; the previous table, under
  // the copy's name, also holds row 3, which the sink wrote after the copy had read the table.
  const since = Date.now() - REBUILD_CATCH_UP_MS - 5_000;
  const previous = rebuildCopyName(DECISIONS, since, 'cafe0002');
  const [create] = createTableStatements({ ...DECISIONS_BEFORE_4, name: previous }, { database, ttlDays: 30 });
  await ch.command({ query: create ?? '' });
  const [old, recent] = [ago(86_400_000), ago(60_000)];
  for (const table of ['decisions', previous]) {
    await insertDecision(ch, `${database}.${table}`, 1, 10, old);
    await insertDecision(ch, `${database}.${table}`, 2, 11, recent);
  }
  await insertDecision(ch, `${database}.${previous}`, 3, 12, ago(30_000));
  const wanted = await storedRows(ch, database, previous);

  await rebuildTable(ch, { database, ttlDays: 30 }, DECISIONS);
  assert.deepEqual(await copiesLeft(ch, database), []);
  // Row 1 is older than the catch-up bound: not copied again. Row 2 is copied again: two copies of one record
  // (same key, same version) that a merge collapses; row 3 is no longer missing.
  assert.deepEqual(await storedRows(ch, database), wanted);
  const rs = await ch.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ n: 4 }], 'row 1 once (older than the bound), row 2 twice until a merge, row 3 once');
  // Run again (the table has its definition, no copy is left): nothing changes.
  const stored = await storedRows(ch, database);
  await rebuildTable(ch, { database, ttlDays: 30 }, DECISIONS);
  assert.deepEqual(await storedRows(ch, database), stored);
});
