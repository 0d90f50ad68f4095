// Write-once identities: what the sink's write-once index keys a record by
// (tenant, namespace, key), its content digest over canonical JSON, and the
// index and evidence rows (record_ids, conflicts). The rule that judges them
// is pure and lives with the sink (services/audit-sink/batch.ts).
import { hash } from 'node:crypto';
import type { DecisionEvent, SessionTrust, SignalEvent } from '../events.ts';
import { compact, toClickHouseTime, type CellValue, type KafkaCoordinates } from './rows-write.ts';
import { CONFLICTS, RECORD_IDS, type RecordNamespace } from './tables.ts';

/**
 * JSON with every object's keys sorted: one text per content, whatever order
 * a decoder built it in. Keys sort by UTF-16 code units (Array#sort's own
 * order), keys whose value is undefined are left out, and every text is the
 * one the first version of this function wrote (digests stored in the
 * write-once index are compared with it forever; test/unit/rows-identity
 * holds it against that reference). Written as loops: the sink computes it
 * for every record.
 */
export const canonicalJson = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v !== 'object' || v === null) return JSON.stringify(v);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      // Array#join writes an undefined or null element as nothing; canonicalJson(null) is 'null'.
      const x: unknown = v[i];
      out += x === undefined ? '' : (canonicalJson(x) ?? '');
    }
    return `${out}]`;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += `${JSON.stringify(k)}:${String(canonicalJson(x))}`;
  }
  return `${out}}`;
};

// crypto.hash: one call, no Hash object per record (the sink digests every record); the same SHA-256 hex as createHash.
export const contentDigest = (canonical: string): string => hash('sha256', canonical, 'hex');

/** The write-once key of a trust transition: its version, then its session (versions are digits, so the first ':' splits). */
export const trustRecordKey = (s: Pick<SessionTrust, 'version' | 'session_id'>): string => `${s.version}:${s.session_id}`;

/** One record as the write-once check sees it. */
export type RecordIdentity = {
  tenant: string;
  namespace: RecordNamespace;
  key: string;
  digest: string;
  /** The partition column's value (ClickHouse text), for grouping inserts by month. */
  time: string;
  /** Canonical JSON of the record: kept as evidence when it conflicts with the stored copy. */
  canonical: string;
};

/** `canonical`: canonicalJson(e), when the caller has a faster way to the same text. */
export const eventIdentity = (e: DecisionEvent | SignalEvent, canonical: string = canonicalJson(e)): RecordIdentity => {
  return { tenant: e.tenant_id, namespace: 'event', key: e.event_id, digest: contentDigest(canonical), time: toClickHouseTime(e.occurred_at), canonical };
};

export const trustIdentity = (s: SessionTrust, canonical: string = canonicalJson(s)): RecordIdentity => {
  return { tenant: s.tenant_id, namespace: 'trust', key: trustRecordKey(s), digest: contentDigest(canonical), time: toClickHouseTime(s.updated_at), canonical };
};

export const recordIdRow = (id: RecordIdentity, at: KafkaCoordinates): CellValue[] =>
  compact(RECORD_IDS, {
    tenant: id.tenant,
    namespace: id.namespace,
    record_key: id.key,
    digest: id.digest,
    occurred_at: id.time,
    kafka_topic: at.topic,
    kafka_partition: at.partition,
    kafka_offset: at.offset,
  });

/** Where and with which digest the first copy of a record was stored. */
export type StoredCopy = { digest: string; kafka: KafkaCoordinates };

export const conflictRow = (copy: RecordIdentity, at: KafkaCoordinates, first: StoredCopy): CellValue[] =>
  compact(CONFLICTS, {
    tenant: copy.tenant,
    namespace: copy.namespace,
    record_key: copy.key,
    first_topic: first.kafka.topic,
    first_partition: first.kafka.partition,
    first_offset: first.kafka.offset,
    first_digest: first.digest,
    copy_digest: copy.digest,
    copy: copy.canonical,
    kafka_topic: at.topic,
    kafka_partition: at.partition,
    kafka_offset: at.offset,
  });
