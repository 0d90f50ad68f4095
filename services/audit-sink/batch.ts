// The pure half of the audit sink: one Kafka batch in, rows per table and
// dead letters out. No Kafka client, no ClickHouse, no clock.
import { eventIdentity, trustIdentity, type RecordIdentity, type StoredCopy } from '../../schemas/clickhouse/rows-identity.ts';
import { compact, decisionRow, signalRow, trustRow, type CellValue, type KafkaCoordinates } from '../../schemas/clickhouse/rows-write.ts';
import { DECISIONS, SIGNALS, TRUST_TRANSITIONS, type TableSpec } from '../../schemas/clickhouse/tables.ts';
import { hashedLeaf, type HashedLeaf } from '../../schemas/audit-log/leaf-batch.ts';
import { leafOfDecisionRow, leafOfSignalRow, leafOfTrustRow } from '../../schemas/audit-log/records.ts';
import type { Topics } from '../lib/config.ts';
import { decodedCanonicalJson } from './canonical.ts';
import type { SinkDecoder } from './decode.ts';

export type SinkMessage = { offset: string; key: Buffer | null; value: Buffer | null };

export type RejectReason = 'decode_failed' | 'invalid_event' | 'wrong_topic' | 'clickhouse_rejected';

export type Rejected = { offset: string; key: Buffer | null; value: Buffer | null; reason: RejectReason; message: string };

/**
 * One row as its JSONCompactEachRow line, without the newline: exactly what
 * @clickhouse/client writes for the row's compact cells (JSON.stringify of
 * `compact(table, row)`). The decoding threads encode rows this way, so a row
 * crosses to the main thread as one flat string, not a tree of cells to copy,
 * and the main thread only joins the lines of a block (./sink.ts insertValues).
 */
export type EncodedRow = string;

/** The line of one row (see EncodedRow). */
export const encodeRow = (cells: readonly CellValue[]): EncodedRow => JSON.stringify(cells);

/**
 * Rows for one table, each with the offset it came from (so a rejected row can
 * be traced back) and its write-once identity; the three arrays are parallel.
 */
export type TableRows = { table: TableSpec; rows: EncodedRow[]; offsets: string[]; ids: RecordIdentity[] };

/**
 * `leaves`: the tamper-evident log's leaf (docs/audit-log.md, "The leaf rule")
 * of every accepted message of the batch, in offset order (the tables split
 * them by kind) — when asked for, else empty.
 */
export type MappedBatch = { tables: TableRows[]; rejected: Rejected[]; tombstones: number; leaves: HashedLeaf[] };

export type TopicRole = 'events' | 'session_trust';

export const topicRole = (topics: Topics, topic: string): TopicRole | undefined => {
  if (topic === topics.decisions || topic === topics.signals) return 'events';
  if (topic === topics.sessionTrust) return 'session_trust';
  return undefined;
};

/**
 * Decodes and maps every message of one partition batch. A message that
 * cannot be decoded or violates the contract becomes a `Rejected` value; the
 * good messages around it are mapped as usual. With `leaves`, each accepted
 * record's log leaf is hashed here, from the very row the sink stores (the
 * same functions the log writer and the verifier use: schemas/audit-log/records.ts),
 * so the decoding threads do the log's hashing in parallel and no decoded
 * record has to be copied to another thread.
 */
export const mapBatch = (codec: SinkDecoder, role: TopicRole, topic: string, partition: number, messages: readonly SinkMessage[], leaves = false): MappedBatch => {
  const decisions: TableRows = { table: DECISIONS, rows: [], offsets: [], ids: [] };
  const signals: TableRows = { table: SIGNALS, rows: [], offsets: [], ids: [] };
  const trust: TableRows = { table: TRUST_TRANSITIONS, rows: [], offsets: [], ids: [] };
  const rejected: Rejected[] = [];
  const hashed: HashedLeaf[] = [];
  let tombstones = 0;
  for (const m of messages) {
    const at = { topic, partition, offset: m.offset };
    if (m.value === null || m.value.length === 0) {
      // Compaction tombstones on the session-trust topic carry no state; an empty event is poison.
      if (role === 'session_trust') tombstones++;
      else rejected.push({ ...m, reason: 'decode_failed', message: 'empty message value' });
      continue;
    }
    if (role === 'session_trust') {
      const r = codec.decodeTrust(m.value);
      if (!r.ok) {
        rejected.push({ ...m, reason: r.error.code === 'invalid_event' ? 'invalid_event' : 'decode_failed', message: r.error.message });
        continue;
      }
      const row = trustRow(r.value, at);
      trust.rows.push(encodeRow(compact(TRUST_TRANSITIONS, row)));
      trust.offsets.push(m.offset);
      trust.ids.push(trustIdentity(r.value, decodedCanonicalJson('session_trust', r.value)));
      if (leaves) hashed.push(hashedLeaf(m.offset, leafOfTrustRow(row, at)));
      continue;
    }
    const r = codec.decodeEvent(m.value);
    if (!r.ok) {
      rejected.push({ ...m, reason: r.error.code === 'invalid_event' ? 'invalid_event' : 'decode_failed', message: r.error.message });
      continue;
    }
    const e = r.value;
    if (e.type === 'decision') {
      const row = decisionRow(e, at);
      decisions.rows.push(encodeRow(compact(DECISIONS, row)));
      decisions.offsets.push(m.offset);
      decisions.ids.push(eventIdentity(e, decodedCanonicalJson('decision', e)));
      if (leaves) hashed.push(hashedLeaf(m.offset, leafOfDecisionRow(row, at)));
    } else {
      const row = signalRow(e, at);
      signals.rows.push(encodeRow(compact(SIGNALS, row)));
      signals.offsets.push(m.offset);
      signals.ids.push(eventIdentity(e, decodedCanonicalJson(e.kind, e)));
      if (leaves) hashed.push(hashedLeaf(m.offset, leafOfSignalRow(row, at)));
    }
  }
  return { tables: [decisions, signals, trust].filter((t) => t.rows.length > 0), rejected, tombstones, leaves: hashed };
};

