// The ClickHouse an integration test talks to: CLICKHOUSE_URL when set (a real
// server), otherwise the embedded engine in a temp data dir of this test
// process. node --test runs each file in its own process, and libchdb binds one
// data dir per process, so the dir is per process and isolation per test comes
// from a unique database.
import type { ClickHouseClient } from '@clickhouse/client';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { migrate } from '../../services/lib/clickhouse-migrate.ts';
import { createClickHouse, type ClickHouseTarget } from '../../services/lib/clickhouse.ts';

let embeddedPath: string | undefined;
const clients: ClickHouseClient[] = [];

/** A data dir of its own, for tests that hand ClickHouse to a child process before reading it. */
export const tempDataDir = (prefix = 'trustfold-ch-'): string => mkdtempSync(join(tmpdir(), prefix));

export const uniqueDatabase = (prefix = 'audit'): string => `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;

/** Where this process's tests reach ClickHouse; `path` picks the embedded data dir (first call wins). */
export const testTarget = (database: string, path?: string): ClickHouseTarget => {
  const url = process.env['CLICKHOUSE_URL']?.trim();
  if (url !== undefined && url !== '') {
    return { kind: 'http', url, user: process.env['CLICKHOUSE_USER'] ?? 'default', password: process.env['CLICKHOUSE_PASSWORD'] ?? '', database };
  }
  embeddedPath ??= path ?? join(tempDataDir(), 'clickhouse');
  return { kind: 'embedded', path: embeddedPath, database };
};

/** A new client (= its own chdb connection) on this process's ClickHouse; closed by closeTestClickHouse(). */
export const newClient = (database: string, path?: string): ClickHouseClient => {
  const c = createClickHouse(testTarget(database, path));
  clients.push(c);
  return c;
};

/**
 * A unique, migrated database, a writer and a reader client (one chdb connection runs one operation at a time).
 * The TTL outlives the fixtures' fixed dates (June 2026) by years: a row past it may vanish in a background merge.
 */
export const freshAuditDatabase = async (
  prefix = 'audit',
  ttlDays = 3650,
): Promise<{ database: string; writer: ClickHouseClient; reader: ClickHouseClient }> => {
  const database = uniqueDatabase(prefix);
  const writer = newClient(database);
  const reader = newClient(database);
  await migrate(writer, { database, ttlDays });
  return { database, writer, reader };
};

export const closeTestClickHouse = async (): Promise<void> => {
  for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  if (embeddedPath !== undefined && process.env['TRUSTFOLD_KEEP_TEST_DATA'] === undefined) {
    rmSync(dirname(embeddedPath), { recursive: true, force: true });
  }
};
