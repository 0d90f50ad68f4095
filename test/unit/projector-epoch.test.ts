// The epoch rule (services/pdp-client/epoch.ts), given records per partition
// in log order → what a reader applies. Pure: no Kafka.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, createEpochGate, DEFAULT_MAX_EPOCH_STEP, EPOCH_HEADER, epochRecord, type EpochInput, type EpochVerdict } from '../../services/pdp-client/epoch.ts';
import { decodeRecord, encodeRecord, claimedEpochOf, snapshotFromRecords, type ChangelogRecord } from '../../services/projector/changelog.ts';

const state = (epoch?: number | string | string[]): EpochInput => ({ key: Buffer.from('["acme","session","S-1"]'), value: Buffer.from([0xc3, 0x01, 1, 2]), ...(epoch !== undefined && { headers: { [EPOCH_HEADER]: Array.isArray(epoch) ? epoch.map((e) => Buffer.from(e)) : Buffer.from(String(epoch)) } }) });
const epochOf = (e: number): EpochInput => {
  const r = epochRecord(e);
  return { key: Buffer.from(r.key), value: r.value, headers: { [EPOCH_HEADER]: Buffer.from(r.headers[EPOCH_HEADER] ?? '') } };
};

/** Runs a log (per partition, in offset order) through one gate: the verdict of each record, compactly. */
const run = (log: { partition: number; m: EpochInput }[], gate = createEpochGate()): string[] => {
  const offsets = new Map<number, number>();
  return log.map(({ partition, m }) => {
    const o = offsets.get(partition) ?? 0;
    offsets.set(partition, o + 1);
    return show(gate.judge(partition, String(o), m));
  });
};
const show = (v: EpochVerdict): string => (v.kind === 'state' ? `apply@${v.epoch}` : v.kind === 'epoch' ? `epoch ${v.epoch}` : v.reason);

test('a state below the highest epoch record before it on its partition is not applied; each partition on its own', () => {
  const p0 = (m: EpochInput) => ({ partition: 0, m });
  const p1 = (m: EpochInput) => ({ partition: 1, m });
  assert.deepEqual(
    run([
      p0(state()), // single instance / transactional: no header = epoch 0
      p0(epochOf(1)),
      p0(state(1)),
      p1(state()), // partition 1 never had an epoch record: headerless states stay in force there
      p0(state()), // an unfenced (epoch 0) writer after epoch 1 began
      p0(epochOf(2)), // the new owner took over
      p0(state(1)), // the zombie (epoch 1) after it
      p0(state(2)),
      p0(epochOf(1)), // the zombie's epoch record, appended late: changes nothing
      p0(state(2)),
      p0(state(1)),
      p1(state(0)),
    ]),
    ['apply@0', 'epoch 1', 'apply@1', 'apply@0', 'stale_epoch', 'epoch 2', 'stale_epoch', 'apply@2', 'epoch 1', 'apply@2', 'stale_epoch', 'apply@0'],
  );
});

test('a state claiming an epoch no epoch record announced, and an epoch record jumping too far, are refused', () => {
  assert.deepEqual(run([{ partition: 0, m: state(1) }]), ['epoch_ahead']);
  assert.deepEqual(
    run([
      { partition: 0, m: epochOf(3) },
      { partition: 0, m: epochOf(3 + DEFAULT_MAX_EPOCH_STEP + 1) }, // a forged epoch would freeze the partition for every reader
      { partition: 0, m: state(3) },
      { partition: 0, m: epochOf(3 + DEFAULT_MAX_EPOCH_STEP) },
      { partition: 0, m: state(3) },
    ]),
    ['epoch 3', 'epoch_jump', 'apply@3', `epoch ${3 + DEFAULT_MAX_EPOCH_STEP}`, 'stale_epoch'],
  );
  assert.deepEqual(run([{ partition: 0, m: epochOf(5) }], createEpochGate({ maxStep: 4 })), ['epoch_jump']);
});

test('verdicts depend on the offset, not on reading order: a re-read from the start (a rebalance) gives the same ones', () => {
  const gate = createEpochGate();
  const log: [string, EpochInput][] = [
    ['0', state()],
    ['1', epochOf(1)],
    ['2', state(1)],
    ['3', epochOf(2)],
    ['4', state(1)],
    ['5', state(2)],
  ];
  const first = log.map(([o, m]) => show(gate.judge(0, o, m)));
  const again = log.map(([o, m]) => show(gate.judge(0, o, m)));
  assert.deepEqual(first, ['apply@0', 'epoch 1', 'apply@1', 'epoch 2', 'stale_epoch', 'apply@2']);
  assert.deepEqual(again, first);
  assert.equal(gate.epochAt(0, 0n), 0);
  assert.equal(gate.epochAt(0, 2n), 1);
  assert.equal(gate.epochAt(0, 4n), 2);
  // Compaction removes records, keeps offsets: a gap changes nothing.
  const compacted = createEpochGate();
  assert.deepEqual([['1', epochOf(1)], ['3', epochOf(2)], ['4', state(1)], ['9', state(2)]].map(([o, m]) => show(compacted.judge(0, o as string, m as EpochInput))), ['epoch 1', 'epoch 2', 'stale_epoch', 'apply@2']);
});

