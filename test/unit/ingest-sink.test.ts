// The group-committing Kafka sink against a scripted stand-in for kafkajs:
// what is sent together, when a caller hears "acked", and what happens to the
// producer after a failure. The real broker is in test/integration.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Kafka, ProducerBatch } from 'kafkajs';
import { createKafkaSink, type OutboundRecord } from '../../services/ingest/sink.ts';
import { TrustfoldError } from '../../services/lib/errors.ts';

type Call = { producer: number; batch: ProducerBatch; resolve: () => void; reject: (e: Error) => void };

const scriptedKafka = () => {
  const calls: Call[] = [];
  const disconnected: number[] = [];
  let producers = 0;
  let waiters: (() => void)[] = [];
  const kafka = {
    producer: (config: { idempotent?: boolean }) => {
      assert.equal(config.idempotent, true, 'the sink must use an idempotent producer');
      const n = ++producers;
      return {
        connect: async () => undefined,
        disconnect: async () => void disconnected.push(n),
        sendBatch: (batch: ProducerBatch) =>
          new Promise<void>((resolve, reject) => {
            assert.equal(batch.acks, -1, 'acks must be all');
            calls.push({ producer: n, batch, resolve, reject });
            for (const w of waiters.splice(0)) w();
          }),
      };
    },
    admin: () => ({ connect: async () => undefined, describeCluster: async () => ({ brokers: [{}] }), disconnect: async () => undefined }),
  } as unknown as Kafka;
  const nextCall = async (index: number): Promise<Call> => {
    while (calls.length <= index) await new Promise<void>((r) => waiters.push(r));
    return calls[index]!;
  };
  return { kafka, calls, disconnected, nextCall, producers: () => producers, reset: () => (waiters = []) };
};

const rec = (key: string, bytes = 10): OutboundRecord => ({ topic: 't', key, value: Buffer.alloc(bytes) });
const keysOf = (c: Call) => c.batch.topicMessages!.flatMap((t) => t.messages.map((m) => m.key));

describe('createKafkaSink', () => {
  test('a send resolves only once Kafka acknowledged it', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 2_000 });
    let done = false;
    const p = sink.send([rec('a')]).then(() => (done = true));
    const call = await k.nextCall(0);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false);
    call.resolve();
    await p;
    assert.equal(done, true);
  });

  test('sends arriving while one is in flight leave together in the next produce request', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 2_000 });
    const first = sink.send([rec('a')]);
    const c0 = await k.nextCall(0);
    const second = sink.send([rec('b'), rec('c')]);
    const third = sink.send([rec('d')]);
    c0.resolve();
    await first;
    const c1 = await k.nextCall(1);
    assert.deepEqual(keysOf(c1), ['b', 'c', 'd']);
    c1.resolve();
    await Promise.all([second, third]);
    assert.equal(k.calls.length, 2);
  });

  test('a large send is split into produce requests under maxBatchBytes, and resolves after the last', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 2_000, maxBatchBytes: 200 });
    let done = false;
    const p = sink.send(['a', 'b', 'c', 'd'].map((x) => rec(x, 80))).then(() => (done = true));
    for (let i = 0; i < 3; i++) (await k.nextCall(i)).resolve();
    const last = await k.nextCall(3);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(done, false, 'not acked before every chunk is');
    last.resolve();
    await p;
    assert.equal(k.calls.length, 4); // 80 B + 64 B overhead per record: one record per request
  });

  test('no ack within the timeout: kafka_timeout, the producer is retired and a new one serves the next send', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 150 });
    const started = Date.now();
    await assert.rejects(sink.send([rec('a')]), (e: unknown) => e instanceof TrustfoldError && e.code === 'kafka_timeout' && e.retriable);
    assert.ok(Date.now() - started < 1_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(k.disconnected, [1]);
    const next = sink.send([rec('b')]);
    const call = await k.nextCall(k.calls.length === 1 ? 1 : k.calls.length - 1);
    assert.equal(call.producer, 2);
    call.resolve();
    await next;
  });

  test('a failed produce is retried on a fresh producer while the caller is within its deadline', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 3_000, retryBackoffMs: 10 });
    const p = sink.send([rec('a')]);
    (await k.nextCall(0)).reject(new Error('NOT_ENOUGH_REPLICAS'));
    const retry = await k.nextCall(1);
    assert.equal(retry.producer, 2);
    assert.deepEqual(keysOf(retry), ['a']);
    retry.resolve();
    await p;
  });

  test('a caller past its deadline gets kafka_unavailable with the cause, and its records are not re-sent', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 100, retryBackoffMs: 200 });
    const p = sink.send([rec('a')]);
    (await k.nextCall(0)).reject(new Error('broker gone'));
    await assert.rejects(p, (e: unknown) => e instanceof TrustfoldError && e.code === 'kafka_unavailable' && /broker gone/.test(e.message));
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(k.calls.length, 1);
  });

  test('close waits for queued sends', async () => {
    const k = scriptedKafka();
    const sink = createKafkaSink({ kafka: k.kafka, timeoutMs: 2_000 });
    const p = sink.send([rec('a')]);
    const closing = sink.close();
    (await k.nextCall(0)).resolve();
    await p;
    await closing;
    await assert.rejects(sink.send([rec('b')]), /shutting down/);
  });
});
