// Kafka plumbing shared by every role: the client, the topic layout, message
// keys and the dead-letter record. Handlers stay thin on top of this.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Kafka, logLevel, type Admin, type ICustomPartitioner, type ITopicConfig, type KafkaConfig, type Producer } from 'kafkajs';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import type { Config, KafkaSecurity, Topics } from './config.ts';
import { isRetriable, type DeadLetterReason } from './errors.ts';

/**
 * kafkajs's transaction manager retries InitProducerId (the fence) and
 * TxnOffsetCommit with the library's retry defaults, never the client's or the
 * producer's retry option (it reads `cluster.retry`, which kafkajs never
 * sets). The default first back-off is 300 ms: a new owner fencing a
 * partition whose old owner died mid-transaction gets CONCURRENT_TRANSACTIONS
 * until the coordinator has aborted that transaction (tens of ms) and then
 * waited ~300 ms more — measured 256–371 ms per fence, a quarter of a
 * projector failover. The defaults are tuned here, where every role gets its
 * client: first back-off 10 ms, doubling, ten retries (~10 s in all, as
 * patient as the library's five from 300 ms). Every other retrier of ours
 * names its own initial time and retries, so only the transaction manager's
 * schedule changes. Returns false when kafkajs has no such module (another
 * version): nothing is changed then.
 */
export const TRANSACTION_RETRY_DEFAULTS = { initialRetryTime: 10, retries: 10 } as const;
const tuneTransactionRetries = (): boolean => {
  const require = createRequire(import.meta.url);
  let tuned = false;
  for (const m of ['kafkajs/src/retry/defaults.js', 'kafkajs/src/retry/defaults.test.js']) {
    try {
      Object.assign(require(m) as Record<string, number>, TRANSACTION_RETRY_DEFAULTS);
      tuned = true;
    } catch {
      // not in this kafkajs
    }
  }
  return tuned;
};
export const transactionRetriesTuned = tuneTransactionRetries();

export const createKafka = (brokers: string[], clientId: string, extra: Partial<KafkaConfig> = {}): Kafka =>
  new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3_000,
    requestTimeout: 10_000,
    retry: { initialRetryTime: 100, maxRetryTime: 2_000, retries: 8, factor: 0.2, multiplier: 2 },
    ...extra,
  });

/**
 * The SASL and TLS options of a client, from configuration (KAFKA_SASL_*,
 * KAFKA_TLS*). Every role passes them to createKafka, so no client of a
 * secured cluster connects without them. PEM files are read here, once per
 * client.
 */
export const kafkaSecurityOptions = (security: KafkaSecurity): Pick<KafkaConfig, 'sasl' | 'ssl'> => {
  const out: Pick<KafkaConfig, 'sasl' | 'ssl'> = {};
  const { sasl, tls } = security;
  if (sasl !== undefined) {
    out.sasl =
      sasl.mechanism === 'plain'
        ? { mechanism: 'plain', username: sasl.username, password: sasl.password }
        : sasl.mechanism === 'scram-sha-256'
          ? { mechanism: 'scram-sha-256', username: sasl.username, password: sasl.password }
          : { mechanism: 'scram-sha-512', username: sasl.username, password: sasl.password };
  }
  if (tls !== undefined) {
    const read = (file: string | undefined): Buffer | undefined => (file === undefined ? undefined : readFileSync(file));
    const ca = read(tls.caFile);
    const cert = read(tls.certFile);
    const key = read(tls.keyFile);
    out.ssl = {
      rejectUnauthorized: tls.rejectUnauthorized,
      ...(ca !== undefined ? { ca: [ca] } : {}),
      ...(cert !== undefined ? { cert } : {}),
      ...(key !== undefined ? { key } : {}),
    };
  }
  return out;
};

/** A client of the configured cluster, with its security settings. */
export const createKafkaFor = (kafka: Pick<Config['kafka'], 'security'>, brokers: string[], clientId: string, extra: Partial<KafkaConfig> = {}): Kafka =>
  createKafka(brokers, clientId, { ...kafkaSecurityOptions(kafka.security), ...extra });

