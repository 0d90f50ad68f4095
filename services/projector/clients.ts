// The projector's Kafka clients and topics, as the runtime creates them on
// every start and recovery.
import type { Consumer, Kafka, Producer } from 'kafkajs';
import type { Config } from '../lib/config.ts';
import { ensureTopics, topicLayout } from '../lib/kafka.ts';
import type { Delivery } from './config.ts';

/**
 * Retries of the output producers: never give up (a failure invalidates the
 * world), and start at 5 ms — a transaction that starts right after a commit
 * gets CONCURRENT_TRANSACTIONS until the commit markers are written (ms), and
 * the cluster's 100 ms first back-off would add that much to every
 * propagation (kafkajs#304).
 */
const OUTPUT_RETRY = { initialRetryTime: 5, maxRetryTime: 2_000, retries: Number.MAX_SAFE_INTEGER };

/** The states' producer: transactional (the whole group in one transaction) or idempotent (step (1) only). */
export const statesProducer = (kafka: Kafka, delivery: Delivery, transactionalId: string): Producer =>
  delivery === 'transactional'
    ? kafka.producer({
        transactionalId,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: 30_000,
        retry: OUTPUT_RETRY,
      })
    : kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: OUTPUT_RETRY });

/** Idempotent mode: the producer of the recording rounds (changelog + offsets), owner of the transactional id. */
export const changelogProducer = (kafka: Kafka, transactionalId: string): Producer =>
  kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30_000, retry: OUTPUT_RETRY });

/** The input consumer: committed offsets only move with the output (autoCommit off, read_committed). */
export const inputConsumer = (kafka: Kafka, groupId: string, sessionTimeout: number): Consumer =>
  kafka.consumer({
    groupId,
    maxWaitTimeInMs: 250,
    readUncommitted: false,
    sessionTimeout,
    rebalanceTimeout: Math.max(sessionTimeout, 10_000),
    heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 5)),
  });

/** Creates the topics the projector reads and writes, its changelog (compacted, like session-trust) included. */
export const ensureProjectorTopics = async (kafka: Kafka, config: Pick<Config, 'topics' | 'kafka'>, changelogTopic: string): Promise<void> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const sessionTrust = topicLayout({ topics: config.topics, kafka: config.kafka }).find((t) => t.topic === config.topics.sessionTrust);
    await ensureTopics(admin, [
      ...topicLayout({ topics: config.topics, kafka: config.kafka }),
      { ...sessionTrust, topic: changelogTopic, numPartitions: config.kafka.partitions, replicationFactor: config.kafka.replication },
    ]);
  } finally {
    await admin.disconnect();
  }
};
