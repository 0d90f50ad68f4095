// The Kafka an integration test talks to: KAFKA_BROKERS when set (CI, a shared
// dev broker), otherwise a broker of its own in a temp dir — or, with
// TRUSTFOLD_TEST_KAFKA_NODES=3, a three-node cluster of its own (topics then
// replicated 3 times, min.insync.replicas 2). node --test runs each file in its
// own process, so each file gets its own broker or cluster.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { startKafkaBroker, startKafkaCluster } from '../../services/local-kafka/index.ts';

export type TestKafka = { brokers: string[]; stop(): Promise<void> };

const externalBrokers = (): string[] | undefined => {
  const value = process.env['KAFKA_BROKERS']?.trim();
  if (value === undefined || value === '') return undefined;
  return value
    .split(',')
    .map((broker) => broker.trim())
    .filter((broker) => broker !== '');
};

/**
 * TRUSTFOLD_TEST_KAFKA_NODES: how many nodes the tests' own Kafka has (1, the
 * default: a single broker; 3 or more: a cluster). With KAFKA_BROKERS it says
 * how many brokers that cluster has, so topics get the replication it allows.
 */
export const testKafkaNodes = (env: Record<string, string | undefined> = process.env): number => {
  const v = env['TRUSTFOLD_TEST_KAFKA_NODES']?.trim();
  if (v === undefined || v === '') return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n === 2 || n > 9) throw new Error(`TRUSTFOLD_TEST_KAFKA_NODES must be 1 or 3..9 (a quorum of voters), got "${v}"`);
  return n;
};

/** Replication factor and min.insync.replicas of the tests' topics on that Kafka. */
export const testReplication = (nodes = testKafkaNodes()): { replicationFactor: number; minInsyncReplicas: number } => {
  const replicationFactor = Math.min(3, nodes);
  return { replicationFactor, minInsyncReplicas: Math.min(2, replicationFactor) };
};

export const getTestKafka = async (): Promise<TestKafka> => {
  const brokers = externalBrokers();
  if (brokers !== undefined) return { brokers, stop: () => Promise.resolve() };

  const nodes = testKafkaNodes();
  if (nodes > 1) {
    const cluster = await startKafkaCluster({ nodes, ephemeral: true, javaHome: process.env['JAVA_HOME'], heapMb: 256 });
    return { brokers: cluster.brokers, stop: () => cluster.stop() };
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-kafka-'));
  try {
    const broker = await startKafkaBroker({ dataDir, ephemeral: true, javaHome: process.env['JAVA_HOME'] });
    return {
      brokers: broker.brokers,
      stop: async () => {
        await broker.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
};

/** A topic / consumer group / table name no other test (or earlier run) uses. */
export const uniqueName = (prefix: string): string => `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;

const delay = (ms: number): Promise<void> => new Promise((resolveDelay) => setTimeout(resolveDelay, ms));

/** Creates a topic and returns once every partition has a leader. */
export const createTopic = async (
  brokers: string[],
  name: string,
  partitions = 3,
  configs: Record<string, string> = {},
): Promise<void> => {
  const admin = new Kafka({ clientId: 'trustfold-test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    // kafkajs's own waitForLeaders can surface a transient
    // UNKNOWN_TOPIC_OR_PARTITION under load; the loop below waits instead.
    await admin.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic: name,
          numPartitions: partitions,
          replicationFactor: testReplication().replicationFactor,
          configEntries: [
            ...(testReplication().minInsyncReplicas > 1 && !('min.insync.replicas' in configs) ? [{ name: 'min.insync.replicas', value: String(testReplication().minInsyncReplicas) }] : []),
            ...Object.entries(configs).map(([configName, value]) => ({ name: configName, value })),
          ],
        },
      ],
    });
    const deadline = Date.now() + 15_000;
    for (;;) {
      const metadata = await admin.fetchTopicMetadata({ topics: [name] }).catch(() => undefined);
      const topicPartitions = metadata?.topics[0]?.partitions ?? [];
      if (topicPartitions.length === partitions && topicPartitions.every((partition) => partition.leader >= 0)) return;
      if (Date.now() > deadline) throw new Error(`topic ${name}: partitions have no leader after 15 s`);
      await delay(100);
    }
  } finally {
    await admin.disconnect();
  }
};

/** Fresh decisions/signals/session-trust topics (3 partitions) and a dead-letter topic, named for one test. */
export const createAuditTopics = async (brokers: string[]): Promise<{ decisions: string; signals: string; sessionTrust: string; deadLetter: string }> => {
  const t = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  await Promise.all([createTopic(brokers, t.decisions, 3), createTopic(brokers, t.signals, 3), createTopic(brokers, t.sessionTrust, 3), createTopic(brokers, t.deadLetter, 1)]);
  return t;
};

/** Polls `probe` until `done` holds; fails with the last value seen after `timeoutMs`. */
export const waitForValue = async <T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 30_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await delay(150);
  }
};

/** The environment that gives one test its own topics and projector group, all named after `prefix`. */
export const topicEnv = (prefix: string, brokers: string[], partitions: number): Record<string, string> & { TRUSTFOLD_PROJECTOR_GROUP: string } => ({
  KAFKA_BROKERS: brokers.join(','),
  TRUSTFOLD_TOPIC_DECISIONS: `${prefix}.decisions`,
  TRUSTFOLD_TOPIC_SIGNALS: `${prefix}.signals`,
  TRUSTFOLD_TOPIC_SESSION_TRUST: `${prefix}.session-trust`,
  TRUSTFOLD_TOPIC_DEAD_LETTER: `${prefix}.dead-letter`,
  TRUSTFOLD_PARTITIONS: String(partitions),
  TRUSTFOLD_PROJECTOR_GROUP: `${prefix}-projector`,
  // On a cluster the services create their topics replicated as the cluster allows.
  ...(testKafkaNodes() > 1 && {
    TRUSTFOLD_REPLICATION: String(testReplication().replicationFactor),
    TRUSTFOLD_MIN_INSYNC_REPLICAS: String(testReplication().minInsyncReplicas),
  }),
});
