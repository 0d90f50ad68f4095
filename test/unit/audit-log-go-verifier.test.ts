// Our verifier against an independent one: test/go-verifier (Go, with
// github.com/transparency-dev/merkle and golang.org/x/mod/sumdb/note), built
// by scripts/go-verifier-build.mjs into .cache/go-verifier/. Every case — the
// published probe vectors, proofs from our prover at every index and size of
// a tree built by the leaf rule, checkpoints we sign, and tampered variants of
// each — must get the same verdict from both (one version difference on
// proofs from the empty tree, named below). Skipped, saying why, without Go.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { leafBytes, leafHashOf } from '../../schemas/audit-log/leaf.ts';
import { equalHash, hashLeaf, verifyConsistency, verifyInclusion, type Hash } from '../../schemas/audit-log/merkle.ts';
import { openCheckpoint, type Verifier } from '../../services/audit-log/note.ts';
import { createProver } from '../../services/audit-log/proofs.ts';
import { createMemoryLog, decisionLeaf, ORIGIN_PREFIX, testSigner } from './audit-log-fixture.ts';

const BIN = fileURLToPath(new URL('../../.cache/go-verifier/go-verifier', import.meta.url));
const skip = existsSync(BIN) ? false : `the Go verifier is not built (${BIN}): install Go and run node scripts/go-verifier-build.mjs`;

const b64 = (h: Uint8Array): string => Buffer.from(h).toString('base64');
const unb64 = (s: string | null | undefined): Hash => new Uint8Array(Buffer.from(s ?? '', 'base64'));
const flip = (h: Hash, at = 0): Hash => {
  const c = h.slice();
  c[at % c.length] = (c[at % c.length] ?? 0) ^ 1;
  return c;
};

type GoCase =
  | { name: string; type: 'inclusion'; index: number; size: number; leaf_hash: string; proof: string[]; root: string }
  | { name: string; type: 'consistency'; size1: number; size2: number; proof: string[]; root1: string; root2: string }
  | { name: string; type: 'leaf'; leaf_bytes: string; leaf_hash: string }
  | { name: string; type: 'checkpoint'; note: string; key: string; origin: string; size?: number; root?: string };
type Case = { go: GoCase; ours: () => boolean; expect?: boolean };

const inclusion = (name: string, index: number, size: number, leaf: Hash, proof: readonly Hash[], root: Hash, expect?: boolean): Case => ({
  go: { name, type: 'inclusion', index, size, leaf_hash: b64(leaf), proof: proof.map(b64), root: b64(root) },
  ours: () => verifyInclusion(index, size, leaf, proof, root).ok,
  ...(expect !== undefined ? { expect } : {}),
});
const consistency = (name: string, size1: number, size2: number, proof: readonly Hash[], root1: Hash, root2: Hash, expect?: boolean): Case => ({
  go: { name, type: 'consistency', size1, size2, proof: proof.map(b64), root1: b64(root1), root2: b64(root2) },
  ours: () => verifyConsistency(size1, size2, proof, root1, root2).ok,
  ...(expect !== undefined ? { expect } : {}),
});
const checkpoint = (name: string, note: string, key: string, verifiers: readonly Verifier[], origin: string, expect: boolean): Case => ({
  go: { name, type: 'checkpoint', note, key, origin },
  ours: () => {
    const c = openCheckpoint(note, verifiers);
    return c.ok && c.checkpoint.origin === origin;
  },
  expect,
});

const probeCases = (): Case[] => {
  type P = { inclusion: { leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] | null; desc: string; wantErr: boolean }[]; consistency: { size1: number; size2: number; root1: string; root2: string; proof: string[] | null; desc: string; wantErr: boolean }[] };
  const probes = JSON.parse(readFileSync(new URL('../go-verifier/testdata/rfc6962-probes.json', import.meta.url), 'utf8')) as P;
  return [
    ...probes.inclusion.map((p, i) => inclusion(`probe inclusion ${i} ${p.desc}`, p.leafIdx, p.treeSize, unb64(p.leafHash), (p.proof ?? []).map(unb64), unb64(p.root), !p.wantErr)),
    ...probes.consistency.map((p, i) => consistency(`probe consistency ${i} ${p.desc}`, p.size1, p.size2, (p.proof ?? []).map(unb64), unb64(p.root1), unb64(p.root2), !p.wantErr)),
  ];
};

