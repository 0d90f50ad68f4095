// The leaves of one partition batch: from records the audit sink decoded (its
// hook), or from the raw Kafka values (the stand-alone writer: decoded with the
// sink's codec, so exactly the records the sink accepts get a leaf); each
// record's leaf by the leaf rule, hashed. Pure and synchronous, so it runs
// either inline or in the writer's hashing thread (./leaf-worker.ts).
import type { Codec } from '../../schemas/codec.ts';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { leafHashOf, type LeafInput, type LeafKind } from './leaf.ts';
import { leafKey, leafOfEvent, leafOfTrust } from './records.ts';

export type RawMessage = { offset: string; value: Uint8Array | null };
export type HashedLeaf = { offset: string; hash: Uint8Array; tenant: string; kind: LeafKind; ref: string };
/** A record the audit sink accepted, as it decoded it (the sink's hook hands these over: no second decode). */
export type DecodedRecord = { offset: string; trust: false; event: TrustfoldEvent } | { offset: string; trust: true; state: SessionTrust };

const hashed = (offset: string, input: LeafInput): HashedLeaf => {
  const key = leafKey(input);
  return { offset, hash: leafHashOf(input), tenant: key.tenant, kind: input.kind, ref: key.ref };
};

/** The leaves of records already decoded (by the sink), in the order given. */
export const hashDecoded = (topic: string, partition: number, records: readonly DecodedRecord[]): HashedLeaf[] =>
  records.map((r) => {
    const at = { topic, partition, offset: r.offset };
    return hashed(r.offset, r.trust ? leafOfTrust(r.state, at) : leafOfEvent(r.event, at));
  });

export const hashBatch = (codec: Codec, trust: boolean, topic: string, partition: number, messages: readonly RawMessage[]): HashedLeaf[] => {
  const out: HashedLeaf[] = [];
  for (const m of messages) {
    if (m.value === null || m.value.length === 0) continue;
    const at = { topic, partition, offset: m.offset };
    const value = Buffer.isBuffer(m.value) ? m.value : Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength);
    let input: LeafInput;
    // Exactly the records the sink accepts: what does not decode or breaks the contract is dead-lettered there, and no leaf here.
    if (trust) {
      const r = codec.decodeTrust(value);
      if (!r.ok) continue;
      input = leafOfTrust(r.value, at);
    } else {
      const r = codec.decodeEvent(value);
      if (!r.ok) continue;
      input = leafOfEvent(r.value, at);
    }
    out.push(hashed(m.offset, input));
  }
  return out;
};
