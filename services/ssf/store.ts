// Where stream configurations live: a compacted Kafka topic, one record per
// stream keyed by its id, a tombstone when it is deleted. Every instance reads
// the topic from the beginning at start and follows it, so a restart (or
// another API instance) sees the streams created before. Kafka rather than
// ClickHouse: the configurations are few, small and read-after-write (a
// ReplacingMergeTree answers stale rows until it merges), every role already
// depends on Kafka while ClickHouse runs only with the audit roles, and each
// stream's delivery position is a Kafka consumer-group offset anyway.
import { randomUUID } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import { endOffsets, trackCatchUp } from '../projector/catch-up.ts';
import type { Logger } from '../lib/log.ts';
import { retryTransient } from '../lib/kafka.ts';
import type { StreamRecord } from './streams.ts';

export type StreamListener = (streamId: string, stream: StreamRecord | undefined) => void;

export type StreamStore = {
  all(): StreamRecord[];
  get(streamId: string): StreamRecord | undefined;
  /** Resolves once the change is durable (acks=all). */
  put(stream: StreamRecord): Promise<void>;
  delete(streamId: string): Promise<void>;
  onChange(listener: StreamListener): () => void;
  close(): Promise<void>;
};

const createListeners = () => {
  const listeners = new Set<StreamListener>();
  return {
    add(l: StreamListener): () => void {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    emit(id: string, s: StreamRecord | undefined, log?: Logger): void {
      for (const l of listeners) {
        try {
          l(id, s);
        } catch (e) {
          log?.error({ err: (e as Error).message, stream_id: id }, 'ssf stream listener failed');
        }
      }
    },
  };
};

/** For tests and a single process without Kafka persistence. */
export const createMemoryStreamStore = (): StreamStore => {
  const streams = new Map<string, StreamRecord>();
  const listeners = createListeners();
  return {
    all: () => [...streams.values()],
    get: (id) => streams.get(id),
    put: async (s) => {
      streams.set(s.stream_id, s);
      listeners.emit(s.stream_id, s);
    },
    delete: async (id) => {
      streams.delete(id);
      listeners.emit(id, undefined);
    },
    onChange: (l) => listeners.add(l),
    close: async () => {},
  };
};

export const createKafkaStreamStore = async (o: { kafka: Kafka; topic: string; logger?: Logger }): Promise<StreamStore> => {
  const streams = new Map<string, StreamRecord>();
  const listeners = createListeners();
  const apply = (id: string, s: StreamRecord | undefined): void => {
    const held = streams.get(id);
    if (JSON.stringify(held) === JSON.stringify(s)) return;
    if (s === undefined) streams.delete(id);
    else streams.set(id, s);
    listeners.emit(id, s, o.logger);
  };

  const admin = o.kafka.admin();
  await retryTransient(() => admin.connect());
  let targets: Map<number, bigint>;
  try {
    targets = await endOffsets(admin, o.topic);
  } finally {
    await admin.disconnect();
  }

  const consumer = o.kafka.consumer({ groupId: `trustfold-ssf-streams-${randomUUID()}`, maxWaitTimeInMs: 250 });
  // The same "read everything that was there at start" test as the TrustView's.
  const caught = trackCatchUp(consumer, o.topic, targets);
  await retryTransient(() => consumer.connect());
  await retryTransient(() => consumer.subscribe({ topic: o.topic, fromBeginning: true }));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      const id = message.key?.toString('utf8');
      if (id === undefined) return;
      try {
        apply(id, message.value === null ? undefined : (JSON.parse(message.value.toString('utf8')) as StreamRecord));
      } catch (e) {
        o.logger?.warn({ err: (e as Error).message, offset: message.offset }, 'skipping unreadable ssf stream record');
      }
    },
  });
  await caught.done;
  caught.dispose();

  const producer: Producer = o.kafka.producer({ idempotent: true });
  await producer.connect();
  const write = async (id: string, value: string | null): Promise<void> => {
    await producer.send({ topic: o.topic, acks: -1, messages: [{ key: id, value }] });
  };
  return {
    all: () => [...streams.values()],
    get: (id) => streams.get(id),
    put: async (s) => {
      await write(s.stream_id, JSON.stringify(s));
      apply(s.stream_id, s);
    },
    delete: async (id) => {
      await write(id, null);
      apply(id, undefined);
    },
    onChange: (l) => listeners.add(l),
    close: async () => {
      await producer.disconnect();
      await consumer.disconnect();
    },
  };
};