test('the Go verifier (transparency-dev/merkle, x/mod/sumdb/note) and ours agree on every case', { skip }, async () => {
  const { signer, verifier, key } = testSigner();
  const mem = createMemoryLog(signer);
  const N = 37;
  const log = 'trustfold.decisions.v1/4';
  const inputs = Array.from({ length: N }, (_, i) => decisionLeaf(i % 2 === 0 ? 'acme' : 'globex', `01976d2b-0000-7000-8000-${i.toString(16).padStart(12, '0')}`, { topic: 'trustfold.decisions.v1', partition: 4, offset: 1000 + i }));
  const leaves = inputs.map((x) => mem.append(x).hash);
  const prover = createProver(mem.store);
  const roots: Hash[] = [new Uint8Array(0)];
  for (let n = 1; n <= N; n++) roots.push(await prover.root(log, n));

  const cases: Case[] = probeCases();
  // Leaves: our leaf rule's bytes hash, by their hasher, to our leaf hash.
  for (const [i, x] of inputs.entries()) {
    const bytes = leafBytes(x);
    cases.push({ go: { name: `leaf ${i}`, type: 'leaf', leaf_bytes: b64(bytes), leaf_hash: b64(leafHashOf(x)) }, ours: () => equalHash(hashLeaf(bytes), leafHashOf(x)), expect: true });
  }
  cases.push({ go: { name: 'leaf tampered', type: 'leaf', leaf_bytes: b64(leafBytes(inputs[0] ?? inputs[1] ?? decisionLeaf('x', 'y', { topic: 't', partition: 0, offset: 0 }))), leaf_hash: b64(leaves[1] ?? new Uint8Array(32)) }, ours: () => false, expect: false });

  for (let size = 1; size <= N; size++) {
    const root = roots[size] as Hash;
    for (let index = 0; index < size; index++) {
      const leaf = leaves[index] as Hash;
      const path = await prover.inclusion(log, index, size);
      cases.push(inclusion(`inclusion ${index}/${size}`, index, size, leaf, path, root, true));
      if ((index * 7 + size) % 5 !== 0) continue; // tampered variants of a fifth of them
      cases.push(inclusion(`inclusion ${index}/${size} wrong leaf`, index, size, flip(leaf), path, root, false));
      cases.push(inclusion(`inclusion ${index}/${size} wrong root`, index, size, leaf, path, flip(root, 31), false));
      if (path.length > 0) {
        cases.push(inclusion(`inclusion ${index}/${size} sibling flipped`, index, size, leaf, path.map((h, k) => (k === path.length - 1 ? flip(h, 5) : h)), root, false));
        cases.push(inclusion(`inclusion ${index}/${size} truncated`, index, size, leaf, path.slice(0, -1), root, false));
      }
      cases.push(inclusion(`inclusion ${index}/${size} extra hash`, index, size, leaf, [...path, leaf], root, false));
      if (index + 1 < size) cases.push(inclusion(`inclusion ${index}/${size} as the next leaf`, index + 1, size, leaf, path, root, false));
      cases.push(inclusion(`inclusion ${index}/${size} index past size`, size, size, leaf, path, root, false));
    }
  }
  for (let size2 = 1; size2 <= N; size2++) {
    for (let size1 = 1; size1 <= size2; size1++) {
      const p = await prover.consistency(log, size1, size2);
      const r1 = roots[size1] as Hash;
      const r2 = roots[size2] as Hash;
      cases.push(consistency(`consistency ${size1}->${size2}`, size1, size2, p, r1, r2, true));
      if ((size1 + size2) % 4 !== 0) continue;
      cases.push(consistency(`consistency ${size1}->${size2} roots swapped`, size1, size2, p, r2, r1, size1 === size2));
      cases.push(consistency(`consistency ${size1}->${size2} forked root2`, size1, size2, p, r1, flip(r2, 9), false));
      if (p.length > 0) {
        cases.push(consistency(`consistency ${size1}->${size2} proof flipped`, size1, size2, p.map((h, k) => (k === 0 ? flip(h, 3) : h)), r1, r2, false));
        cases.push(consistency(`consistency ${size1}->${size2} truncated`, size1, size2, p.slice(1), r1, r2, false));
      }
      if (size2 < N) cases.push(consistency(`consistency ${size1}->${size2} claimed as ->${size2 + 1}`, size1, size2 + 1, p, r1, roots[size2 + 1] as Hash, false));
    }
  }

  // Checkpoints we sign, and forgeries.
  const cp = mem.sign(log);
  const origin = `${ORIGIN_PREFIX}/${log}`;
  const stranger = testSigner('trustfold-test');
  cases.push(checkpoint('checkpoint as signed', cp.note, key, [verifier], origin, true));
  cases.push(checkpoint('checkpoint other origin', cp.note, key, [verifier], `${origin}x`, false));
  cases.push(checkpoint('checkpoint size edited', cp.note.replace(`\n${N}\n`, `\n${N - 1}\n`), key, [verifier], origin, false));
  cases.push(checkpoint('checkpoint root edited', cp.note.replace(b64(cp.root), b64(flip(cp.root, 2))), key, [verifier], origin, false));
  const sigLine = cp.note.split('\n').at(-2) ?? '';
  const sig = Buffer.from(sigLine.split(' ').at(-1) ?? '', 'base64');
  sig[10] = (sig[10] ?? 0) ^ 1;
  cases.push(checkpoint('checkpoint signature flipped', cp.note.replace(sigLine, `${sigLine.split(' ').slice(0, -1).join(' ')} ${sig.toString('base64')}`), key, [verifier], origin, false));
  cases.push(checkpoint('checkpoint another key with the same name', cp.note, stranger.key, [stranger.verifier], origin, false));
  cases.push(checkpoint('checkpoint signed by another key', mem.sign(log).note.replace(/— trustfold-test .*\n$/, ''), key, [verifier], origin, false));
  const other = createMemoryLog(stranger.signer);
  other.append(inputs[0] ?? decisionLeaf('x', 'y', { topic: 't', partition: 0, offset: 0 }));
  cases.push(checkpoint('checkpoint by a stranger', other.sign(log).note, key, [verifier], origin, false));
  cases.push(checkpoint('checkpoint by a stranger, his key', other.sign(log).note, stranger.key, [stranger.verifier], origin, true));

  const run = spawnSync(BIN, [], { input: JSON.stringify({ cases: cases.map((c) => c.go) }), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(run.status, 0, run.stderr);
  const theirs = JSON.parse(run.stdout) as { name: string; ok: boolean; error?: string }[];
  assert.equal(theirs.length, cases.length);
  const disagreements: string[] = [];
  const unexpected: string[] = [];
  const fromEmpty: string[] = [];
  for (const [i, c] of cases.entries()) {
    const t = theirs[i];
    const ours = c.ours();
    // One known difference of versions: merkle v0.0.2 calls every tree consistent with the empty
    // one (size1 = 0, empty proof); the probes (a later merkle commit) and we refuse such a proof.
    // Our API never asks for one (from ≥ 1). Counted apart, and only in that direction.
    if (c.go.type === 'consistency' && c.go.size1 === 0 && t?.ok === true && !ours) fromEmpty.push(c.go.name);
    else if (t?.ok !== ours) disagreements.push(`${c.go.name}: ours ${ours}, Go ${String(t?.ok)} ${t?.error ?? ''}`);
    if (c.expect !== undefined && ours !== c.expect) unexpected.push(`${c.go.name}: ours ${ours}, expected ${c.expect}`);
  }
  assert.deepEqual(disagreements, [], `${disagreements.length} of ${cases.length} cases disagree`);
  assert.deepEqual(unexpected, []);
  assert.deepEqual(fromEmpty, ['probe consistency 89 size1 is zero and does not equal size2', 'probe consistency 90 size1 is zero and size2 is not zero', 'probe consistency 93 sizes are equal (zero) and proof is empty']);
  const accepted = theirs.filter((t) => t.ok).length;
  assert.ok(accepted > 1000 && cases.length - accepted > 500, `${cases.length} cases, ${accepted} accepted by both`);
});
