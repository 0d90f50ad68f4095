// A record's evidence: its leaf (the record as the API returns it, with its
// Kafka coordinates), the leaf's index in its log, the inclusion proof and the
// signed checkpoint it is proven against — enough for anyone holding the
// public key to check it with no access to the system. Built from the store
// (`createEvidence`) and checked with nothing but the key (`checkRecordProof`).
import { z } from 'zod';
import type { Json } from '../../schemas/audit-log/jcs.ts';
import { LEAF_KINDS, leafHashOf, type LeafInput, type LeafKind } from '../../schemas/audit-log/leaf.ts';
import { equalHash, verifyInclusion, type Hash } from '../../schemas/audit-log/merkle.ts';
import { openCheckpoint, type Verifier } from './note.ts';
import type { Prover } from './proofs.ts';
import { splitLogId, type RecordReader } from './record-reader.ts';
import { leafKey } from '../../schemas/audit-log/records.ts';
import type { AuditLogStore, StoredCheckpoint } from './store.ts';

const b64 = (h: Uint8Array): string => Buffer.from(h).toString('base64');
const unb64 = (s: string): Hash => new Uint8Array(Buffer.from(s, 'base64'));
const hash64 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'a base64 SHA-256 hash');

export const signedCheckpointSchema = z.object({ log_id: z.string(), origin: z.string(), size: z.number().int().min(0), root_hash: hash64, note: z.string(), signed_at: z.string() });
export type SignedCheckpoint = z.infer<typeof signedCheckpointSchema>;

/** Any JSON value, named: it is recursive, so the OpenAPI document lists it under components.schemas (services/lib/http.ts). */
const jsonValue: z.ZodType<Json> = z
  .lazy(() => z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(jsonValue), z.record(z.string(), jsonValue)]))
  .meta({ id: 'JsonValue' });

export const recordProofSchema = z.object({
  kind: z.enum(LEAF_KINDS),
  ref: z.string(),
  tenant_id: z.string(),
  log_id: z.string(),
  leaf_index: z.number().int().min(0),
  /** Leaf bytes = RFC 8785 JCS of this object; leaf hash = SHA-256(0x00 ‖ bytes). */
  leaf: z.object({ v: z.literal(1), kind: z.enum(LEAF_KINDS), kafka: z.object({ topic: z.string(), partition: z.number().int().min(0), offset: z.string().regex(/^\d+$/) }), record: jsonValue }),
  leaf_hash: hash64,
  tree_size: z.number().int().min(1),
  inclusion_proof: z.array(hash64),
  checkpoint: signedCheckpointSchema,
  /** Other leaves of the same record (a copy sent again is its own leaf). */
  other_leaves: z.array(z.object({ log_id: z.string(), leaf_index: z.number().int().min(0) })),
});
export type RecordProof = z.infer<typeof recordProofSchema>;

export const toSignedCheckpoint = (c: StoredCheckpoint): SignedCheckpoint => ({ log_id: c.log, origin: c.origin, size: c.size, root_hash: b64(c.root), note: c.note, signed_at: c.signedAt });

export type EvidenceError = { status: 404 | 409; code: 'not_found' | 'not_checkpointed'; message: string };

