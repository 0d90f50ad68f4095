// An evidence bundle: a directory a responder can hand to someone with no
// access to the system. It holds every record with its inclusion proof, the
// signed checkpoints they are proven against and the signer's public key;
// `verifyBundle` checks it with nothing else (no server, no ClickHouse).
//
//   manifest.json                 what the bundle holds (format, session, tenant, files)
//   trustfold-audit-key.txt       verifier key(s), as served at /.well-known/trustfold-audit-key
//   checkpoints/<log>.<size>.note signed checkpoints (C2SP signed note)
//   records/<n>-<kind>-<ref>.json a record's leaf, leaf index, inclusion proof, checkpoint file
//
// What it proves: each record is the one logged at its leaf of a log whose
// checkpoint the key signed. What it cannot prove alone: that the bundle holds
// every record of the session (the manifest is not signed) — compare the key
// with the one the operator publishes, and the checkpoints with the ones
// witnesses keep.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { checkRecordProof, recordProofSchema, type RecordProof } from './evidence.ts';
import { parseVerifierKey, type Verifier } from './note.ts';

export const BUNDLE_FORMAT = 'trustfold-audit-bundle/1';
export const KEY_FILE = 'trustfold-audit-key.txt';

const manifestSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  session_id: z.string(),
  tenant_id: z.string().nullable(),
  exported_at: z.string(),
  key_file: z.string(),
  records: z.array(z.string()),
  checkpoints: z.array(z.string()),
  /** Records of the session logged after the latest checkpoint: not in the bundle. */
  not_checkpointed: z.array(z.string()),
});
export type Manifest = z.infer<typeof manifestSchema>;

const recordFileSchema = recordProofSchema.omit({ checkpoint: true }).extend({ checkpoint_file: z.string() });

const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');
const checkpointFile = (p: RecordProof): string => `checkpoints/${safe(p.log_id)}.${p.tree_size}.note`;

/** Writes a bundle of the given proofs into `dir` (created; files it names are overwritten). */
export const writeBundle = (dir: string, o: { sessionId: string; tenant: string | undefined; exportedAt: string; keys: readonly string[]; proofs: readonly RecordProof[]; notCheckpointed: readonly string[] }): Manifest => {
  mkdirSync(join(dir, 'records'), { recursive: true });
  mkdirSync(join(dir, 'checkpoints'), { recursive: true });
  const checkpoints = new Map<string, string>();
  const records = o.proofs.map((p, i) => {
    const { checkpoint, ...rest } = p;
    const cp = checkpointFile(p);
    checkpoints.set(cp, checkpoint.note);
    const file = `records/${String(i + 1).padStart(4, '0')}-${p.kind}-${safe(p.ref)}.json`;
    writeFileSync(join(dir, file), `${JSON.stringify({ ...rest, checkpoint_file: cp }, null, 2)}\n`);
    return file;
  });
  for (const [file, note] of checkpoints) writeFileSync(join(dir, file), note);
  writeFileSync(join(dir, KEY_FILE), `${o.keys.join('\n')}\n`);
  const manifest: Manifest = { format: BUNDLE_FORMAT, session_id: o.sessionId, tenant_id: o.tenant ?? null, exported_at: o.exportedAt, key_file: KEY_FILE, records, checkpoints: [...checkpoints.keys()], not_checkpointed: [...o.notCheckpointed] };
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
};

export type BundleFinding = { file: string; problem: 'missing' | 'malformed' | 'changed' | 'bad_proof' | 'bad_checkpoint' | 'unlisted' | 'key_not_pinned'; ref?: string; log_id?: string; leaf_index?: number; message: string };
export type BundleReport = { ok: boolean; session_id?: string; records: number; verified: number; findings: BundleFinding[] };

const readText = (dir: string, file: string): string | undefined => {
  try {
    return readFileSync(join(dir, file), 'utf8');
  } catch {
    return undefined;
  }
};

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
};

