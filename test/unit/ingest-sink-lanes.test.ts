// The sink with several idempotent producers ("lanes"): a key always has the
// same producer, so one session's records leave in order from one producer;
// a send spanning lanes resolves only when every lane acknowledged its part,
// and fails if any lane fails. The partitioner matches kafkajs's default.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Partitioners, type Kafka, type ProducerBatch } from 'kafkajs';
import { createKafkaSink, keyPartitioner, murmur2, type OutboundRecord } from '../../services/ingest/sink.ts';
import { TrustfoldError } from '../../services/lib/errors.ts';

type Call = { producer: number; batch: ProducerBatch; resolve: () => void; reject: (e: Error) => void };

const scriptedKafka = () => {
  const calls: Call[] = [];
  let producers = 0;
  let waiters: (() => void)[] = [];
  const kafka = {
    producer: (config: { idempotent?: boolean; maxInFlightRequests?: number }) => {
      assert.equal(config.idempotent, true);
      assert.equal(config.maxInFlightRequests, 1);
      const n = ++producers;
      return {
        connect: async () => undefined,
        disconnect: async () => undefined,
        sendBatch: (batch: ProducerBatch) =>
          new Promise<void>((resolve, reject) => {
            assert.equal(batch.acks, -1);
            calls.push({ producer: n, batch, resolve, reject });
            for (const w of waiters.splice(0)) w();
          }),
      };
    },
  } as unknown as Kafka;
  const waitCalls = async (count: number): Promise<Call[]> => {
    while (calls.length < count) await new Promise<void>((r) => waiters.push(r));
    waiters = [];
    return calls.slice(0, count);
  };
  return { kafka, calls, waitCalls, producers: () => producers };
};

const rec = (key: string, seq: number): OutboundRecord => ({ topic: 't', key, value: Buffer.from(String(seq)) });
const lane = (key: string, lanes: number) => (murmur2(key) & 0x7fffffff) % lanes;
const sessionKeys = Array.from({ length: 12 }, (_, i) => JSON.stringify(['acme', 'session', `S-${i}`]));

describe('createKafkaSink with several producers', () => {
  test('each key goes to one producer, in order; the send resolves after every producer acked', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 2_000, producers: 3 });
    const records = Array.from({ length: 60 }, (_, i) => rec(sessionKeys[i % sessionKeys.length]!, i));
    const lanesUsed = new Set(sessionKeys.map((key) => lane(key, 3)));
    assert.ok(lanesUsed.size > 1, 'the fixture keys must spread over several lanes');
    let done = false;
    const p = sink.send(records).then(() => (done = true));
    const calls = await k.waitCalls(lanesUsed.size);
    const producerOfKey = new Map<string, number>();
    for (const c of calls) {
      const messages = c.batch.topicMessages!.flatMap((t) => t.messages);
      for (const m of messages) {
        const key = String(m.key);
        assert.equal(producerOfKey.get(key) ?? c.producer, c.producer, 'one producer per key');
        producerOfKey.set(key, c.producer);
      }
      for (const key of sessionKeys) {
        const seqs = messages.filter((m) => m.key === key).map((m) => Number(String(m.value)));
        assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'a key keeps request order');
      }
    }
    assert.equal(producerOfKey.size, sessionKeys.length);
    for (const c of calls.slice(0, -1)) c.resolve();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false, 'not resolved while one producer has not acked');
    calls.at(-1)!.resolve();
    await p;
    assert.equal(done, true);
    await sink.close();
  });

  test('one failing producer fails the whole send (nothing reported accepted that was not acked)', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 100, retryBackoffMs: 200, producers: 2 });
    const keys = [sessionKeys.find((x) => lane(x, 2) === 0)!, sessionKeys.find((x) => lane(x, 2) === 1)!];
    const p = sink.send(keys.map((key, i) => rec(key, i)));
    const calls = await k.waitCalls(2);
    calls[0]!.resolve();
    calls[1]!.reject(new Error('broker gone'));
    await assert.rejects(p, (e: unknown) => e instanceof TrustfoldError && e.retriable);
    await sink.close();
  });

  test('keyPartitioner picks the same partition as kafkajs DefaultPartitioner', () => {
    const reference = Partitioners.DefaultPartitioner();
    const ours = keyPartitioner();
    for (const n of [1, 2, 3, 6, 7, 12]) {
      const partitionMetadata = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
      for (let i = 0; i < 2_000; i++) {
        const key = i % 2 === 0 ? JSON.stringify(['tenant-é', 'session', `S-${i}`]) : `k${'x'.repeat(i % 9)}${i}`;
        const message = { key, value: null };
        assert.equal(ours({ topic: 't', partitionMetadata, message }), reference({ topic: 't', partitionMetadata, message }), key);
      }
    }
  });
});
