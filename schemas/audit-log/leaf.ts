// The leaf rule: which bytes of an audit record become a Merkle leaf. Pure.
//
//   leaf bytes = UTF-8 of RFC 8785 JCS of
//     {"v":1, "kind":"decision"|"signal"|"trust",
//      "kafka":{"topic":T,"partition":P,"offset":"O"},
//      "record": R}
//
// R is the record exactly as the audit API returns it — a decision as
// `GET /v1/audit/decisions/:event_id` shows it (the contract's JSON), a signal
// as the timeline shows it, a trust transition's state — without the API's
// `audit` provenance member (its `ingested_at` is the store's clock, not part
// of what was accepted; its Kafka coordinates are the `kafka` member here).
// The coordinates bind the leaf to its place in the log: the same event sent
// twice is two leaves with different bytes.
import { canonicalBytes, type Json } from './jcs.ts';
import { hashLeaf, type Hash } from './merkle.ts';

export const LEAF_KINDS = ['decision', 'signal', 'trust'] as const;
export type LeafKind = (typeof LEAF_KINDS)[number];

export type Coordinates = { topic: string; partition: number; offset: string };

export type LeafInput = { kind: LeafKind; kafka: Coordinates; record: Json };

/** The record without the API's provenance member. */
export const withoutAudit = (record: Record<string, unknown>): Json => {
  const { audit: _audit, ...rest } = record;
  return JSON.parse(JSON.stringify(rest)) as Json;
};

export const leafBytes = (l: LeafInput): Uint8Array =>
  canonicalBytes({ v: 1, kind: l.kind, kafka: { topic: l.kafka.topic, partition: l.kafka.partition, offset: l.kafka.offset }, record: l.record });

export const leafHashOf = (l: LeafInput): Hash => hashLeaf(leafBytes(l));
