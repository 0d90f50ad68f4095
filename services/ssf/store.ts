// Where stream configurations live: a compacted Kafka topic, one record per
// stream keyed by its id, a tombstone when it is deleted. Every instance reads
// the topic from the beginning at start and follows it, so a restart (or
// another API instance) sees the streams created before. Kafka rather than
// ClickHouse: the configurations are few, small and read-after-write (a
// ReplacingMergeTree answers stale rows until it merges), every role already
// depends on Kafka while ClickHouse runs only with the audit roles, and each
// stream's delivery position is a Kafka consumer-group offset anyway.
import type { Kafka, Producer } from 'kafkajs';
import { zodIssues } from '../../schemas/codec.ts';
import { readFromStart } from '../lib/catch-up.ts';
import { formatFieldErrors } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import { storedStreamSchema, type StreamRecord } from './streams.ts';

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

  // The same "read everything that was there at start" test as the TrustView's.
  const { consumer, catchUp: caught } = await readFromStart(o.kafka, { topic: o.topic, groupPrefix: 'trustfold-ssf-streams' });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      const id = message.key?.toString('utf8');
      if (id === undefined) return;
      if (message.value === null) return apply(id, undefined);
      let parsed: ReturnType<typeof storedStreamSchema.safeParse>;
      try {
        parsed = storedStreamSchema.safeParse(JSON.parse(message.value.toString('utf8')));
      } catch (e) {
        o.logger?.warn({ err: (e as Error).message, offset: message.offset }, 'skipping unreadable ssf stream record');
        return;
      }
      if (!parsed.success || parsed.data.stream_id !== id) {
        const reason = parsed.success ? 'stream_id differs from the record key' : formatFieldErrors(zodIssues(parsed.error));
        o.logger?.warn({ reason, offset: message.offset }, 'skipping invalid ssf stream record');
        return;
      }
      apply(id, parsed.data);
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
