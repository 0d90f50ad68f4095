// Writes one table's rows so that no single record can stop a partition.
//
// Whether to try again is decided by the one rule of services/lib/errors.ts,
// `isRetriable`, as everywhere else: a failed insert is first said in that
// vocabulary (`insertFailure`):
//   - DATA_CODES (cannot parse, type mismatch, …): the data's, not retriable.
//     Never tried again: the block is halved until the bad rows stand alone;
//     each becomes a dead letter.
//   - no error code (connection refused, timeout, socket) or a code from
//     SERVER_CODES (read-only table, too many queries, Keeper, …): the
//     server's ('clickhouse_unavailable'), retriable. Tried again a few times,
//     then thrown; the batch is read again. A record cannot cause these.
//   - any other code (e.g. 252 TOO_MANY_PARTS): retriable too — a merge
//     backlog clears — but a record might cause it ('clickhouse_query_failed'):
//     if it persists, isolated like a data error. A lone row is blamed only
//     while ClickHouse answers a plain query, and never when every row of a
//     multi-row block fails that way (then the cause is the server, and the
//     batch is retried instead).
// Sub-blocks get tokens of their own offset ranges, so a replay splits and
// deduplicates the same way.
import { errorMessage, isRetriable, TrustfoldError } from '../lib/errors.ts';
import type { TableRows } from './batch.ts';

// ClickHouse error codes that mean "this data is bad", not "try again later".
const DATA_CODES = new Set([6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 241, 376, 1000]);

// Codes no record can cause: the server, its storage or its coordination is unwell, or misconfigured.
const SERVER_CODES = new Set([60, 81, 159, 164, 192, 193, 194, 195, 202, 203, 209, 210, 225, 236, 242, 243, 319, 394, 425, 497, 516, 999]);

export const clickhouseCode = (e: unknown): number | undefined => {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const n = Number((e as { code: unknown }).code);
    if (Number.isInteger(n) && n > 0) return n;
  }
  const m = /Code: (\d+)/.exec(errorMessage(e));
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
};

/**
 * A failed insert as a TrustfoldError: `clickhouse_unavailable` (retriable,
 * the server's), or `clickhouse_query_failed`, retriable when a retry may
 * clear it and not retriable when the data is at fault.
 */
export const insertFailure = (table: string, e: unknown): TrustfoldError => {
  if (e instanceof TrustfoldError) return e;
  const code = clickhouseCode(e);
  const message = `insert into ${table} failed: ${errorMessage(e)}`;
  if (code === undefined || SERVER_CODES.has(code)) return new TrustfoldError('clickhouse_unavailable', message, true, { cause: e });
  return new TrustfoldError('clickhouse_query_failed', message, !DATA_CODES.has(code), { cause: e });
};

/** Whether a record could have caused the failure (else only the server did, and the batch is read again). */
const recordMayCause = (f: TrustfoldError): boolean => f.code !== 'clickhouse_unavailable';

export type BlockWriterDeps = {
  /** One insert of one block with its deduplication token. */
  insert: (rows: TableRows, token: string) => Promise<void>;
  /** Whether ClickHouse answers at all (a plain query), before a lone row is blamed. */
  healthy: () => Promise<boolean>;
  token: (rows: TableRows) => string;
  /** Extra attempts of a block failing with a retriable error before it is split or thrown. Default 2. */
  retries?: number;
  backoffMs?: number;
  sleep?: (ms: number) => Promise<void>;
};

export type WriteResult = {
  /** Offsets whose rows are in ClickHouse. */
  inserted: Set<string>;
  rejected: { offset: string; message: string }[];
};

/** Thrown so that the batch is read again: retriable, whatever the failure was. */
const serverError = (f: TrustfoldError): TrustfoldError =>
  f.retriable && !recordMayCause(f) ? f : new TrustfoldError('clickhouse_unavailable', f.message, true, { cause: f.cause ?? f });

export const createBlockWriter = (deps: BlockWriterDeps) => {
  const retries = deps.retries ?? 2;
  const backoff = deps.backoffMs ?? 100;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  /**
   * Inserts, trying a retriable failure `attempts` more times (as
   * retryTransient does); returns the last failure, or undefined on success.
   * The server's failures are thrown once the attempts are spent.
   */
  const attempt = async (rows: TableRows, attempts: number): Promise<TrustfoldError | undefined> => {
    for (let i = 0; ; i++) {
      try {
        await deps.insert(rows, deps.token(rows));
        return undefined;
      } catch (e) {
        const f = insertFailure(rows.table.name, e);
        if (!isRetriable(f)) return f;
        if (i >= attempts) {
          if (!recordMayCause(f)) throw f;
          return f;
        }
        await sleep(backoff * 2 ** i);
      }
    }
  };

  const write = async (rows: TableRows): Promise<WriteResult> => {
    const result: WriteResult = { inserted: new Set(), rejected: [] };
    const suspects: { offset: string; message: string; error: TrustfoldError }[] = [];
    const go = async (block: TableRows, attempts: number): Promise<void> => {
      if (block.rows.length === 0) return;
      const e = await attempt(block, block.rows.length === 1 ? retries : attempts);
      if (e === undefined) {
        for (const o of block.offsets) result.inserted.add(o);
        return;
      }
      if (block.rows.length === 1) {
        const offset = block.offsets[0] ?? '';
        // Not retriable: the data's. Retriable and still failing: a suspect, blamed only below.
        const message = errorMessage(e.cause ?? e);
        if (!isRetriable(e)) result.rejected.push({ offset, message });
        else suspects.push({ offset, message, error: e });
        return;
      }
      const mid = Math.ceil(block.rows.length / 2);
      const half = (from: number, to: number): TableRows => ({
        table: block.table,
        rows: block.rows.slice(from, to),
        offsets: block.offsets.slice(from, to),
        ids: block.ids.slice(from, to),
      });
      await go(half(0, mid), 0);
      await go(half(mid, block.rows.length), 0);
    };
    await go(rows, retries);
    if (suspects.length > 0) {
      // Every row failing the same unexplained way points at the server, not at the records.
      const allFailed = result.inserted.size === 0 && result.rejected.length === 0 && rows.rows.length > 1;
      const first = suspects[0]?.error;
      if (first !== undefined && (allFailed || !(await deps.healthy()))) throw serverError(first);
      result.rejected.push(...suspects.map(({ offset, message }) => ({ offset, message })));
    }
    return result;
  };

  return { write };
};