// The keys are contract (schemas/keys.ts); re-exported for the Kafka code that uses them.
export { partitionKeyOf, sessionKey, tupleKey } from '../../schemas/keys.ts';

export const topicOf = (topics: Topics, e: TrustfoldEvent): string => (e.type === 'decision' ? topics.decisions : topics.signals);

export const topicLayout = (config: Pick<Config, 'topics' | 'kafka'>): ITopicConfig[] => {
  // TRUSTFOLD_REPLICATION and TRUSTFOLD_MIN_INSYNC_REPLICAS: with acks=all (every producer of
  // trustfold), a write is acknowledged once minIsr replicas hold it, so one
  // broker lost with replication 3 and min ISR 2 loses nothing acknowledged.
  const { partitions, replication, minInsyncReplicas } = config.kafka;
  const minIsr = String(minInsyncReplicas);
  return [
    { topic: config.topics.decisions, numPartitions: partitions, replicationFactor: replication, configEntries: [{ name: 'min.insync.replicas', value: minIsr }] },
    // The broker stamps signal records with their append time: the projector dates a loosening signal no later than that (`clampLoosening`).
    {
      topic: config.topics.signals,
      numPartitions: partitions,
      replicationFactor: replication,
      configEntries: [
        { name: 'min.insync.replicas', value: minIsr },
        { name: 'message.timestamp.type', value: 'LogAppendTime' },
      ],
    },
    {
      topic: config.topics.sessionTrust,
      numPartitions: partitions,
      replicationFactor: replication,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.insync.replicas', value: minIsr },
        { name: 'min.cleanable.dirty.ratio', value: '0.1' },
        { name: 'segment.ms', value: String(60 * 60 * 1000) },
      ],
    },
    {
      topic: config.topics.deadLetter,
      numPartitions: 1,
      replicationFactor: replication,
      configEntries: [
        { name: 'min.insync.replicas', value: minIsr },
        { name: 'retention.ms', value: String(30 * 24 * 60 * 60 * 1000) },
      ],
    },
  ];
};

/** Creates the topics that do not exist yet; existing ones are left as they are. */
export const ensureTopics = async (admin: Admin, layout: ITopicConfig[]): Promise<string[]> => {
  const existing = new Set(await admin.listTopics());
  const missing = layout.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return [];
  try {
    await admin.createTopics({ topics: missing, waitForLeaders: true });
  } catch (e) {
    // Another instance may have created them between list and create, or the
    // broker is slow to show new topics and elect their leaders (a loaded
    // host: createTopics' own wait gives up with UNKNOWN_TOPIC_OR_PARTITION).
    // Either way: wait until every topic is listed and has a leader per
    // partition, and fail only if that does not happen in time.
    if (!(await topicsLed(admin, missing.map((t) => t.topic), 60_000))) throw e;
  }
  return missing.map((t) => t.topic);
};

/** Waits until every topic exists and each of its partitions has a leader; false after `timeoutMs`. */
const topicsLed = async (admin: Admin, topics: string[], timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const listed = new Set(await admin.listTopics());
      if (topics.every((t) => listed.has(t))) {
        const md = await admin.fetchTopicMetadata({ topics });
        if (md.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) return true;
      }
    } catch (e) {
      if (!isRetriable(e)) throw e;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
};

/** Where a poison message came from and why it was set aside. */
export type DeadLetter = {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  reason: DeadLetterReason;
  message: string;
  consumer: string;
};

export const DEAD_LETTER_HEADERS = {
  topic: 'trustfold-dlq-topic',
  partition: 'trustfold-dlq-partition',
  offset: 'trustfold-dlq-offset',
  reason: 'trustfold-dlq-reason',
  message: 'trustfold-dlq-message',
  consumer: 'trustfold-dlq-consumer',
  at: 'trustfold-dlq-at',
} as const;

