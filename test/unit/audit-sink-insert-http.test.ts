// Over HTTP (production's connection) the sink's exec of pre-encoded rows
// must send ClickHouse the very request the client's insert of their cells
// sends — the statement and settings in the URL, the JSONCompactEachRow lines
// as the body — and a refused row must fail with the same error either way.
// A local HTTP listener records what the real @clickhouse/client sends; no
// ClickHouse behaviour is imitated beyond an empty 200 or an error answer.
// (The stored result on the real engine: test/integration/audit-sink-insert.test.ts.)
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { compact, decisionRow } from '../../schemas/clickhouse/rows-write.ts';
import { DECISIONS } from '../../schemas/clickhouse/tables.ts';
import { insertRows } from '../../services/audit-sink/sink.ts';
import { createClickHouse } from '../../services/lib/clickhouse.ts';
import { insertFailure } from '../../services/audit-sink/write.ts';
import { incident } from '../helpers/audit-incident.ts';

type Seen = { method: string; path: string; params: [string, string][]; body: string; contentType: string | undefined };

const seen: Seen[] = [];
let answer: { status: number; body: string; headers?: Record<string, string> } = { status: 200, body: '' };
let server: Server;
/** The client production opens for CLICKHOUSE_URL. */
let client: ClickHouseClient;
/** The same listener, the client's error log off (the refusals below are on purpose). */
let quiet: ClickHouseClient;

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

before(async () => {
  server = createServer((req, res) => {
    void readBody(req).then((body) => {
      const url = new URL(req.url ?? '/', 'http://x');
      seen.push({
        method: req.method ?? '',
        path: url.pathname,
        // query_id is random per request; everything else must match.
        params: [...url.searchParams.entries()].filter(([k]) => k !== 'query_id').sort(([a], [b]) => a.localeCompare(b)),
        body,
        contentType: req.headers['content-type'],
      });
      res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
      res.end(answer.body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = createClickHouse({ kind: 'http', url, user: 'default', password: '', database: 'audit' });
  quiet = createClient({ url, log: { level: ClickHouseLogLevel.OFF } });
});

after(async () => {
  await client.close();
  await quiet.close();
  await new Promise<void>((ok) => server.close(() => ok()));
});

const rows = () => incident().decisions.map((e, i) => compact(DECISIONS, decisionRow(e, { topic: 'ev', partition: 0, offset: String(i) })));
const settings = { insert_deduplicate: 1, insert_deduplication_token: 'ev|0|0-5' } as const;

describe('the sink\'s inserts over HTTP', () => {
  test('pre-encoded lines through exec send the request the client\'s insert of the cells sends', async () => {
    answer = { status: 200, body: '' };
    seen.length = 0;
    const cells = rows();
    assert.ok(cells.length >= 2, 'the incident has several decisions');
    await insertRows(client, 'audit', DECISIONS, cells, settings);
    await insertRows(client, 'audit', DECISIONS, cells.map((r) => JSON.stringify(r)), settings);
    assert.equal(seen.length, 2);
    const [viaInsert, viaExec] = seen as [Seen, Seen];
    assert.equal(viaInsert.method, 'POST');
    assert.match(viaInsert.params.find(([k]) => k === 'query')?.[1] ?? '', /^INSERT INTO `?audit`?\.`?decisions`? \(tenant, .+, kafka_offset\) FORMAT JSONCompactEachRow$/);
    assert.equal(viaInsert.body.split('\n').length, cells.length + 1, 'one line per row and a final newline');
    assert.deepEqual(
      { ...viaExec, params: viaExec.params.map(([k, v]) => [k, k === 'query' ? v.trim() : v]) },
      { ...viaInsert, params: viaInsert.params.map(([k, v]) => [k, k === 'query' ? v.trim() : v]) },
    );
    assert.deepEqual(viaExec.params.find(([k]) => k === 'insert_deduplication_token'), ['insert_deduplication_token', 'ev|0|0-5'], 'the dedup token rides along');
  });

  test('a row ClickHouse refuses fails exec with the error and code the client\'s insert gets', async () => {
    answer = {
      status: 500,
      body: 'Code: 27. DB::Exception: Cannot parse input: expected \'"\' before: \'not a time\': (at row 2): While executing ParallelParsingBlockInputFormat. (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 24.8.1.1)\n',
      headers: { 'x-clickhouse-exception-code': '27' },
    };
    const cells = rows();
    const failureOf = async (values: Parameters<typeof insertRows>[3]) => {
      try {
        await insertRows(quiet, 'audit', DECISIONS, values, {});
      } catch (e) {
        return insertFailure('decisions', e);
      }
      return assert.fail('an insert the server refused succeeded');
    };
    const viaCells = await failureOf(cells);
    const viaLines = await failureOf(cells.map((r) => JSON.stringify(r)));
    assert.equal(viaCells.code, 'clickhouse_query_failed');
    assert.equal(viaCells.retriable, false, 'code 27 is the data\'s');
    assert.equal(viaLines.code, viaCells.code);
    assert.equal(viaLines.retriable, viaCells.retriable);
    assert.equal((viaLines.cause as { code?: unknown }).code, (viaCells.cause as { code?: unknown }).code);
    assert.equal((viaLines.cause as { code?: unknown }).code, '27');
  });

  test('a connection the server drops is the server\'s, retriable, on both paths', async () => {
    const down = createClient({ url: 'http://127.0.0.1:1', request_timeout: 2_000, log: { level: ClickHouseLogLevel.OFF } });
    try {
      for (const values of [rows(), rows().map((r) => JSON.stringify(r))]) {
        const f = await insertRows(down, 'audit', DECISIONS, values, {}).then(() => undefined, (e: unknown) => insertFailure('decisions', e));
        assert.ok(f !== undefined, 'an insert to a closed port failed');
        assert.equal(f.code, 'clickhouse_unavailable');
        assert.equal(f.retriable, true);
      }
    } finally {
      await down.close();
    }
  });
});
