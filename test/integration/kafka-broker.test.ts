// The test broker itself: a real KRaft broker that round-trips keyed messages
// in per-key order, and whose JVM is gone after stop().
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { startKafkaBroker } from '../../services/local-kafka/index.ts';
import { createTopic, uniqueName } from '../helpers/kafka.ts';

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test(
  'a KRaft broker from Maven Central round-trips 100 keyed messages in per-key order, then stops',
  { timeout: 120_000, skip: process.env['KAFKA_BROKERS'] ? 'KAFKA_BROKERS is set: no local broker to test' : false },
  async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-kafka-'));
    const broker = await startKafkaBroker({ dataDir, ephemeral: true, javaHome: process.env['JAVA_HOME'] });
    t.diagnostic(`broker ${broker.brokers.join(',')} pid ${broker.pid} ready in ${broker.startupMs} ms`);
    try {
      assert.ok(isAlive(broker.pid), 'JVM runs while the broker is up');
      assert.match(broker.brokers[0] ?? '', /^127\.0\.0\.1:\d+$/);

      const topic = uniqueName('broker-test');
      await createTopic(broker.brokers, topic, 3);
      const kafka = new Kafka({ clientId: 'kafka-broker-test', brokers: broker.brokers, logLevel: logLevel.NOTHING });

      const keys = ['tenant-a', 'tenant-b', 'tenant-c', 'tenant-d', 'tenant-e'];
      const sent = Array.from({ length: 100 }, (_, i) => ({ key: keys[i % keys.length] ?? 'none', seq: i }));
      const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true });
      await producer.connect();
      try {
        // One message per send keeps the global order, which is also each key's order.
        for (const { key, seq } of sent) {
          await producer.send({ topic, messages: [{ key, value: JSON.stringify({ key, seq }) }] });
        }
      } finally {
        await producer.disconnect();
      }

      const received: Array<{ key: string; seq: number; partition: number }> = [];
      const consumer = kafka.consumer({ groupId: uniqueName('broker-test-group') });
      await consumer.connect();
      try {
        await consumer.subscribe({ topic, fromBeginning: true });
        const allArrived = new Promise<void>((resolveAll, reject) => {
          const timer = setTimeout(() => reject(new Error(`only ${received.length}/100 messages after 30 s`)), 30_000);
          void consumer.run({
            eachMessage: async ({ partition, message }) => {
              const body: unknown = JSON.parse(message.value?.toString('utf8') ?? 'null');
              assert.ok(typeof body === 'object' && body !== null && 'seq' in body && typeof body.seq === 'number');
              received.push({ key: message.key?.toString('utf8') ?? '', seq: body.seq, partition });
              if (received.length >= sent.length) {
                clearTimeout(timer);
                resolveAll();
              }
            },
          });
        });
        await allArrived;
      } finally {
        await consumer.disconnect();
      }

      assert.equal(received.length, 100);
      assert.deepEqual(
        received.map((m) => m.seq).sort((a, b) => a - b),
        sent.map((m) => m.seq),
        'every message exactly once',
      );
      for (const key of keys) {
        const seqs = received.filter((m) => m.key === key).map((m) => m.seq);
        const expected = sent.filter((m) => m.key === key).map((m) => m.seq);
        assert.deepEqual(seqs, expected, `messages of ${key} arrive in the order they were sent`);
        assert.equal(new Set(received.filter((m) => m.key === key).map((m) => m.partition)).size, 1, `${key} lives on one partition`);
      }
      assert.ok(new Set(received.map((m) => m.partition)).size > 1, 'keys spread over several partitions');
    } finally {
      await broker.stop();
    }

    assert.throws(() => process.kill(broker.pid, 0), { code: 'ESRCH' }, 'JVM is gone after stop()');
    await broker.stop(); // idempotent
    assert.equal(existsSync(dataDir), false, 'an ephemeral data dir is removed');
  },
);
