// One factory for ClickHouse: an HTTP server when CLICKHOUSE_URL is set, the
// embedded engine (chdb) otherwise. Same client API, same SQL.
//
// One chdb connection runs one operation at a time (docs/design.md, measured), so
// writers and readers each open their own client on the same path. libchdb
// binds one data directory per process: every client in a process must use the
// same path.
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as ChdbConnectionModule from 'chdb/connection';
import type { Config } from './config.ts';

export type ClickHouseTarget =
  | { kind: 'http'; url: string; user: string; password: string; database: string }
  | { kind: 'embedded'; path: string; database: string };

export const clickhouseTarget = (c: Config['clickhouse']): ClickHouseTarget =>
  c.url !== undefined
    ? { kind: 'http', url: c.url, user: c.user, password: c.password, database: c.database }
    : { kind: 'embedded', path: c.path, database: c.database };

type ChdbAsConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

type ChdbModule = typeof ChdbConnectionModule;
const requireCjs = createRequire(import.meta.url);

let boundPath: string | undefined;

/**
 * A client on the server (no database selected, so migrations can create it);
 * queries name `database.table` explicitly.
 */
export const createClickHouse = (target: ClickHouseTarget): ClickHouseClient => {
  if (target.kind === 'http') {
    return createClient({
      url: target.url,
      username: target.user,
      password: target.password,
      request_timeout: 60_000,
      clickhouse_settings: { date_time_input_format: 'best_effort' },
    });
  }
  if (boundPath !== undefined && boundPath !== target.path) {
    throw new Error(
      `the embedded ClickHouse is bound to ${boundPath} in this process; cannot open ${target.path} too`,
    );
  }
  boundPath = target.path;
  // chdb ships its own copy of @clickhouse/client-common's types; the two are
  // the same interface but not the same declaration.
  // Loaded only in embedded mode, so a production image (CLICKHOUSE_URL) can
  // leave the ~540 MB engine out.
  const { createChdbConnection } = requireCjs('chdb/connection') as ChdbModule;
  const connection = createChdbConnection({ path: target.path }) as unknown as ChdbAsConnection;
  return createClient({ connection: settingsPerOperation(connection) });
};

// Settings the chdb connection does not SET (HTTP transport options, and the
// format it passes as an option): nothing to put back.
const NOT_SET_BY_CHDB = new Set([
  'default_format',
  'wait_end_of_query',
  'send_progress_in_http_headers',
  'http_response_buffer_size',
  'http_headers_progress_interval_ms',
  'http_send_progress_interval_ms',
  'enable_http_compression',
  'http_zlib_compression_level',
  'http_response_compression_method',
  'http_native_compression_disable_checksumming_on_decompress',
]);

/**
 * Over HTTP, an operation's `clickhouse_settings` apply to that operation
 * only. The chdb connection runs them as `SET …;` before the statement, on a
 * session that outlives it, so a setting would stay for every later operation
 * of the client (measured: `max_threads = 1` and an `insert_deduplication_token`
 * were still in `system.settings` after the query that set them) — an insert
 * without a token of its own would be deduplicated against the previous one's.
 * This wrapper runs the connection's operations one at a time (the engine
 * does anyway) and puts each given setting back to its default after the
 * operation, so embedded and HTTP behave alike.
 */
export const settingsPerOperation = (c: ChdbAsConnection): ChdbAsConnection => {
  let tail: Promise<unknown> = Promise.resolve();
  const serially = <T>(op: () => Promise<T>): Promise<T> => {
    const run = tail.then(op, op);
    tail = run.catch(() => undefined);
    return run;
  };
  const reset = async (settings: Record<string, unknown> | undefined): Promise<void> => {
    const keys = Object.entries(settings ?? {})
      .filter(([k, v]) => v !== undefined && !NOT_SET_BY_CHDB.has(k))
      .map(([k]) => k);
    if (keys.length > 0) await c.command({ query: keys.map((k) => `SET ${k} = DEFAULT`).join('; '), query_id: randomUUID() });
  };
  const wrap = <P extends { clickhouse_settings?: Record<string, unknown> }, R>(op: (p: P) => Promise<R>) => (p: P): Promise<R> =>
    serially(async () => {
      let result: R;
      try {
        result = await op(p);
      } catch (e) {
        // The operation's own error is the one to report; a failed reset here would hide it.
        await reset(p.clickhouse_settings).catch(() => undefined);
        throw e;
      }
      await reset(p.clickhouse_settings);
      return result;
    });
  return {
    ping: (p) => c.ping(p),
    query: wrap((p) => c.query(p)),
    insert: wrap((p) => c.insert(p)),
    command: wrap((p) => c.command(p)),
    exec: wrap((p) => c.exec(p)),
    close: () => c.close(),
  };
};
