// The sink inserts the decoding threads' pre-encoded rows (JSONCompactEachRow
// lines) through exec, not the client's insert: on the real engine that must
// store the very rows the client's insert of their cells stores, honour the
// dedup token, and fail a refused row with the same error, one the block
// writer takes for the data's (services/audit-sink/write.ts).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import { compact, decisionRow, signalRow, trustRow, type CellValue } from '../../schemas/clickhouse/rows-write.ts';
import { DECISIONS, insertColumns, SIGNALS, TRUST_TRANSITIONS, type TableSpec } from '../../schemas/clickhouse/tables.ts';
import { createCodec } from '../../schemas/codec.ts';
import type { SignalEvent } from '../../schemas/events.ts';
import { mapBatch } from '../../services/audit-sink/batch.ts';
import { insertRows } from '../../services/audit-sink/sink.ts';
import { insertFailure } from '../../services/audit-sink/write.ts';
import { closeTestClickHouse, freshAuditDatabase } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';

after(closeTestClickHouse);

const codec = createCodec();

const dump = async (ch: ClickHouseClient, database: string, table: TableSpec): Promise<unknown[]> => {
  const cols = insertColumns(table).join(', ');
  const rs = await ch.query({ query: `SELECT ${cols} FROM ${database}.${table.name} ORDER BY kafka_offset`, format: 'JSONCompactEachRow' });
  return rs.json();
};

describe('the sink inserts pre-encoded rows', () => {
  test('the same stored rows as the client\'s insert of their cells, for every record table; the dedup token holds', async () => {
    const inc = incident();
    const encoded = await freshAuditDatabase('encoded');
    const cells = await freshAuditDatabase('cells');
    const events = [...inc.decisions, ...inc.signals];
    const mappedEvents = mapBatch(codec, 'events', 'ev', 0, events.map((e, i) => ({ offset: String(i), key: null, value: codec.encodeEvent(e) })));
    const mappedTrust = mapBatch(codec, 'session_trust', 'tr', 0, inc.trust.map((s, i) => ({ offset: String(i), key: null, value: codec.encodeTrust(s) })));
    const tables = [...mappedEvents.tables, ...mappedTrust.tables];
    assert.deepEqual(tables.map((t) => t.table.name).sort(), ['decisions', 'signals', 'trust_transitions']);
    for (const t of tables) {
      for (let attempt = 0; attempt < 2; attempt++) await insertRows(encoded.writer, encoded.database, t.table, t.rows, { insert_deduplicate: 1, insert_deduplication_token: `${t.table.name}|once` });
    }
    // The cells, mapped here without the sink's decoder.
    const at = (topic: string, i: number) => ({ topic, partition: 0, offset: String(i) });
    const cellsOf: [TableSpec, CellValue[][]][] = [
      [DECISIONS, inc.decisions.map((e, i) => compact(DECISIONS, decisionRow(e, at('ev', i))))],
      [SIGNALS, inc.signals.map((e, i) => compact(SIGNALS, signalRow(e as SignalEvent, at('ev', inc.decisions.length + i))))],
      [TRUST_TRANSITIONS, inc.trust.map((s, i) => compact(TRUST_TRANSITIONS, trustRow(s, at('tr', i))))],
    ];
    for (const [table, values] of cellsOf) await insertRows(cells.writer, cells.database, table, values, {});
    for (const [table, values] of cellsOf) {
      const a = await dump(encoded.reader, encoded.database, table);
      assert.equal(a.length, values.length, `${table.name}: one copy of each row, though the block was sent twice with one token`);
      assert.deepEqual(a, await dump(cells.reader, cells.database, table), table.name);
    }
  });

  test('a row the engine refuses fails the insert as the data\'s fault, with the code the client\'s insert of its cells gets', async () => {
    const inc = incident();
    const { database, writer } = await freshAuditDatabase('refused');
    const good = inc.decisions.map((e, i) => compact(DECISIONS, decisionRow(e, { topic: 'ev', partition: 0, offset: String(i) })));
    const occurredAt = insertColumns(DECISIONS).indexOf('occurred_at');
    const bad = good.map((r, i) => (i === 1 ? r.map((c, j) => (j === occurredAt ? 'not a time' : c)) : r));
    const failureOf = async (values: readonly CellValue[][] | readonly string[]) => {
      try {
        await insertRows(writer, database, DECISIONS, values, {});
      } catch (e) {
        return insertFailure('decisions', e);
      }
      return assert.fail('the insert of a bad row succeeded');
    };
    const viaCells = await failureOf(bad);
    const viaLines = await failureOf(bad.map((r) => JSON.stringify(r)));
    assert.equal(viaLines.retriable, false, viaLines.message);
    assert.equal(viaLines.code, viaCells.code);
    assert.equal((viaLines.cause as { code?: unknown }).code, (viaCells.cause as { code?: unknown }).code);
  });
});
