// The console's own proof check and its "what the PDP knew" line: the page's
// JCS, leaf hash and RFC 9162 audit-path walk agree with the audit log's
// (services/audit-log), a changed record or path is caught, and the lag
// fields of the explain route read as one sentence.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalJson, type Json } from '../../schemas/audit-log/jcs.ts';
import { leafHashOf } from '../../schemas/audit-log/leaf.ts';
import { hashChildren, hashLeaf, rootOfLeaves, splitPoint, type Hash } from '../../schemas/audit-log/merkle.ts';
import { checkProof, jcs, leafHash, rootOf, toBase64, type RecordProof } from '../../services/console/web/lib/proof.ts';
import { duration, lagLine, type TrustBasis, type TrustSummary } from '../../services/console/web/lib/trust-lag.ts';

/** RFC 9162 §2.1.3.1 PATH(m, D[n]), straight from its definition: a reference independent of both implementations. */
const path = (m: number, leaves: readonly Hash[]): Hash[] => {
  const n = leaves.length;
  if (n <= 1) return [];
  const k = splitPoint(n);
  return m < k ? [...path(m, leaves.slice(0, k)), rootOfLeaves(leaves.slice(k))] : [...path(m - k, leaves.slice(k)), rootOfLeaves(leaves.slice(0, k))];
};
const u8 = (h: Hash): Uint8Array<ArrayBuffer> => new Uint8Array(h);

describe('the page checks an inclusion proof as the audit log makes it', () => {
  test('JCS: the same text as the log’s canonical JSON', () => {
    const v = { z: [1, 2.5, -0, 1e21, 'é\u2028"\\'], a: { b: null, 'ä': true, A: false, '\ud83d\ude00': 1, '\u00e9': 2 }, n: 0.1 + 0.2 };
    assert.equal(jcs(v), canonicalJson(v as unknown as Json));
    assert.equal(jcs({ b: 1, a: undefined }), '{"b":1}');
    assert.throws(() => jcs(Number.NaN), /finite/);
  });

  test('every leaf of trees of 1..17 leaves: the page’s root from the path is the tree’s root', async () => {
    for (let n = 1; n <= 17; n++) {
      const leaves = Array.from({ length: n }, (_, i) => hashLeaf(new TextEncoder().encode(`leaf ${i}`)));
      const root = rootOfLeaves(leaves);
      for (let m = 0; m < n; m++) {
        const r = await rootOf(m, n, u8(leaves[m] as Hash), path(m, leaves).map(u8));
        assert.ok(r.ok, `${m}/${n}`);
        assert.deepEqual(r.root, u8(root), `${m}/${n}`);
      }
    }
  });

  test('a wrong index, size or path length is refused, not guessed', async () => {
    const leaves = Array.from({ length: 5 }, (_, i) => hashLeaf(new Uint8Array([i])));
    const p = path(2, leaves).map(u8);
    assert.equal((await rootOf(5, 5, u8(leaves[2] as Hash), p)).ok, false);
    assert.equal((await rootOf(2, 5, u8(leaves[2] as Hash), p.slice(1))).ok, false);
    assert.equal((await rootOf(2, 5, u8(leaves[2] as Hash), [...p, u8(leaves[0] as Hash)])).ok, false);
  });

  const decision = { event_id: '01976d2a-0000-7000-8000-0000000000aa', session_id: 'S-9', request: { tool: 'git', action: 'delete_file', resource: 'repo:R' }, decision: { effect: 'deny' } };
  const proofFor = (record: unknown): { proof: RecordProof; leaves: Hash[] } => {
    const kafka = { topic: 't.decisions', partition: 1, offset: '42' };
    const mine = leafHashOf({ kind: 'decision', kafka, record: record as Json });
    const leaves = [hashLeaf(new Uint8Array([1])), hashLeaf(new Uint8Array([2])), mine, hashLeaf(new Uint8Array([3])), hashLeaf(new Uint8Array([4])), hashLeaf(new Uint8Array([5]))];
    const root = rootOfLeaves(leaves);
    return {
      leaves,
      proof: {
        kind: 'decision', ref: decision.event_id, tenant_id: 'acme', log_id: 't.decisions/1', leaf_index: 2,
        leaf: { v: 1, kind: 'decision', kafka, record },
        leaf_hash: toBase64(u8(mine)), tree_size: 6, inclusion_proof: path(2, leaves).map((h) => toBase64(u8(h))),
        checkpoint: { log_id: 't.decisions/1', origin: 'trustfold/t.decisions/1', size: 6, root_hash: toBase64(u8(root)), note: '', signed_at: '2026-12-01T14:00:00Z' },
      },
    };
  };

  test('a proof made with the log’s leaf rule holds for the record shown', async () => {
    const { proof } = proofFor(decision);
    assert.deepEqual(await leafHash(proof.leaf), u8(leafHashOf({ kind: 'decision', kafka: proof.leaf.kafka, record: decision as unknown as Json })));
    const c = await checkProof(proof, { ...decision });
    assert.deepEqual(c, { ok: true, text: 'the record hashes to leaf 2 of t.decisions/1, and its 3-hash audit path leads to the root of the checkpoint of size 6' });
  });

  test('each broken link is named: the record shown, the logged record, a sibling hash, the checkpoint', async () => {
    const { proof } = proofFor(decision);
    const shown = { ...decision, decision: { effect: 'allow' } };
    assert.deepEqual(await checkProof(proof, shown), { ok: false, text: 'the logged record differs from the record shown' });
    const altered = { ...proof, leaf: { ...proof.leaf, record: shown } };
    assert.deepEqual(await checkProof(altered, shown), { ok: false, text: 'the record does not hash to leaf 2\'s hash' });
    const sibling = { ...proof, inclusion_proof: [toBase64(u8(hashChildren(hashLeaf(new Uint8Array([9])), hashLeaf(new Uint8Array([9]))))), ...proof.inclusion_proof.slice(1)] };
    assert.deepEqual(await checkProof(sibling, decision), { ok: false, text: 'the audit path does not lead to the checkpoint’s root' });
    const otherSize = { ...proof, checkpoint: { ...proof.checkpoint, size: 7 } };
    assert.deepEqual(await checkProof(otherSize, decision), { ok: false, text: 'the proof is for size 6, the checkpoint is of size 7' });
  });
});

