// The write-once filter against the real engine: a catch-up reads exactly the
// index rows made visible since the last one — by this instance or another
// writing the same record_ids — and a merge of parts it has read brings none
// of them back; an id another writer recorded after this filter started is
// a candidate for the lookup once the filter caught up. Where record_ids is
// not a plain MergeTree on one server the filter refuses to start.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import { recordIdRow, type RecordIdentity } from '../../schemas/clickhouse/rows-identity.ts';
import { insertColumns, RECORD_IDS } from '../../schemas/clickhouse/tables.ts';
import { toClickHouseTime } from '../../schemas/clickhouse/rows-write.ts';
import { createWriteOnceFilter, FilterOverBudget, filterSupported } from '../../services/audit-sink/write-once-filter.ts';
import { closeTestClickHouse, freshAuditDatabase, newClient } from '../helpers/clickhouse.ts';

after(closeTestClickHouse);

const identity = (tenant = 'acme', key: string = randomUUID()): RecordIdentity => ({
  tenant,
  namespace: 'event',
  key,
  digest: 'a'.repeat(64),
  time: toClickHouseTime(new Date().toISOString()),
  canonical: '{}',
});

const record = async (ch: ClickHouseClient, database: string, ids: readonly RecordIdentity[], offset0: number): Promise<void> => {
  await ch.insert({
    table: qualified(database, RECORD_IDS.name),
    values: ids.map((id, i) => recordIdRow(id, { topic: 'dec', partition: 0, offset: String(offset0 + i) })),
    columns: insertColumns(RECORD_IDS) as [string, ...string[]],
    format: 'JSONCompactEachRow',
  });
};

test('a catch-up reads only the parts made visible since the last one, by any writer; a merge of read parts reads nothing again', { timeout: 120_000 }, async () => {
  const { database, writer, reader } = await freshAuditDatabase('filter');
  const other = newClient(database);
  assert.deepEqual(await filterSupported(reader, database, undefined), { ok: true, why: 'record_ids is a MergeTree' });

  const before = Array.from({ length: 3 }, () => Array.from({ length: 500 }, () => identity()));
  for (const [i, ids] of before.entries()) await record(writer, database, ids, i * 1000);
  const filter = createWriteOnceFilter(reader, database);
  const first = await filter.catchUp();
  assert.equal(first.rows, 1500);
  assert.ok(first.watermark >= 3, `watermark ${first.watermark} after three inserts`);
  assert.equal(filter.candidates(before.flat()).length, 1500, 'an id in the index is always a candidate');

  // Nothing new: nothing read. Another writer's inserts: exactly those rows.
  assert.equal((await filter.catchUp()).rows, 0);
  const late = Array.from({ length: 700 }, () => identity());
  await record(other, database, late.slice(0, 300), 10_000);
  await record(other, database, late.slice(300), 20_000);
  const fresh = Array.from({ length: 2000 }, () => identity());
  assert.ok(filter.candidates(late).length < 10, 'before catching up the filter does not know the other writer\'s ids (the lookup is what it saves)');
  const second = await filter.catchUp();
  assert.equal(second.rows, 700);
  assert.equal(filter.candidates(late).length, 700);
  // Never-stored ids are candidates only as false positives (~0.01 %).
  assert.ok(filter.candidates(fresh).length < 5, `${filter.candidates(fresh).length} of 2000 fresh ids are candidates`);

  // A merge rewrites every part read so far into one: its blocks are all at or below the watermark.
  await writer.command({ query: `OPTIMIZE TABLE ${qualified(database, RECORD_IDS.name)} FINAL` });
  const parts = await reader.query({ query: `SELECT count() AS n FROM system.parts WHERE database = {db:String} AND table = 'record_ids' AND active`, query_params: { db: database }, format: 'JSONEachRow' });
  assert.deepEqual(await parts.json(), [{ n: 1 }]);
  assert.equal((await filter.catchUp()).rows, 0, 'the merged part is not read again');

  // A part inserted after the merge, then merged with the big one before the filter looked: read whole, nothing missed.
  const beforeMerge = Array.from({ length: 100 }, () => identity('globex'));
  await record(other, database, beforeMerge, 30_000);
  await writer.command({ query: `OPTIMIZE TABLE ${qualified(database, RECORD_IDS.name)} FINAL` });
  const third = await filter.catchUp();
  assert.equal(third.rows, 2300, 'the part that merged new blocks with read ones is read again whole');
  assert.equal(filter.candidates(beforeMerge).length, 100);
});

test('a second filter started later reads the whole index at its first catch-up', { timeout: 60_000 }, async () => {
  const { database, writer, reader } = await freshAuditDatabase('filter2');
  const ids = Array.from({ length: 1200 }, (_, i) => identity(i % 2 === 0 ? 'acme' : 'globex'));
  await record(writer, database, ids.slice(0, 600), 0);
  await record(writer, database, ids.slice(600), 600);
  const progress: number[] = [];
  const late = createWriteOnceFilter(reader, database);
  const c = await late.catchUp((n) => progress.push(n));
  assert.equal(c.rows, 1200);
  assert.deepEqual(progress, [], 'progress is reported per million rows');
  assert.equal(late.candidates(ids).length, 1200);
});

test('a catch-up that would take the filter past its memory budget stops reading and says so', { timeout: 60_000 }, async () => {
  const { database, writer, reader } = await freshAuditDatabase('filter4');
  await record(writer, database, Array.from({ length: 300 }, () => identity()), 0);
  const tiny = createWriteOnceFilter(reader, database, { maxBytes: 1024 });
  await assert.rejects(tiny.catchUp(), (e: unknown) => e instanceof FilterOverBudget && e.budget === 1024 && e.keys === 1);
  const enough = createWriteOnceFilter(reader, database, { maxBytes: 64 * 1024 * 1024 });
  assert.equal((await enough.catchUp()).rows, 300);
});

test('the filter refuses a cluster and a table that is not a plain MergeTree', { timeout: 60_000 }, async () => {
  const { database, writer, reader } = await freshAuditDatabase('filter3');
  assert.deepEqual(await filterSupported(reader, database, 'prod'), { ok: false, why: 'record_ids spans the cluster prod' });
  await writer.command({ query: `RENAME TABLE ${qualified(database, RECORD_IDS.name)} TO ${qualified(database, 'record_ids_kept')}` });
  assert.deepEqual(await filterSupported(reader, database, undefined), { ok: false, why: 'record_ids does not exist' });
  await writer.command({ query: `CREATE TABLE ${qualified(database, RECORD_IDS.name)} AS ${qualified(database, 'record_ids_kept')} ENGINE = ReplacingMergeTree ORDER BY (tenant, namespace, record_key)` });
  assert.deepEqual(await filterSupported(reader, database, undefined), { ok: false, why: 'record_ids is a ReplacingMergeTree' });
});