/** Writes the original bytes to the dead-letter topic, with where they came from and why. */
export const sendToDeadLetter = async (producer: Producer, deadLetterTopic: string, dl: DeadLetter, now: Date): Promise<void> => {
  await producer.send({
    topic: deadLetterTopic,
    acks: -1,
    messages: [
      {
        key: dl.key,
        value: dl.value,
        headers: {
          [DEAD_LETTER_HEADERS.topic]: dl.topic,
          [DEAD_LETTER_HEADERS.partition]: String(dl.partition),
          [DEAD_LETTER_HEADERS.offset]: dl.offset,
          [DEAD_LETTER_HEADERS.reason]: dl.reason,
          [DEAD_LETTER_HEADERS.message]: dl.message.slice(0, 2000),
          [DEAD_LETTER_HEADERS.consumer]: dl.consumer,
          [DEAD_LETTER_HEADERS.at]: now.toISOString(),
        },
      },
    ],
  });
};

/** Retries what a retry can fix (isRetriable: e.g. NOT_LEADER right after a topic was created); anything else is thrown at once. */
export const retryTransient = async <T>(fn: () => Promise<T>, attempts = 20, delayMs = 250): Promise<T> => {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (!isRetriable(e) || i >= attempts) throw e;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
};

/**
 * An idempotent acks=all producer connected on first use and retired after a
 * failure: a produce whose fate is unknown (failed, timed out) retires it, and
 * the next `get` makes a fresh one (new producer id), so a batch whose outcome
 * was never known cannot block or reorder the sequences of the next one.
 */
export type RetiringProducer = {
  /** The current producer, connecting a new one if there is none. */
  get(): Promise<Producer>;
  /** Drops `which` (default: the current one) and disconnects it in the background. */
  retire(which?: Promise<Producer>): void;
  /** Disconnects the current one. */
  close(): Promise<void>;
};

export const retiringProducer = (kafka: Kafka, createPartitioner: ICustomPartitioner): RetiringProducer => {
  let current: Promise<Producer> | undefined;
  return {
    get() {
      if (current) return current;
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        createPartitioner,
        // Bounded: a producer that fails is retired, never reused.
        retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1_000 },
      });
      const connecting = p.connect().then(() => p);
      current = connecting;
      connecting.catch(() => {
        if (current === connecting) current = undefined;
        void p.disconnect().catch(() => undefined);
      });
      return connecting;
    },
    retire(which) {
      const old = which ?? current;
      if (old === undefined || old !== current) return;
      current = undefined;
      void old.then((x) => x.disconnect()).catch(() => undefined);
    },
    async close() {
      const old = current;
      current = undefined;
      await old?.then((x) => x.disconnect()).catch(() => undefined);
    },
  };
};

/**
 * Splits items, in order, into runs whose sizes add up to at most `maxBytes`
 * (an item larger than that travels alone). A broker refuses a record batch
 * over its `message.max.bytes` (1 MiB by default) for good, and kafkajs puts a
 * send's messages for one partition in one batch: a producer that sends a
 * large backlog at once would otherwise fail on it forever.
 */
export const chunkBySize = <T>(items: readonly T[], sizeOf: (item: T) => number, maxBytes: number): { items: T[]; bytes: number }[] => {
  const out: { items: T[]; bytes: number }[] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (chunk.length > 0 && bytes + size > maxBytes) {
      out.push({ items: chunk, bytes });
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += size;
  }
  if (chunk.length > 0) out.push({ items: chunk, bytes });
  return out;
};

type Sized = { key?: Buffer | string | null; value: Buffer | string | null };
/** A record's bytes on the wire, roughly: key, value and a record's overhead. */
export const messageSize = (m: Sized): number => (m.value?.length ?? 0) + (m.key?.length ?? 0) + 64;

/** Messages in sends of at most `maxBytes` each (see chunkBySize). */
export const chunkMessages = <M extends Sized>(messages: readonly M[], maxBytes = 256 * 1024): M[][] =>
  chunkBySize(messages, messageSize, maxBytes).map((c) => c.items);
