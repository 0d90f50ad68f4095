// Audit records in the form the leaf rule (./leaf.ts) hashes, from either
// side: a log writer maps the event it read from Kafka through the same row
// mapping the sink stores and the API reads back (schemas/clickhouse/rows.ts),
// a verifier maps the row it read from ClickHouse. Pure.
import {
  decisionFromRecord,
  decisionRow,
  signalRow,
  trustRow,
  type DecisionRecord,
  type DecisionRow,
  type KafkaCoordinates,
  type SignalRow,
  type TrustRow,
} from '../clickhouse/rows.ts';
import type { SessionTrust, TrustfoldEvent } from '../events.ts';
import type { Json } from './jcs.ts';
import { withoutAudit, type LeafInput } from './leaf.ts';

const NO_TIME = '1970-01-01 00:00:00.000';

/** A stored row's fields that locate it on Kafka (read with 64-bit integers unquoted or quoted). */
type Located = { kafka_topic: string; kafka_partition: number | string; kafka_offset: number | string };

const coordinatesOf = (r: Located): KafkaCoordinates => ({ topic: r.kafka_topic, partition: Number(r.kafka_partition), offset: String(r.kafka_offset) });

export const decisionLeafOfRecord = (r: DecisionRecord): LeafInput => ({
  kind: 'decision',
  kafka: coordinatesOf(r),
  record: withoutAudit(decisionFromRecord(r)),
});

export type StoredSignal = Located & { payload: string };
export const signalLeafOfRecord = (r: StoredSignal): LeafInput => ({ kind: 'signal', kafka: coordinatesOf(r), record: JSON.parse(r.payload) as Json });

export type StoredTrust = Located & { state: string };
export const trustLeafOfRecord = (r: StoredTrust): LeafInput => ({ kind: 'trust', kafka: coordinatesOf(r), record: JSON.parse(r.state) as Json });

/** The leaf of a decision from its row as the sink stores it (`decisionRow(e, at)`): the sink's decoder builds that row anyway. */
export const leafOfDecisionRow = (decision: DecisionRow, at: KafkaCoordinates): LeafInput => {
  // The row as the store holds it, read back as the API does.
  const row = { ...decision, ingested_at: NO_TIME } as unknown as DecisionRecord;
  // decisionFromRecord builds plain JSON (no undefined members, no shared cycles): dropping `audit` needs no JSON round trip here.
  const { audit: _audit, ...record } = decisionFromRecord(row);
  return { kind: 'decision', kafka: { topic: at.topic, partition: at.partition, offset: at.offset }, record: record as unknown as Json };
};

/** The leaf of a signal from its row (`signalRow(e, at)`). */
export const leafOfSignalRow = (signal: SignalRow, at: KafkaCoordinates): LeafInput =>
  signalLeafOfRecord({ kafka_topic: at.topic, kafka_partition: at.partition, kafka_offset: at.offset, payload: String(signal.payload) });

/** The leaf of a trust transition from its row (`trustRow(s, at)`). */
export const leafOfTrustRow = (trust: TrustRow, at: KafkaCoordinates): LeafInput =>
  trustLeafOfRecord({ kafka_topic: at.topic, kafka_partition: at.partition, kafka_offset: at.offset, state: String(trust.state) });

/** The leaf of an event read from Kafka: exactly what the verifier will rebuild from the row the sink stores. */
export const leafOfEvent = (e: TrustfoldEvent, at: KafkaCoordinates): LeafInput =>
  e.type === 'decision' ? leafOfDecisionRow(decisionRow(e, at), at) : leafOfSignalRow(signalRow(e, at), at);

export const leafOfTrust = (s: SessionTrust, at: KafkaCoordinates): LeafInput => leafOfTrustRow(trustRow(s, at), at);

/** A trust transition's reference: its session and version. */
export const trustRef = (sessionId: string, version: number | string): string => `${sessionId}#${String(version)}`;

/**
 * The tenant and reference of a leaf, kept beside its hash so a proof can be
 * found by record: the event id of a decision or signal, session#version of a
 * trust transition.
 */
export const leafKey = (l: LeafInput): { tenant: string; ref: string } => {
  const r = l.record as Record<string, Json>;
  const tenant = String(r['tenant_id'] ?? '');
  if (l.kind === 'trust') return { tenant, ref: trustRef(String(r['session_id'] ?? ''), String(r['version'] ?? '')) };
  return { tenant, ref: String(r['event_id'] ?? '') };
};
