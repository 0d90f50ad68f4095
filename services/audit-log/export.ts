// Evidence inside the NDJSON decision export (`GET /v1/audit/decisions` with
// `Accept: application/x-ndjson` and `?proofs=1`): every decision line gets an
// `audit_proof` member — its leaf index and inclusion proof against the
// latest checkpoint of its log when the export began — and the export closes
// with one `{"checkpoint": …}` line per log the proofs use (the signed notes)
// and a `{"verifier_keys": […]}` line. `verifyExport` checks such a file with
// the key alone (`trustfold audit verify --bundle FILE`): each line's record
// is rebuilt into its leaf by the leaf rule (the line without `audit` and
// `audit_proof`, at the line's `audit.kafka` coordinates), so an altered line
// is found, not only an altered proof.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { checkRecordProof, signedCheckpointSchema, toSignedCheckpoint, type RecordProof, type SignedCheckpoint } from './evidence.ts';
import { parseVerifierKey, type Verifier } from './note.ts';
import type { Prover } from './proofs.ts';
import type { AuditLogStore, StoredCheckpoint } from './store.ts';
import { logIdOf } from './writer.ts';

const b64 = (h: Uint8Array): string => Buffer.from(h).toString('base64');
const hash64 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'a base64 SHA-256 hash');

/** The `audit_proof` member of a decision line. */
export const lineProofSchema = z.union([
  z.object({ log_id: z.string(), leaf_index: z.number().int().min(0), tree_size: z.number().int().min(1), leaf_hash: hash64, inclusion_proof: z.array(hash64) }),
  z.object({ log_id: z.string(), leaf_index: z.number().int().min(0), not_checkpointed: z.literal(true) }),
  z.object({ not_logged: z.literal(true) }),
]);
export type LineProof = z.infer<typeof lineProofSchema>;

/** What a decision line must hold for its proof to be checked. */
type ExportedDecision = { event_id: string; tenant_id: string; audit: { kafka: { topic: string; partition: number; offset: string } } };

export type ExportSession = {
  /** The `audit_proof` of one exported decision. */
  proofOf(d: ExportedDecision): Promise<LineProof>;
  /** The signed checkpoints the proofs so far were made against, one per log. */
  checkpoints(): SignedCheckpoint[];
  verifierKeys: readonly string[];
};

/**
 * One export's evidence: the latest checkpoint of every log is read once at
 * the start, so every line of the export is proven against the same
 * checkpoints (one per log), which close the export.
 */
export const createExportProofs = (deps: { store: Pick<AuditLogStore, 'leafAt' | 'latestCheckpoints'>; prover: Prover; verifierKeys: readonly string[] }) => ({
  begin: async (): Promise<ExportSession> => {
    const latest = new Map<string, StoredCheckpoint>((await deps.store.latestCheckpoints()).map((c) => [c.log, c]));
    const used = new Map<string, StoredCheckpoint>();
    return {
      verifierKeys: deps.verifierKeys,
      proofOf: async (d) => {
        const log = logIdOf(d.audit.kafka.topic, d.audit.kafka.partition);
        // The leaf of this very copy (a record sent twice has a leaf per copy), by its Kafka offset.
        const leaf = await deps.store.leafAt(log, d.audit.kafka.offset, d.tenant_id, 'decision', d.event_id.toLowerCase());
        if (leaf === undefined) return { not_logged: true };
        const c = latest.get(log);
        if (c === undefined || c.size <= leaf.index) return { log_id: log, leaf_index: leaf.index, not_checkpointed: true };
        used.set(log, c);
        const path = await deps.prover.inclusion(log, leaf.index, c.size);
        return { log_id: log, leaf_index: leaf.index, tree_size: c.size, leaf_hash: b64(leaf.hash), inclusion_proof: path.map(b64) };
      },
      checkpoints: () => [...used.values()].map(toSignedCheckpoint),
    };
  },
});

export type ExportProofs = ReturnType<typeof createExportProofs>;

export type ExportFinding = { line: number; problem: 'malformed' | 'changed' | 'bad_proof' | 'bad_checkpoint' | 'missing_checkpoint' | 'not_checkpointed' | 'not_logged' | 'key_not_pinned'; ref?: string; log_id?: string; leaf_index?: number; message: string };
export type ExportReport = { ok: boolean; records: number; verified: number; findings: ExportFinding[] };

