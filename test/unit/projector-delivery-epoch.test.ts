// The idempotent delivery's published marker (delivery/idempotent.ts) with
// and without a scale-out task scope, against in-memory producers: the
// single instance's marker is what it was (no epoch, no global, no explicit
// partition); a task's marker goes to its changelog partition and records the
// epoch in force at its offset and its global positions.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Producer, RecordMetadata } from 'kafkajs';
import { decodeRecord } from '../../services/projector/changelog.ts';
import { createIdempotentDelivery, type Marks, type TaskScope } from '../../services/projector/delivery/idempotent.ts';
import { emptyGroup, type OutMessage } from '../../services/projector/group.ts';
import { emptyTiming } from '../../services/projector/timing.ts';
import { createLogger } from '../../services/lib/log.ts';

type Sent = { topic: string; messages: OutMessage[] };

const fakes = (statesAt: { partition: number; baseOffset: string }) => {
  const changelog: Sent[] = [];
  const states = {
    send: async (): Promise<RecordMetadata[]> => [{ topicName: 'trust', partition: statesAt.partition, errorCode: 0, baseOffset: statesAt.baseOffset }],
  } as unknown as Producer;
  const log = {
    transaction: async () => ({
      sendBatch: async ({ topicMessages }: { topicMessages: Sent[] }) => {
        changelog.push(...topicMessages);
        return [];
      },
      sendOffsets: async () => undefined,
      commit: async () => undefined,
      abort: async () => undefined,
    }),
  } as unknown as Producer;
  return { states, log, changelog };
};

const deliverOne = async (task: TaskScope | undefined, marks: Marks, statesAt: { partition: number; baseOffset: string }): Promise<OutMessage | undefined> => {
  const f = fakes(statesAt);
  let idle!: () => void;
  const recorded = new Promise<void>((r) => (idle = r));
  const d = createIdempotentDelivery({
    groupId: 'g',
    sessionTrustTopic: 'trust',
    changelogTopic: 'log',
    logger: createLogger('test', 'silent'),
    timing: emptyTiming(),
    producer: () => f.states,
    logProducer: () => f.log,
    marks,
    acknowledged: () => undefined,
    invalidate: (reason) => assert.fail(reason),
    onIdle: () => idle(),
    ...(task !== undefined && { task }),
  });
  const g = emptyGroup();
  g.offsets.set('signals\u00002', { topic: 'signals', partition: 2, offset: '9' });
  await d.deliver(g, { states: [{ key: 'k', value: Buffer.from('x') }], sessions: [], facts: [], offsets: [] });
  await recorded;
  return f.changelog.flatMap((t) => t.messages).find((m) => m.key === '\u0000published');
};

test('single instance: the marker carries no epoch, no global positions and no explicit partition', async () => {
  const marks: Marks = { covered: new Map([[0, '5']]), folded: new Map() };
  const m = await deliverOne(undefined, marks, { partition: 1, baseOffset: '40' });
  assert.ok(m !== undefined);
  assert.equal(m.partition, undefined);
  const r = decodeRecord(m.value);
  assert.ok(r.ok && r.value.kind === 'published');
  assert.deepEqual(r.value.value, {
    partitions: [
      { partition: 0, offset: '5' },
      { partition: 1, offset: '40' },
    ],
    consumed: [{ topic: 'signals', partition: 2, offset: '9' }],
  });
  assert.equal(marks.epochs, undefined);
});

test('scale-out task: the marker goes to its partition, with the epoch in force at its offset and its global positions', async () => {
  const marks: Marks = { covered: new Map([[2, '7']]), folded: new Map(), epochs: new Map([[2, 1]]) };
  const carried = await deliverOne({ partition: 2, epoch: () => 3, global: () => [{ partition: 0, offset: '11' }] }, { ...marks, covered: new Map(marks.covered), epochs: new Map(marks.epochs) }, { partition: 2, baseOffset: '7' });
  // The states did not move the covered offset (7 is not past 7): its epoch stays the one recorded there.
  assert.ok(carried !== undefined);
  const c = decodeRecord(carried.value);
  assert.ok(c.ok && c.value.kind === 'published');
  assert.deepEqual(c.value.value.partitions, [{ partition: 2, offset: '7', epoch: 1 }]);
  const moved = await deliverOne({ partition: 2, epoch: () => 3, global: () => [{ partition: 0, offset: '11' }] }, marks, { partition: 2, baseOffset: '50' });
  assert.ok(moved !== undefined);
  assert.equal(moved.partition, 2);
  const r = decodeRecord(moved.value);
  assert.ok(r.ok && r.value.kind === 'published');
  assert.deepEqual(r.value.value, { partitions: [{ partition: 2, offset: '50', epoch: 3 }], consumed: [{ topic: 'signals', partition: 2, offset: '9' }], global: [{ partition: 0, offset: '11' }] });
  assert.deepEqual([...(marks.epochs ?? [])], [[2, 3]]);
});