export const createEvidence = (deps: { store: Pick<AuditLogStore, 'findLeaves' | 'latestCheckpoints' | 'checkpointAt'>; prover: Prover; reader: Pick<RecordReader, 'recordAt'> }) => {
  /**
   * The evidence of one record of the tenant's (all tenants' for undefined),
   * against the log's latest checkpoint or the one of `size`. Another
   * tenant's record is not found: leaves are looked up with the tenant.
   */
  const proofOf = async (kind: LeafKind, ref: string, tenant: string | undefined, size?: number): Promise<{ ok: true; proof: RecordProof } | { ok: false; error: EvidenceError }> => {
    const fail = (status: EvidenceError['status'], code: EvidenceError['code'], message: string) => ({ ok: false as const, error: { status, code, message } });
    const leaves = await deps.store.findLeaves(tenant, kind, ref);
    if (leaves.length === 0) return fail(404, 'not_found', `no logged ${kind} ${ref}`);
    // The copy the store holds (the first one, under write-once), rebuilt from its row.
    let chosen: { leaf: (typeof leaves)[number]; input: LeafInput } | undefined;
    for (const l of leaves) {
      const input = await deps.reader.recordAt(kind, { ...splitLogId(l.log), offset: l.offset }, tenant);
      // The leaf rows only say where to look: a row at those coordinates that is another record is not this one's.
      if (input !== undefined && leafKey(input).ref === ref) {
        chosen = { leaf: l, input };
        break;
      }
    }
    if (chosen === undefined) return fail(404, 'not_found', `${kind} ${ref} is logged but no stored row holds it (run audit verify)`);
    const { leaf, input } = chosen;
    const checkpoint = size !== undefined ? await deps.store.checkpointAt(leaf.log, size) : (await deps.store.latestCheckpoints(leaf.log))[0];
    if (checkpoint === undefined && size !== undefined) return fail(404, 'not_found', `log ${leaf.log} has no checkpoint of size ${size}`);
    if (checkpoint === undefined || checkpoint.size <= leaf.index) {
      return fail(409, 'not_checkpointed', `${kind} ${ref} is leaf ${leaf.index} of ${leaf.log}, past the ${checkpoint === undefined ? 'log\'s first' : `checkpoint of size ${checkpoint.size}`}: ${size === undefined ? 'ask again after the next checkpoint' : 'ask for a later checkpoint'}`);
    }
    const path = await deps.prover.inclusion(leaf.log, leaf.index, checkpoint.size);
    return {
      ok: true,
      proof: {
        kind,
        ref,
        tenant_id: leaf.tenant,
        log_id: leaf.log,
        leaf_index: leaf.index,
        leaf: { v: 1, kind: input.kind, kafka: input.kafka, record: input.record as RecordProof['leaf']['record'] },
        leaf_hash: b64(leaf.hash),
        tree_size: checkpoint.size,
        inclusion_proof: path.map(b64),
        checkpoint: toSignedCheckpoint(checkpoint),
        other_leaves: leaves.filter((l) => l !== leaf).map((l) => ({ log_id: l.log, leaf_index: l.index })),
      },
    };
  };
  return { proofOf };
};

export type ProofCheck = { ok: true } | { ok: false; problem: 'changed' | 'bad_proof' | 'bad_checkpoint'; reason: string };

/**
 * Checks a record's evidence with the public key(s) alone: the record hashes
 * to the leaf the proof starts from, the proof leads to the checkpoint's root,
 * the checkpoint is signed by a known key for this log's origin.
 */
/** What a proof check reads: the record's leaf, where it is, and its audit path. */
export type ProofParts = Pick<RecordProof, 'log_id' | 'leaf_index' | 'tree_size' | 'leaf' | 'leaf_hash' | 'inclusion_proof'> & { checkpoint?: { note: string } };

export const checkRecordProof = (p: ProofParts, verifiers: readonly Verifier[], note: string = p.checkpoint?.note ?? ''): ProofCheck => {
  const opened = openCheckpoint(note, verifiers);
  if (!opened.ok) return { ok: false, problem: 'bad_checkpoint', reason: opened.reason };
  const c = opened.checkpoint;
  if (!c.origin.endsWith(`/${p.log_id}`)) return { ok: false, problem: 'bad_checkpoint', reason: `checkpoint origin ${c.origin} is not log ${p.log_id}'s` };
  if (c.size !== p.tree_size) return { ok: false, problem: 'bad_proof', reason: `proof is for size ${p.tree_size}, the checkpoint signs size ${c.size}` };
  const input: LeafInput = { kind: p.leaf.kind, kafka: p.leaf.kafka, record: p.leaf.record as Json };
  const rebuilt = leafHashOf(input);
  const v = verifyInclusion(p.leaf_index, c.size, rebuilt, p.inclusion_proof.map(unb64), c.root);
  if (v.ok) return { ok: true };
  // The proof from the hash the log holds tells an altered record from an altered proof.
  const logged = unb64(p.leaf_hash);
  if (!equalHash(rebuilt, logged) && verifyInclusion(p.leaf_index, c.size, logged, p.inclusion_proof.map(unb64), c.root).ok) {
    return { ok: false, problem: 'changed', reason: 'the record differs from what was logged at this leaf' };
  }
  return { ok: false, problem: 'bad_proof', reason: v.reason };
};
