// The local broker with a SASL listener (PLAIN): a client configured with
// KAFKA_SASL_* produces and consumes; one without credentials, or with a wrong
// password, is refused.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { configFrom } from '../../services/lib/config.ts';
import { createKafka, createKafkaFor } from '../../services/lib/kafka.ts';
import { startKafkaBroker, type KafkaBroker } from '../../services/local-kafka/index.ts';
import { uniqueName } from '../helpers/kafka.ts';

const skip = process.env['KAFKA_BROKERS'] ? 'KAFKA_BROKERS is set: no local broker to configure' : false;
const users = { 'trustfold-app': 'app-secret-1' };
let broker: KafkaBroker | undefined;

before(async () => {
  if (skip !== false) return;
  broker = await startKafkaBroker({ dataDir: mkdtempSync(join(tmpdir(), 'trustfold-kafka-sasl-')), ephemeral: true, sasl: { users }, javaHome: process.env['JAVA_HOME'] });
});
after(async () => broker?.stop());

const noRetry = { retry: { retries: 0 }, connectionTimeout: 2_000, requestTimeout: 5_000 };

describe('Kafka SASL', { skip }, () => {
  test('a client with the configured credentials creates a topic, produces and consumes', { timeout: 120_000 }, async () => {
    assert.ok(broker);
    const config = configFrom({ KAFKA_BROKERS: broker.brokers.join(','), KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'trustfold-app', KAFKA_SASL_PASSWORD: 'app-secret-1' });
    assert.deepEqual(config.kafka.security.sasl, { mechanism: 'plain', username: 'trustfold-app', password: 'app-secret-1' });
    const kafka = createKafkaFor(config.kafka, broker.brokers, 'sasl-test');
    const topic = uniqueName('sasl');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'authenticated' }] });
    await producer.disconnect();
    const consumer = kafka.consumer({ groupId: uniqueName('sasl-group') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const got = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message within 30 s')), 30_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          clearTimeout(timer);
          resolve(message.value?.toString('utf8') ?? '');
        },
      });
    });
    await consumer.disconnect();
    assert.equal(got, 'authenticated');
  });

  test('a client without credentials, or with a wrong password, is refused', { timeout: 60_000 }, async () => {
    assert.ok(broker);
    // No SASL: the broker answers only the handshake, so nothing can be read or written.
    const anonymous = createKafka(broker.brokers, 'sasl-anon', noRetry).admin();
    await assert.rejects((async () => {
      await anonymous.connect();
      await anonymous.listTopics();
    })());
    await anonymous.disconnect().catch(() => undefined);
    const anonymousProducer = createKafka(broker.brokers, 'sasl-anon-producer', noRetry).producer();
    await assert.rejects((async () => {
      await anonymousProducer.connect();
      await anonymousProducer.send({ topic: 'any', messages: [{ value: 'unauthenticated' }] });
    })());
    await anonymousProducer.disconnect().catch(() => undefined);
    const wrong = createKafkaFor(
      configFrom({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'trustfold-app', KAFKA_SASL_PASSWORD: 'not-the-password' }).kafka,
      broker.brokers,
      'sasl-wrong',
      noRetry,
    ).producer();
    await assert.rejects(wrong.connect(), (e: unknown) => {
      assert.match(String((e as Error).name), /SASL|Authentication/i);
      return true;
    });
    await wrong.disconnect().catch(() => undefined);
  });
});
