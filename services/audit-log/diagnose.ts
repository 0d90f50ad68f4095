// What a verifier concludes about one log: the stored leaves against a signed
// checkpoint, then every stored record against the leaves. Pure.
//
// The checkpoint authenticates the leaf hashes (their root must equal it);
// the tenant/ref/offset beside each hash only say where to look, and every
// conclusion is confirmed by rebuilding a leaf from a record.
import { leafHashOf, type LeafInput } from '../../schemas/audit-log/leaf.ts';
import { appendLeaf, emptyFrontier, equalHash, frontierRoot, type Frontier, type Hash } from '../../schemas/audit-log/merkle.ts';
import type { StoredLeaf } from './store.ts';

export type FindingKind = 'changed' | 'deleted' | 'inserted' | 'reordered' | 'truncated' | 'log_tampered' | 'bad_checkpoint';

export type Finding = { kind: FindingKind; log: string; leaf_index?: number; ref?: string; tenant?: string; offset?: string; message: string };

/** A record as stored, with its leaf rebuilt from the stored row. */
export type StoredRecord = { ref: string; tenant: string; leaf: LeafInput };

/**
 * What verify saw that is not tampering: a leaf of a conflicting later copy
 * the sink refused and kept in the `conflicts` table (the log is evidence the
 * attempt was made; the stored record is the first copy).
 */
export type Note = { kind: 'conflict'; log: string; leaf_index: number; ref: string; tenant: string; offset: string; first_offset: string; message: string };

export type LogReport = {
  log: string;
  checkpoint_size: number;
  leaves: number;
  records: number;
  verified: number;
  /** Later copies of a record whose first copy is stored (their leaf rebuilt from it). */
  duplicates: number;
  /** Records past the checkpoint (logged or not yet), checked by the next one. */
  pending: number;
  /** Leaves of refused conflicting copies, matched to the copies kept in the conflicts table. */
  conflicts: number;
  findings: Finding[];
  notes: Note[];
};

/** Roots of a list of leaves at each of the given sizes, in one pass. */
export const rootsAt = (leaves: readonly Hash[], sizes: readonly number[]): Map<number, Hash> => {
  const want = new Set(sizes);
  const out = new Map<number, Hash>();
  let f: Frontier = emptyFrontier();
  if (want.has(0)) out.set(0, frontierRoot(f));
  for (const h of leaves) {
    f = appendLeaf(f, h, () => undefined);
    if (want.has(f.size)) out.set(f.size, frontierRoot(f));
  }
  return out;
};