describe('what the PDP knew against what was true', () => {
  const summary = (version: number, tier: TrustSummary['tier']): TrustSummary => ({ version, tier, updated_at: '2026-12-01T14:00:00Z', causes: [], freezes: [] });

  test('stale: the versions with their tiers, how many behind and for how long', () => {
    const t: TrustBasis = {
      pdp_used: summary(1, 'trusted'),
      in_force: summary(3, 'restricted'),
      lag: { status: 'stale', pdp_version: 1, in_force_version: 3, versions_behind: 2, ms_behind: 74_000, stale_since: '2026-12-01T14:00:00Z' },
      finding: 'allowed_on_stale_trust',
    };
    assert.deepEqual(lagLine(t), { text: 'PDP decided on v1 (trusted) while v3 (restricted) was in force, 2 versions / 74 s behind', tone: 'bad' });
    assert.equal(lagLine({ ...t, pdp_used: null, lag: { ...t.lag, versions_behind: 1, ms_behind: 900 } as TrustBasis['lag'] }).text, 'PDP decided on v1 while v3 (restricted) was in force, 1 version / 0.9 s behind', 'no tier for a version not recorded');
  });

  test('current, ahead (recorded later, or never), unknown', () => {
    assert.deepEqual(lagLine({ pdp_used: summary(3, 'restricted'), in_force: summary(3, 'restricted'), lag: { status: 'current', pdp_version: 3, in_force_version: 3, versions_behind: 0, ms_behind: 0 } }), { text: 'PDP decided on v3 (restricted), the version in force at the time', tone: 'ok' });
    assert.equal(lagLine({ pdp_used: summary(4, 'revoked'), in_force: summary(3, 'restricted'), lag: { status: 'ahead', pdp_version: 4, in_force_version: 3, latest_recorded_version: 4, recorded: true } }).text, 'PDP decided on v4 (revoked), recorded only after the call (v3 (restricted) was in force at its time)');
    assert.equal(lagLine({ pdp_used: null, in_force: null, lag: { status: 'ahead', pdp_version: 7, in_force_version: null, latest_recorded_version: 2, recorded: false } }).text, 'PDP decided on v7, which no recorded transition of the session has (latest recorded: v2)');
    assert.equal(lagLine({ pdp_used: null, in_force: null, lag: { status: 'unknown', pdp_version: null, in_force_version: null } }).text, 'The decision names no trust version: what the PDP knew is not recorded');
  });

  test('durations', () => {
    assert.deepEqual([0, 900, 9_949, 10_000, 74_000, 119_400, 125_000, 7_199_000, 7_200_000, -1].map(duration), ['0.0 s', '0.9 s', '9.9 s', '10 s', '74 s', '119 s', '2 min', '120 min', '2 h', '']);
  });
});
