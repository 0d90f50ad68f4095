// The pure half of the audit sink: one Kafka batch in, rows per table and
// dead letters out. No Kafka client, no ClickHouse, no clock.
import type { Codec } from '../../schemas/codec.ts';
import { compact, decisionRow, signalRow, trustRow, type CellValue } from '../../schemas/clickhouse/rows.ts';
import { DECISIONS, SIGNALS, TRUST_TRANSITIONS, type TableSpec } from '../../schemas/clickhouse/tables.ts';
import type { Topics } from '../lib/config.ts';

export type SinkMessage = { offset: string; key: Buffer | null; value: Buffer | null };

export type RejectReason = 'decode_failed' | 'invalid_event' | 'wrong_topic' | 'clickhouse_rejected';

export type Rejected = { offset: string; key: Buffer | null; value: Buffer | null; reason: RejectReason; message: string };

/** Rows for one table, each with the offset it came from (so a rejected row can be traced back). */
export type TableRows = { table: TableSpec; rows: CellValue[][]; offsets: string[] };

export type MappedBatch = { tables: TableRows[]; rejected: Rejected[]; tombstones: number };

export type TopicRole = 'events' | 'session_trust';

export const topicRole = (topics: Topics, topic: string): TopicRole | undefined => {
  if (topic === topics.decisions || topic === topics.signals) return 'events';
  if (topic === topics.sessionTrust) return 'session_trust';
  return undefined;
};

/**
 * Decodes and maps every message of one partition batch. A message that
 * cannot be decoded or violates the contract becomes a `Rejected` value; the
 * good messages around it are mapped as usual.
 */
export const mapBatch = (codec: Codec, role: TopicRole, topic: string, partition: number, messages: readonly SinkMessage[]): MappedBatch => {
  const decisions: TableRows = { table: DECISIONS, rows: [], offsets: [] };
  const signals: TableRows = { table: SIGNALS, rows: [], offsets: [] };
  const trust: TableRows = { table: TRUST_TRANSITIONS, rows: [], offsets: [] };
  const rejected: Rejected[] = [];
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
      trust.rows.push(compact(TRUST_TRANSITIONS, trustRow(r.value, at)));
      trust.offsets.push(m.offset);
      continue;
    }
    const r = codec.decodeEvent(m.value);
    if (!r.ok) {
      rejected.push({ ...m, reason: r.error.code === 'invalid_event' ? 'invalid_event' : 'decode_failed', message: r.error.message });
      continue;
    }
    const e = r.value;
    if (e.type === 'decision') {
      decisions.rows.push(compact(DECISIONS, decisionRow(e, at)));
      decisions.offsets.push(m.offset);
    } else {
      signals.rows.push(compact(SIGNALS, signalRow(e, at)));
      signals.offsets.push(m.offset);
    }
  }
  return { tables: [decisions, signals, trust].filter((t) => t.rows.length > 0), rejected, tombstones };
};

/**
 * The insert_deduplication_token of a block: where its rows sit on Kafka. A
 * batch re-read after a crash covers the same offsets, so its retry carries
 * the same token and ClickHouse drops it.
 */
export const dedupToken = (table: string, topic: string, partition: number, firstOffset: string, lastOffset: string): string =>
  `${table}|${topic}|${partition}|${firstOffset}-${lastOffset}`;

/** The committed offset is the next one to read. */
export const nextOffset = (offset: string): string => (BigInt(offset) + 1n).toString();
