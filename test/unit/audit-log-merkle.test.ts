// RFC 6962 hashing and proofs against published vectors: the probes of
// transparency-dev/merkle's testdata (test/go-verifier/testdata) and the
// RFC 6962 reference tree of its testonly package.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  appendLeaf,
  consistencyRanges,
  emptyFrontier,
  emptyRoot,
  frontierRoot,
  hashChildren,
  hashLeaf,
  hashRange,
  inclusionRanges,
  rootOfLeaves,
  verifyConsistency,
  verifyInclusion,
  type Hash,
  type NodeId,
} from '../../schemas/audit-log/merkle.ts';

const hex = (h: Uint8Array): string => Buffer.from(h).toString('hex');
const fromHex = (s: string): Hash => new Uint8Array(Buffer.from(s, 'hex'));
const b64 = (s: string | null | undefined): Hash => new Uint8Array(Buffer.from(s ?? '', 'base64'));

type InclusionProbe = { file: string; leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] | null; desc: string; wantErr: boolean };
type ConsistencyProbe = { file: string; size1: number; size2: number; root1: string; root2: string; proof: string[] | null; desc: string; wantErr: boolean };
const probes = JSON.parse(readFileSync(new URL('../go-verifier/testdata/rfc6962-probes.json', import.meta.url), 'utf8')) as { inclusion: InclusionProbe[]; consistency: ConsistencyProbe[] };

// testonly/constants.go: LeafInputs() and RootHashes().
const LEAF_INPUTS = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(fromHex);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

/** A test tree: every perfect node computed from the leaves. */
const nodeOf = (leaves: readonly Hash[]) => (id: NodeId): Hash => rootOfLeaves(leaves.slice(id.index * 2 ** id.level, (id.index + 1) * 2 ** id.level));

describe('RFC 6962 hashing', () => {
  it('matches the rfc6962 package vectors', () => {
    assert.equal(hex(emptyRoot()), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(hex(hashLeaf(new Uint8Array())), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    assert.equal(hex(hashLeaf(new TextEncoder().encode('L123456'))), '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56');
    const enc = new TextEncoder();
    assert.equal(hex(hashChildren(enc.encode('N123'), enc.encode('N456'))), 'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb');
  });

  it('builds the reference roots of every size 0..8, incrementally and from perfect nodes', () => {
    const leaves = LEAF_INPUTS.map(hashLeaf);
    let f = emptyFrontier();
    assert.equal(hex(frontierRoot(f)), ROOTS[0]);
    for (let n = 1; n <= 8; n++) {
      f = appendLeaf(f, leaves[n - 1] as Hash, () => undefined);
      assert.equal(hex(frontierRoot(f)), ROOTS[n], `size ${n}`);
      assert.equal(hex(hashRange({ begin: 0, end: n }, nodeOf(leaves))), ROOTS[n], `range size ${n}`);
    }
  });

  it('reports every node it creates while appending', () => {
    const made: string[] = [];
    let f = emptyFrontier();
    for (let i = 0; i < 4; i++) f = appendLeaf(f, hashLeaf(Uint8Array.of(i)), (n) => made.push(`${n.level}/${n.index}`));
    assert.deepEqual(made, ['0/0', '0/1', '1/0', '0/2', '0/3', '1/1', '2/0']);
  });
});

describe('proof verification against the transparency-dev probes', () => {
  it(`inclusion: ${probes.inclusion.length} probes`, () => {
    assert.ok(probes.inclusion.length > 50);
    for (const p of probes.inclusion) {
      const r = verifyInclusion(p.leafIdx, p.treeSize, b64(p.leafHash), (p.proof ?? []).map(b64), b64(p.root));
      assert.equal(!r.ok, p.wantErr, `${p.file}: ${p.desc}`);
    }
  });

  it(`consistency: ${probes.consistency.length} probes`, () => {
    assert.ok(probes.consistency.length > 50);
    for (const p of probes.consistency) {
      const r = verifyConsistency(p.size1, p.size2, (p.proof ?? []).map(b64), b64(p.root1), b64(p.root2));
      assert.equal(!r.ok, p.wantErr, `${p.file}: ${p.desc}`);
    }
  });
});

describe('proof generation', () => {
  const leaves = Array.from({ length: 37 }, (_, i) => hashLeaf(Uint8Array.of(i, i * 7)));
  const node = nodeOf(leaves);

  it('produces the happy-path probes exactly', () => {
    const ref = LEAF_INPUTS.map(hashLeaf);
    for (const p of probes.inclusion.filter((x) => x.desc === 'happy path')) {
      const proof = inclusionRanges(p.leafIdx, p.treeSize).map((r) => hashRange(r, nodeOf(ref)));
      assert.deepEqual(proof.map((h) => Buffer.from(h).toString('base64')), p.proof ?? [], p.file);
    }
    for (const p of probes.consistency.filter((x) => x.desc === 'happy path' && x.size1 > 0)) {
      const proof = consistencyRanges(p.size1, p.size2).map((r) => hashRange(r, nodeOf(ref)));
      assert.deepEqual(proof.map((h) => Buffer.from(h).toString('base64')), p.proof ?? [], p.file);
    }
  });

  it('every inclusion and consistency proof of a 37-leaf tree verifies, and a tampered one does not', () => {
    for (let n = 1; n <= leaves.length; n++) {
      const root = rootOfLeaves(leaves.slice(0, n));
      for (let i = 0; i < n; i++) {
        const proof = inclusionRanges(i, n).map((r) => hashRange(r, node));
        assert.ok(verifyInclusion(i, n, leaves[i] as Hash, proof, root).ok, `inclusion ${i}/${n}`);
        assert.equal(verifyInclusion(i, n, leaves[(i + 1) % leaves.length] as Hash, proof, root).ok, false);
      }
      for (let m = 1; m <= n; m++) {
        const proof = consistencyRanges(m, n).map((r) => hashRange(r, node));
        const root1 = rootOfLeaves(leaves.slice(0, m));
        assert.ok(verifyConsistency(m, n, proof, root1, root).ok, `consistency ${m}→${n}`);
        if (m < n) assert.equal(verifyConsistency(m, n, proof, rootOfLeaves(leaves.slice(1, m + 1)), root).ok, false);
      }
    }
  });
});
