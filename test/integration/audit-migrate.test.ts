// Migrations against the real engine: a database made by migration 1 before
// the token-time codec existed is upgraded by migration 2, which is recorded
// once; running migrate again changes nothing. Migration 3 indexes the
// records stored before the write-once check: the first copy of each id.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createTableStatements, MIGRATIONS } from '../../schemas/clickhouse/ddl.ts';
import { migrate } from '../../services/lib/clickhouse-migrate.ts';
import { DECISIONS, TOKEN_TIME_CODEC } from '../../schemas/clickhouse/tables.ts';
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

  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [2, 3]);
  const want = `CODEC(${TOKEN_TIME_CODEC})`;
  assert.deepEqual(await codecs(), { token_issued_at: want, token_expires_at: want });
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, []);

  // Rows written after the upgrade still read back.
  await ch.command({ query: `INSERT INTO ${database}.decisions (tenant, session_id, occurred_at, event_id, token_issued_at, token_expires_at) VALUES ('acme', 'S-9', '2026-06-09 14:03:11.000', generateUUIDv7(), '2026-06-09 14:00:00.000', NULL)` });
  const rs = await ch.query({ query: `SELECT toString(token_issued_at) AS i, token_expires_at AS e FROM ${database}.decisions`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ i: '2026-06-09 14:00:00.000', e: null }]);
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
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [3]);
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