/**
 * Verifies a bundle offline. `pinnedKeys` (the key the operator publishes,
 * obtained some other way) replace the bundle's own key file, which anyone
 * rewriting the bundle could also replace.
 */
export const verifyBundle = (dir: string, pinnedKeys?: readonly string[]): BundleReport => {
  const findings: BundleFinding[] = [];
  const report = (verified: number, records: number, session?: string): BundleReport => ({ ok: findings.length === 0, ...(session !== undefined ? { session_id: session } : {}), records, verified, findings });
  const mtext = readText(dir, 'manifest.json');
  const m = mtext === undefined ? undefined : manifestSchema.safeParse(parseJson(mtext));
  if (m === undefined || !m.success) {
    findings.push({ file: 'manifest.json', problem: mtext === undefined ? 'missing' : 'malformed', message: mtext === undefined ? 'no manifest.json: not a bundle' : `manifest.json is not a ${BUNDLE_FORMAT} manifest` });
    return report(0, 0);
  }
  const manifest = m.data;
  const keyText = pinnedKeys !== undefined ? pinnedKeys.join('\n') : readText(dir, manifest.key_file);
  if (keyText === undefined) {
    findings.push({ file: manifest.key_file, problem: 'missing', message: 'the key file is missing (pass --key to verify against a known key)' });
    return report(0, manifest.records.length, manifest.session_id);
  }
  const verifiers: Verifier[] = [];
  for (const line of keyText.split('\n').map((l) => l.trim()).filter((l) => l !== '')) {
    const v = parseVerifierKey(line);
    if (v.ok) verifiers.push(v.verifier);
    else findings.push({ file: pinnedKeys !== undefined ? '--key' : manifest.key_file, problem: 'malformed', message: `not a verifier key: ${v.reason}` });
  }
  if (pinnedKeys !== undefined) {
    const own = readText(dir, manifest.key_file)?.trim();
    if (own !== undefined && own !== pinnedKeys.join('\n').trim()) findings.push({ file: manifest.key_file, problem: 'key_not_pinned', message: 'the bundle names another key than the one given with --key' });
  }

  let verified = 0;
  for (const file of manifest.records) {
    const text = readText(dir, file);
    if (text === undefined) {
      findings.push({ file, problem: 'missing', message: `${file} is listed in the manifest but missing` });
      continue;
    }
    const r = recordFileSchema.safeParse(parseJson(text));
    if (!r.success) {
      findings.push({ file, problem: 'malformed', message: `${file} is not a record proof: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` });
      continue;
    }
    const { checkpoint_file, ...rest } = r.data;
    const where = { ref: rest.ref, log_id: rest.log_id, leaf_index: rest.leaf_index };
    const note = readText(dir, checkpoint_file);
    if (note === undefined) {
      findings.push({ file: checkpoint_file, problem: 'missing', ...where, message: `checkpoint ${checkpoint_file} of ${file} is missing` });
      continue;
    }
    const c = checkRecordProof(rest, verifiers, note);
    if (c.ok) {
      verified++;
      continue;
    }
    const culprit = c.problem === 'bad_checkpoint' ? checkpoint_file : file;
    findings.push({ file: culprit, problem: c.problem, ...where, message: `${rest.kind} ${rest.ref} (leaf ${rest.leaf_index} of ${rest.log_id}): ${c.reason}` });
  }
  const listed = new Set([...manifest.records, ...manifest.checkpoints]);
  for (const sub of ['records', 'checkpoints']) {
    let names: string[];
    try {
      names = readdirSync(join(dir, sub));
    } catch {
      names = [];
    }
    for (const n of names) if (!listed.has(`${sub}/${n}`)) findings.push({ file: `${sub}/${n}`, problem: 'unlisted', message: `${sub}/${n} is not in the manifest (added after export)` });
  }
  return report(verified, manifest.records.length, manifest.session_id);
};
