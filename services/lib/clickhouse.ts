// One factory for ClickHouse: an HTTP server when CLICKHOUSE_URL is set, the
// embedded engine (chdb) otherwise. Same client API, same SQL.
//
// One chdb connection runs one operation at a time (docs/design.md, measured), so
// writers and readers each open their own client on the same path. libchdb
// binds one data directory per process: every client in a process must use the
// same path.
import { createClient, type ClickHouseClient } from '@clickhouse/client';
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
  return createClient({ connection });
};