/** The rows at the given indexes, arrays kept parallel. */
export const pick = (t: TableRows, indexes: readonly number[]): TableRows => ({
  table: t.table,
  rows: indexes.map((i) => t.rows[i] ?? ''),
  offsets: indexes.map((i) => t.offsets[i] ?? ''),
  ids: indexes.flatMap((i) => (t.ids[i] !== undefined ? [t.ids[i]] : [])),
});

/**
 * Months one insert may touch. ClickHouse refuses a block that touches more
 * partitions than max_partitions_per_insert_block (100 by default; error 252,
 * TOO_MANY_PARTS), and the sink sets that limit on its inserts itself.
 */
export const MONTHS_PER_INSERT = 12;
export const MAX_PARTITIONS_PER_INSERT = 100;

/**
 * Splits rows into blocks that each touch at most `maxMonths` months of their
 * partition column (`toYYYYMM`), oldest months first, Kafka order inside each.
 * However spread out a batch's times are, no insert can reach the partition
 * cap; a batch within `maxMonths` months (every normal one) stays one block.
 * Each month is a part of its own on disk whatever the grouping (one
 * partition per month), so a wide batch is slow to write; the sink heartbeats
 * between blocks so that it is not taken for dead meanwhile.
 */
export const byMonths = (t: TableRows, maxMonths = MONTHS_PER_INSERT): { months: string[]; rows: TableRows }[] => {
  const monthOf = t.ids.map((id) => id.time.slice(0, 7));
  const months = [...new Set(monthOf)].sort();
  const out: { months: string[]; rows: TableRows }[] = [];
  for (let i = 0; i < months.length; i += maxMonths) {
    const group = new Set(months.slice(i, i + maxMonths));
    out.push({ months: [...group], rows: pick(t, monthOf.flatMap((m, j) => (group.has(m) ? [j] : []))) });
  }
  return out;
};

/** `<tenant>\0<key>`: one record's place in the write-once index of its namespace. */
export const identityKey = (id: Pick<RecordIdentity, 'tenant' | 'key'>): string => `${id.tenant}\u0000${id.key}`;

export type Conflict = { index: number; first: StoredCopy };

export type WriteOnceVerdict = {
  /** Indexes of rows to store: the first copy of their id anywhere. */
  fresh: number[];
  /** Later copies with the same content as the stored one: dropped, counted. */
  duplicates: number[];
  /** Rows the index already names by these very coordinates: a re-read after a crash, already stored. */
  replays: number[];
  /** Later copies with other content: never stored as the record, kept as evidence. */
  conflicts: Conflict[];
};

const sameCoordinates = (a: KafkaCoordinates, b: KafkaCoordinates): boolean =>
  a.topic === b.topic && a.partition === b.partition && BigInt(a.offset) === BigInt(b.offset);

/**
 * The write-once rule, pure: the first stored copy of (tenant, id) wins
 * forever. `stored` is what the index held before this batch; inside the batch
 * the lowest offset is first. The verdict depends only on the index and the
 * records, so a re-read of the same offsets after a crash reaches the same one
 * (its rows are then `replays`, never conflicts with themselves).
 */
export const judgeWriteOnce = (t: TableRows, at: { topic: string; partition: number }, stored: ReadonlyMap<string, StoredCopy>): WriteOnceVerdict => {
  const verdict: WriteOnceVerdict = { fresh: [], duplicates: [], replays: [], conflicts: [] };
  const firstInBatch = new Map<string, StoredCopy>();
  t.ids.forEach((id, i) => {
    const here: KafkaCoordinates = { ...at, offset: t.offsets[i] ?? '' };
    const k = identityKey(id);
    const before = stored.get(k);
    const first = before ?? firstInBatch.get(k);
    if (first === undefined) {
      firstInBatch.set(k, { digest: id.digest, kafka: here });
      verdict.fresh.push(i);
    } else if (sameCoordinates(first.kafka, here)) verdict.replays.push(i);
    else if (first.digest === id.digest) verdict.duplicates.push(i);
    else verdict.conflicts.push({ index: i, first });
  });
  return verdict;
};

/**
 * The insert_deduplication_token of a block: where its rows sit on Kafka. A
 * batch re-read after a crash covers the same offsets, so its retry carries
 * the same token and ClickHouse drops it.
 */
export const dedupToken = (table: string, topic: string, partition: number, firstOffset: string, lastOffset: string): string =>
  `${table}|${topic}|${partition}|${firstOffset}-${lastOffset}`;

/**
 * The token of one insert: its table, offset range, row count and months. The
 * rows a write-once batch inserts depend only on the index and the records,
 * so a re-read of the same offsets builds the same blocks with the same tokens.
 */
export const blockToken = (rows: Pick<TableRows, 'table' | 'offsets' | 'ids'>, topic: string, partition: number): string => {
  const months = rows.ids.map((id) => id.time.slice(0, 7)).sort();
  const range = `${dedupToken(rows.table.name, topic, partition, rows.offsets[0] ?? '', rows.offsets[rows.offsets.length - 1] ?? '')}|${rows.offsets.length}`;
  return `${range}|${months[0] ?? ''}..${months[months.length - 1] ?? ''}`;
};

/** The committed offset is the next one to read. */
export const nextOffset = (offset: string): string => (BigInt(offset) + 1n).toString();
