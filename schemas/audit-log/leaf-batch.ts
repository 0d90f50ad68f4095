// The leaves of one partition batch, each record's leaf by the leaf rule,
// hashed. The audit sink hashes the leaves of the records it accepted in its
// own decoding threads (`hashedLeaf`, from services/audit-sink/batch.ts) and
// hands them to its hook; the stand-alone writer hashes raw Kafka values here
// (`hashBatch`: decoded with the sink's codec, so exactly the records the sink
// accepts get a leaf). Pure and synchronous, so it runs either inline or in the
// writer's hashing thread (./leaf-worker.ts).
import type { Codec } from '../codec.ts';
import { leafHashOf, type LeafInput, type LeafKind } from './leaf.ts';
import { leafKey, leafOfEvent, leafOfTrust } from './records.ts';

export type RawMessage = { offset: string; value: Uint8Array | null };
export type HashedLeaf = { offset: string; hash: Uint8Array; tenant: string; kind: LeafKind; ref: string };

/** One record's leaf, hashed, with the tenant and reference a proof is found by. */
export const hashedLeaf = (offset: string, input: LeafInput): HashedLeaf => {
  const key = leafKey(input);
  return { offset, hash: leafHashOf(input), tenant: key.tenant, kind: input.kind, ref: key.ref };
};

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
    out.push(hashedLeaf(m.offset, input));
  }
  return out;
};