export const diagnoseLog = (o: {
  log: string;
  checkpoint: { size: number; root: Hash };
  /** Every stored leaf of the log, by index (may run past the checkpoint). */
  leaves: readonly StoredLeaf[];
  records: readonly StoredRecord[];
  /** The refused conflicting copies kept at this log's coordinates, each with its leaf rebuilt. */
  conflicts?: readonly (StoredRecord & { firstOffset: string })[];
  /** Only this tenant's leaves are matched to records (its records are all that was read). */
  tenant?: string | undefined;
}): LogReport => {
  const { log, checkpoint } = o;
  const findings: Finding[] = [];
  const signed = o.leaves.filter((l) => l.index < checkpoint.size);
  const contiguous = signed.every((l, i) => l.index === i);
  if (signed.length < checkpoint.size || !contiguous) {
    findings.push({ kind: 'truncated', log, leaf_index: signed.length, message: `the log store holds ${signed.length} of the ${checkpoint.size} leaves the checkpoint signs: leaves from ${signed.length} on were removed` });
  }
  const root = rootsAt(signed.map((l) => l.hash), [checkpoint.size]).get(checkpoint.size);
  if (root === undefined || !equalHash(root, checkpoint.root)) {
    findings.push({ kind: 'log_tampered', log, message: `the stored leaves do not hash to the signed root of size ${checkpoint.size}: the log store itself was altered` });
  }

  const hashed = o.records.map((r) => ({ ...r, offset: r.leaf.kafka.offset, hash: leafHashOf(r.leaf) }));
  type Row = (typeof hashed)[number];
  const byOffset = new Map<string, Row[]>();
  const byRef = new Map<string, Row[]>();
  for (const r of hashed) {
    byOffset.set(r.offset, [...(byOffset.get(r.offset) ?? []), r]);
    byRef.set(`${r.leaf.kind}\u0000${r.ref}`, [...(byRef.get(`${r.leaf.kind}\u0000${r.ref}`) ?? []), r]);
  }
  const leafAtOffset = new Map(o.leaves.map((l) => [l.offset, l]));
  const used = new Set<Row>();
  let verified = 0;
  let duplicates = 0;
  const deleted: number[] = [];
  const notes: Note[] = [];
  /** Leaves of later copies (duplicates, refused conflicts): no row of their own by design. */
  const copies = new Set<number>();
  const conflictAt = new Map((o.conflicts ?? []).map((c) => [c.leaf.kafka.offset, { ...c, hash: leafHashOf(c.leaf) }]));

  for (const l of signed) {
    if (o.tenant !== undefined && l.tenant !== o.tenant) continue;
    const here = byOffset.get(l.offset) ?? [];
    const exact = here.find((r) => equalHash(r.hash, l.hash));
    if (exact !== undefined) {
      used.add(exact);
      verified++;
      continue;
    }
    const sameRecord = byRef.get(`${l.kind}\u0000${l.ref}`) ?? [];
    const moved = sameRecord.find((r) => equalHash(leafHashOf({ ...r.leaf, kafka: { ...r.leaf.kafka, offset: l.offset } }), l.hash));
    if (moved !== undefined) {
      const own = leafAtOffset.get(moved.offset);
      if (own !== undefined && equalHash(own.hash, moved.hash)) {
        duplicates++;
        copies.add(l.index);
        continue;
      }
      used.add(moved);
      findings.push({ kind: 'reordered', log, leaf_index: l.index, ref: l.ref, tenant: l.tenant, offset: moved.offset, message: `${l.kind} ${l.ref} was logged at leaf ${l.index} (offset ${l.offset}) but is stored at offset ${moved.offset}` });
      continue;
    }
    const refused = conflictAt.get(l.offset);
    if (refused !== undefined && equalHash(refused.hash, l.hash)) {
      copies.add(l.index);
      notes.push({ kind: 'conflict', log, leaf_index: l.index, ref: l.ref, tenant: l.tenant, offset: l.offset, first_offset: refused.firstOffset, message: `${l.kind} ${l.ref} at leaf ${l.index} (offset ${l.offset}) is a refused copy that differs from the stored first copy (offset ${refused.firstOffset}); kept in the conflicts table` });
      continue;
    }
    const changed = here.find((r) => r.ref === l.ref) ?? sameRecord[0];
    if (changed !== undefined) {
      used.add(changed);
      findings.push({ kind: 'changed', log, leaf_index: l.index, ref: l.ref, tenant: l.tenant, offset: changed.offset, message: `${l.kind} ${l.ref} at leaf ${l.index} differs from what was logged` });
      continue;
    }
    deleted.push(l.index);
    findings.push({ kind: 'deleted', log, leaf_index: l.index, ref: l.ref, tenant: l.tenant, offset: l.offset, message: `${l.kind} ${l.ref} at leaf ${l.index} (offset ${l.offset}) is missing from the store` });
  }
  // Deletions that run to the end of the signed log (later copies among them have no row anyway): the tail was dropped.
  const gone = new Set(deleted);
  let tail = checkpoint.size;
  let run = checkpoint.size;
  while (run > 0 && (gone.has(run - 1) || copies.has(run - 1))) {
    run--;
    if (gone.has(run)) tail = run;
  }
  if (tail < checkpoint.size && signed.length === checkpoint.size) {
    findings.push({ kind: 'truncated', log, leaf_index: tail, message: `the records of leaves ${tail}..${checkpoint.size - 1} (the tail the checkpoint signs) are missing` });
  }

  const lastLogged = o.leaves.length > 0 ? BigInt(o.leaves[o.leaves.length - 1]?.offset ?? '0') : -1n;
  let pending = 0;
  for (const r of hashed) {
    if (used.has(r)) continue;
    const l = leafAtOffset.get(r.offset);
    if (l !== undefined && l.index >= checkpoint.size && equalHash(l.hash, r.hash)) {
      pending++;
      continue;
    }
    if (l === undefined && BigInt(r.offset) > lastLogged) {
      pending++;
      continue;
    }
    if (l !== undefined && l.index < checkpoint.size && equalHash(l.hash, r.hash)) continue; // a second identical copy of a verified row
    findings.push({ kind: 'inserted', log, ref: r.ref, tenant: r.tenant, offset: r.offset, ...(l !== undefined ? { leaf_index: l.index } : {}), message: `${r.leaf.kind} ${r.ref} at offset ${r.offset} is stored but was never logged there` });
  }
  return { log, checkpoint_size: checkpoint.size, leaves: o.leaves.length, records: o.records.length, verified, duplicates, pending, conflicts: notes.length, findings, notes };
};