const decisionLine = z.looseObject({
  event_id: z.string(),
  audit: z.looseObject({ kafka: z.object({ topic: z.string(), partition: z.number().int().min(0), offset: z.string().regex(/^\d+$/) }) }),
  audit_proof: lineProofSchema,
});

/** Verifies an NDJSON export made with `?proofs=1`, offline. `pinnedKeys` replace the export's own key line. */
export const verifyExport = (file: string, pinnedKeys?: readonly string[]): ExportReport => {
  const findings: ExportFinding[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  const records: { line: number; value: z.infer<typeof decisionLine> }[] = [];
  const notes = new Map<string, string>();
  let ownKeys: string[] | undefined;
  lines.forEach((text, i) => {
    if (text.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      findings.push({ line: i + 1, problem: 'malformed', message: `line ${i + 1} is not JSON` });
      return;
    }
    if (typeof v === 'object' && v !== null && 'checkpoint' in v) {
      const c = signedCheckpointSchema.safeParse((v as { checkpoint: unknown }).checkpoint);
      if (c.success) notes.set(`${c.data.log_id}@${c.data.size}`, c.data.note);
      else findings.push({ line: i + 1, problem: 'malformed', message: `line ${i + 1}: not a signed checkpoint` });
      return;
    }
    if (typeof v === 'object' && v !== null && 'verifier_keys' in v) {
      const k = z.array(z.string()).safeParse((v as { verifier_keys: unknown }).verifier_keys);
      if (k.success) ownKeys = k.data;
      return;
    }
    if (typeof v === 'object' && v !== null && 'next_cursor' in v) return;
    const d = decisionLine.safeParse(v);
    if (!d.success) findings.push({ line: i + 1, problem: 'malformed', message: `line ${i + 1} is not a decision with audit_proof: ${d.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}` });
    else records.push({ line: i + 1, value: d.data });
  });
  const keys = pinnedKeys ?? ownKeys ?? [];
  if (pinnedKeys !== undefined && ownKeys !== undefined && ownKeys.join('\n') !== pinnedKeys.join('\n')) {
    findings.push({ line: 0, problem: 'key_not_pinned', message: 'the export names another key than the one given with --key' });
  }
  const verifiers: Verifier[] = [];
  for (const k of keys) {
    const v = parseVerifierKey(k);
    if (v.ok) verifiers.push(v.verifier);
    else findings.push({ line: 0, problem: 'malformed', message: `not a verifier key: ${v.reason}` });
  }
  let verified = 0;
  for (const { line, value } of records) {
    const { audit, audit_proof: p, ...record } = value;
    const ref = value.event_id;
    if ('not_logged' in p) {
      findings.push({ line, problem: 'not_logged', ref, message: `decision ${ref} (line ${line}) has no leaf in the log` });
      continue;
    }
    const where = { ref, log_id: p.log_id, leaf_index: p.leaf_index };
    if ('not_checkpointed' in p) {
      findings.push({ line, problem: 'not_checkpointed', ...where, message: `decision ${ref} (line ${line}) was logged after the checkpoint the export used` });
      continue;
    }
    const note = notes.get(`${p.log_id}@${p.tree_size}`);
    if (note === undefined) {
      findings.push({ line, problem: 'missing_checkpoint', ...where, message: `no checkpoint line for ${p.log_id} at size ${p.tree_size}` });
      continue;
    }
    const leaf = { v: 1 as const, kind: 'decision' as const, kafka: audit.kafka, record: record as RecordProof['leaf']['record'] };
    const c = checkRecordProof({ log_id: p.log_id, leaf_index: p.leaf_index, tree_size: p.tree_size, leaf, leaf_hash: p.leaf_hash, inclusion_proof: p.inclusion_proof }, verifiers, note);
    if (c.ok) verified++;
    else findings.push({ line, problem: c.problem, ...where, message: `decision ${ref} (line ${line}, leaf ${p.leaf_index} of ${p.log_id}): ${c.reason}` });
  }
  if (records.length === 0) findings.push({ line: 0, problem: 'malformed', message: 'no decision lines with audit_proof: not an export made with ?proofs=1' });
  return { ok: findings.length === 0, records: records.length, verified, findings };
};
