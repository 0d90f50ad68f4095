// An operation's clickhouse_settings apply to that operation only, on the
// embedded engine as over HTTP: the chdb connection SETs them on a session
// that outlives the operation, and services/lib/clickhouse.ts puts them back.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { closeTestClickHouse, newClient } from '../helpers/clickhouse.ts';

after(closeTestClickHouse);

const settingsOf = async (c: ReturnType<typeof newClient>): Promise<Record<string, string>> => {
  const rs = await c.query({ query: "SELECT name, value FROM system.settings WHERE name IN ('max_threads', 'insert_deduplication_token', 'date_time_output_format')", format: 'JSONEachRow' });
  return Object.fromEntries((await rs.json<{ name: string; value: string }>()).map((r) => [r.name, r.value]));
};

test('a setting given to one query, command or insert does not stay for the next operation of the client', async () => {
  const c = newClient('default');
  const before = await settingsOf(c);
  const during = await c.query({
    query: "SELECT getSetting('max_threads') AS t, getSetting('insert_deduplication_token') AS tok",
    format: 'JSONEachRow',
    clickhouse_settings: { max_threads: 1, insert_deduplication_token: 'token-of-one-insert' },
  });
  assert.deepEqual(await during.json(), [{ t: 1, tok: 'token-of-one-insert' }], 'the setting applies to its own operation');
  assert.deepEqual(await settingsOf(c), before, 'and is gone after it');
  await c.command({ query: 'SELECT 1', clickhouse_settings: { date_time_output_format: 'iso' } });
  assert.deepEqual(await settingsOf(c), before);
  await assert.rejects(c.query({ query: 'SELECT throwIf(1)', format: 'JSONEachRow', clickhouse_settings: { max_threads: 1 } }));
  assert.deepEqual(await settingsOf(c), before, 'also after a failed operation');
});

test('operations of one client run one at a time, each with its own settings', async () => {
  const c = newClient('default');
  const runs = await Promise.all(
    [1, 2, 3, 4].map(async (n) => {
      const rs = await c.query({ query: "SELECT getSetting('max_threads') AS t", format: 'JSONEachRow', clickhouse_settings: { max_threads: n } });
      return (await rs.json<{ t: number }>())[0]?.t;
    }),
  );
  assert.deepEqual(runs, [1, 2, 3, 4]);
});
