// Migrations against the real engine: a database made by migration 1 before
// the token-time codec existed is upgraded by migration 2, which is recorded
// once; running migrate again changes nothing.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createTableStatements, MIGRATIONS } from '../../schemas/clickhouse/ddl.ts';
import { migrate } from '../../schemas/clickhouse/migrate.ts';
import { DECISIONS, TOKEN_TIME_CODEC } from '../../schemas/clickhouse/tables.ts';
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

  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, [2]);
  const want = `CODEC(${TOKEN_TIME_CODEC})`;
  assert.deepEqual(await codecs(), { token_issued_at: want, token_expires_at: want });
  assert.deepEqual((await migrate(ch, { database, ttlDays: 30 })).applied, []);

  // Rows written after the upgrade still read back.
  await ch.command({ query: `INSERT INTO ${database}.decisions (tenant, session_id, occurred_at, event_id, token_issued_at, token_expires_at) VALUES ('acme', 'S-9', '2026-06-09 14:03:11.000', generateUUIDv7(), '2026-06-09 14:00:00.000', NULL)` });
  const rs = await ch.query({ query: `SELECT toString(token_issued_at) AS i, token_expires_at AS e FROM ${database}.decisions`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ i: '2026-06-09 14:00:00.000', e: null }]);
});