test('a reader that starts at an offset with the epoch in force there (the projector restore) judges as a reader from 0 does', () => {
  const gate = createEpochGate({ start: new Map([[0, { offset: 10n, epoch: 2 }]]) });
  assert.deepEqual(
    [
      ['10', state(2)],
      ['11', state(1)],
      ['12', epochOf(3)],
      ['13', state(2)],
      ['14', state(3)],
    ].map(([o, m]) => show(gate.judge(0, o as string, m as EpochInput))),
    ['apply@2', 'stale_epoch', 'epoch 3', 'stale_epoch', 'apply@3'],
  );
  assert.deepEqual(show(gate.judge(1, '0', state())), 'apply@0');
});

test('malformed epoch headers and records are refused with a reason, never applied, never thrown', () => {
  const bad = (m: EpochInput): string => show(createEpochGate().judge(0, '7', m));
  const rec = (key: string, header: string | undefined, value: Buffer | null): EpochInput => ({ key: Buffer.from(key), value, ...(header !== undefined && { headers: { [EPOCH_HEADER]: Buffer.from(header) } }) });
  for (const h of ['', '-1', '01', '1.5', '1e3', ' 1', '2147483648', '99999999999', 'x']) assert.equal(bad(state(h)), 'bad_epoch', `state header ${JSON.stringify(h)}`);
  assert.equal(bad(state(['1', '1'])), 'bad_epoch', 'a repeated header');
  for (const [key, header, value] of [
    ['\u0000epoch\u0000', '1', Buffer.alloc(0)],
    ['\u0000epoch\u00000', '0', Buffer.alloc(0)],
    ['\u0000epoch\u0000x', 'x', Buffer.alloc(0)],
    ['\u0000epoch\u00002', '3', Buffer.alloc(0)],
    ['\u0000epoch\u00002', undefined, Buffer.alloc(0)],
    ['\u0000epoch\u00002', '2', Buffer.from('x')],
    ['\u0000epoch\u00002', '2', null],
    ['\u0000epoch\u00002147483648', '2147483648', Buffer.alloc(0)],
  ] as const) assert.equal(bad(rec(key, header, value)), 'bad_epoch', `epoch record ${JSON.stringify([key, header])}`);
  // A string header (a producer-side shape) and a null key are read too.
  assert.deepEqual(classify({ key: null, value: Buffer.from('x'), headers: { [EPOCH_HEADER]: '4' } }), { kind: 'state', epoch: 4 });
  // Hostile bytes anywhere: a verdict, no exception.
  let seed = 7;
  const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const gate = createEpochGate();
  for (let i = 0; i < 2000; i++) {
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const key = rnd(3) === 0 ? Buffer.concat([Buffer.from('\u0000epoch\u0000'), bytes(rnd(12))]) : bytes(rnd(20));
    const m: EpochInput = { key: rnd(10) === 0 ? null : key, value: rnd(4) === 0 ? Buffer.alloc(0) : bytes(rnd(8)), headers: rnd(2) === 0 ? {} : { [EPOCH_HEADER]: bytes(rnd(6)) } };
    const v = gate.judge(rnd(3), String(i), m);
    assert.ok(['state', 'epoch', 'refused'].includes(v.kind));
  }
});

test('the changelog epoch claim: parsed strictly, newest wins, not part of the world', () => {
  const claim = (epoch: number): ChangelogRecord => ({ kind: 'epoch', value: { epoch } });
  const back = decodeRecord(encodeRecord(claim(3)));
  assert.ok(back.ok);
  assert.deepEqual(back.value, claim(3));
  for (const raw of ['{"kind":"epoch","value":{"epoch":0}}', '{"kind":"epoch","value":{"epoch":1.5}}', '{"kind":"epoch","value":{"epoch":"2"}}', '{"kind":"epoch","value":{"epoch":2,"x":1}}', '{"kind":"epoch","value":{"epoch":2147483648}}']) {
    assert.ok(!decodeRecord(Buffer.from(raw)).ok, raw);
  }
  const marker = decodeRecord(Buffer.from('{"kind":"published","value":{"partitions":[{"partition":2,"offset":"40","epoch":3}],"consumed":[]}}'));
  assert.ok(marker.ok);
  assert.ok(!decodeRecord(Buffer.from('{"kind":"published","value":{"partitions":[{"partition":2,"offset":"40","epoch":-1}]}}')).ok);
  assert.equal(claimedEpochOf([]), 0);
  assert.equal(claimedEpochOf([claim(2), claim(5), claim(4)]), 5);
  assert.deepEqual(snapshotFromRecords([claim(2)]), { clock: 0, wall: null, sessions: [], users: [], freezes: [] });
});
