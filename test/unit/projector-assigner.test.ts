// Scale-out: the co-partitioned sticky assignment (services/projector/scale/assigner.ts)
// and the scale-out settings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assignCoPartitioned, claimOf } from '../../services/projector/scale/assigner.ts';
import { parseProjectorConfig } from '../../services/projector/config.ts';

const sizes = (m: Map<string, number[]>): number[] => [...m.values()].map((ps) => ps.length).sort();
const all = (m: Map<string, number[]>): number[] => [...m.values()].flat().sort((a, b) => a - b);

test('every partition goes to exactly one member, balanced within one', () => {
  for (const members of [1, 2, 3, 4, 7]) {
    for (const count of [1, 3, 6, 12]) {
      const m = assignCoPartitioned(Array.from({ length: members }, (_, i) => ({ memberId: `m${i}`, owned: [] })), count);
      assert.deepEqual(all(m), Array.from({ length: count }, (_, i) => i), `${members} members, ${count} partitions`);
      const s = sizes(m);
      assert.ok((s.at(-1) ?? 0) - (s[0] ?? 0) <= 1, `balanced: ${s.join(',')}`);
    }
  }
});

test('sticky: when a member dies only its partitions move, survivors keep theirs', () => {
  const before = new Map([
    ['a', [0, 1]],
    ['b', [2, 3]],
    ['c', [4, 5]],
  ]);
  const after = assignCoPartitioned([{ memberId: 'a', owned: before.get('a') ?? [] }, { memberId: 'c', owned: before.get('c') ?? [] }], 6);
  for (const p of [0, 1]) assert.ok(after.get('a')?.includes(p));
  for (const p of [4, 5]) assert.ok(after.get('c')?.includes(p));
  assert.deepEqual(all(after), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(sizes(after), [3, 3]);
});

test('sticky within balance: a joining member takes partitions from the busiest, claims over the cap are given up', () => {
  const m = assignCoPartitioned([{ memberId: 'a', owned: [0, 1, 2] }, { memberId: 'b', owned: [3, 4, 5] }, { memberId: 'c', owned: [] }], 6);
  assert.deepEqual(sizes(m), [2, 2, 2]);
  assert.deepEqual(m.get('a'), [0, 1]);
  assert.deepEqual(m.get('b'), [3, 4]);
  assert.deepEqual(m.get('c'), [2, 5]);
});

test('two members claiming one partition: the first (by id) keeps it; out-of-range claims are ignored', () => {
  const m = assignCoPartitioned([{ memberId: 'b', owned: [0, 9] }, { memberId: 'a', owned: [0] }], 2);
  assert.deepEqual(m.get('a'), [0]);
  assert.deepEqual(m.get('b'), [1]);
});

test('claims: a JSON list of partitions in userData; anything else claims nothing', () => {
  assert.deepEqual(claimOf(Buffer.from('[1,2]')), [1, 2]);
  assert.deepEqual(claimOf(Buffer.from('{"x":1}')), []);
  assert.deepEqual(claimOf(Buffer.from('not json')), []);
  assert.deepEqual(claimOf(Buffer.from('[1,-1,1.5,"2"]')), [1]);
  assert.deepEqual(claimOf(Buffer.alloc(0)), []);
});

test('settings: scale-out defaults to the transactional delivery, takes the idempotent one when asked, and names a bad field', () => {
  const on = parseProjectorConfig({ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS: '1500' });
  assert.ok(on.ok);
  assert.equal(on.value.scaleOut, true);
  assert.equal(on.value.delivery, 'transactional');
  assert.equal(on.value.sessionTimeoutMs, 1500);
  const off = parseProjectorConfig({});
  assert.ok(off.ok);
  assert.equal(off.value.scaleOut, false);
  assert.equal(off.value.delivery, 'idempotent');
  assert.equal(off.value.sessionTimeoutMs, 10_000);
  const idem = parseProjectorConfig({ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_DELIVERY: 'idempotent' });
  assert.ok(idem.ok);
  assert.equal(idem.value.scaleOut, true);
  assert.equal(idem.value.delivery, 'idempotent');
  const txn = parseProjectorConfig({ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_DELIVERY: 'transactional' });
  assert.ok(txn.ok);
  assert.equal(txn.value.delivery, 'transactional');
  // The warm standby: folded unless asked for bytes or none.
  assert.equal(on.value.standby, 'folded');
  for (const [v, want] of [['true', 'folded'], ['folded', 'folded'], ['bytes', 'bytes'], ['false', false]] as const) {
    const c = parseProjectorConfig({ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_STANDBY: v });
    assert.ok(c.ok);
    assert.equal(c.value.standby, want);
  }
  for (const [env, field] of [
    [{ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_STANDBY: 'warm' }, 'TRUSTFOLD_PROJECTOR_STANDBY'],
    [{ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_DELIVERY: 'Idempotent' }, 'TRUSTFOLD_PROJECTOR_DELIVERY'],
    [{ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'true', TRUSTFOLD_PROJECTOR_DELIVERY: 'exactly-once' }, 'TRUSTFOLD_PROJECTOR_DELIVERY'],
    [{ TRUSTFOLD_PROJECTOR_SCALE_OUT: 'yes', TRUSTFOLD_PROJECTOR_DELIVERY: 'idempotent' }, 'TRUSTFOLD_PROJECTOR_SCALE_OUT'],
  ] as const) {
    const bad = parseProjectorConfig(env);
    assert.ok(!bad.ok, JSON.stringify(env));
    assert.equal(bad.error[0]?.path, field);
  }
});
