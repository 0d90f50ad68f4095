// Writes one table's rows so that no single record can stop a partition.
//
// Which ClickHouse errors are whose fault:
//   - no error code (connection refused, timeout, socket) or a code from
//     SERVER_CODES (read-only table, too many queries, Keeper, …): the server's.
//     Thrown as retriable; the batch is read again. A record cannot cause these.
//   - DATA_CODES (cannot parse, type mismatch, …): the data's. The block is
//     halved until the bad rows stand alone; each becomes a dead letter.
//   - any other code (e.g. 252 TOO_MANY_PARTS): retried a few times first — a
//     merge backlog clears — and if it persists, isolated like a data error.
//     A lone row is blamed only while ClickHouse answers a plain query, and
//     never when every row of a multi-row block fails that way (then the cause
//     is the server, and the batch is retried instead).
// Sub-blocks get tokens of their own offset ranges, so a replay splits and
// deduplicates the same way.
import { errorMessage, TrustfoldError } from '../lib/errors.ts';
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

export type ErrorBlame = 'server' | 'data' | 'unknown';

export const blameOf = (e: unknown): ErrorBlame => {
  const code = clickhouseCode(e);
  if (code === undefined || SERVER_CODES.has(code)) return 'server';
  return DATA_CODES.has(code) ? 'data' : 'unknown';
};

export type BlockWriterDeps = {
  /** One insert of one block with its deduplication token. */
  insert: (rows: TableRows, token: string) => Promise<void>;
  /** Whether ClickHouse answers at all (a plain query), before a lone row is blamed. */
  healthy: () => Promise<boolean>;
  token: (rows: TableRows) => string;
  /** Extra attempts of a block failing with an unknown code before it is split. Default 2. */
  retries?: number;
  backoffMs?: number;
  sleep?: (ms: number) => Promise<void>;
};

export type WriteResult = {
  /** Offsets whose rows are in ClickHouse. */
  inserted: Set<string>;
  rejected: { offset: string; message: string }[];
};

const serverError = (table: string, e: unknown): TrustfoldError =>
  new TrustfoldError('clickhouse_unavailable', `insert into ${table} failed: ${errorMessage(e)}`, true, { cause: e });

export const createBlockWriter = (deps: BlockWriterDeps) => {
  const retries = deps.retries ?? 2;
  const backoff = deps.backoffMs ?? 100;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  /** Inserts, retrying an unknown-code failure `attempts` more times; returns the last error, or undefined on success. */
  const attempt = async (rows: TableRows, attempts: number): Promise<unknown> => {
    for (let i = 0; ; i++) {
      try {
        await deps.insert(rows, deps.token(rows));
        return undefined;
      } catch (e) {
        const blame = blameOf(e);
        if (blame === 'server') throw serverError(rows.table.name, e);
        if (blame === 'data' || i >= attempts) return e;
        await sleep(backoff * 2 ** i);
      }
    }
  };

  const write = async (rows: TableRows): Promise<WriteResult> => {
    const result: WriteResult = { inserted: new Set(), rejected: [] };
    const suspects: { offset: string; message: string; error: unknown }[] = [];
    const go = async (block: TableRows, attempts: number): Promise<void> => {
      if (block.rows.length === 0) return;
      const e = await attempt(block, block.rows.length === 1 ? retries : attempts);
      if (e === undefined) {
        for (const o of block.offsets) result.inserted.add(o);
        return;
      }
      if (block.rows.length === 1) {
        const offset = block.offsets[0] ?? '';
        if (blameOf(e) === 'data') result.rejected.push({ offset, message: errorMessage(e) });
        else suspects.push({ offset, message: errorMessage(e), error: e });
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
      if (allFailed || !(await deps.healthy())) throw serverError(rows.table.name, suspects[0]?.error);
      result.rejected.push(...suspects.map(({ offset, message }) => ({ offset, message })));
    }
    return result;
  };

  return { write };
};
