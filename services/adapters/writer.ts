// Mapped decisions onto the decisions topic, exactly as ingest writes them:
// Avro via the codec, keyed by session (partitionKeyOf), trustfold headers,
// an idempotent producer, acks=all. `write` resolves only once Kafka has
// acknowledged every record, so the Cerbos consumer commits and the OPA
// endpoint answers 2xx only for what is durable.
//
// A failed or timed-out produce retires the producer; the next write gets a
// fresh one (new producer id), so a batch whose fate is unknown can never make
// the broker treat a different later batch as its duplicate. A re-sent batch
// carries the same deterministic event ids, so downstream dedupe absorbs it.
import { CompressionTypes, Partitioners, type Kafka, type Message } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { errorMessage, TrustfoldError } from '../lib/errors.ts';
import { chunkMessages, partitionKeyOf, retiringProducer } from '../lib/kafka.ts';

export type DecisionWriter = {
  write(events: readonly DecisionEvent[]): Promise<void>;
  close(): Promise<void>;
};

export type DecisionWriterOptions = {
  kafka: Kafka;
  topic: string;
  timeoutMs: number;
  codec?: Codec;
  /** Records per produce request; a 1 MiB broker limit leaves room for ~1 000 decisions of ~700 B. */
  maxRecordsPerSend?: number;
};

export const toMessage = (codec: Codec, e: DecisionEvent): Message => ({
  key: partitionKeyOf(e),
  value: codec.encodeEvent(e),
});

export const createDecisionWriter = (opts: DecisionWriterOptions): DecisionWriter => {
  const codec = opts.codec ?? createCodec();
  const perSend = opts.maxRecordsPerSend ?? 500;
  const producer = retiringProducer(opts.kafka, Partitioners.DefaultPartitioner);
  let closed = false;

  const withTimeout = async <T>(work: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TrustfoldError('kafka_timeout', `${what} not acknowledged within ${opts.timeoutMs} ms`, true)), opts.timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    async write(events) {
      if (closed) throw new TrustfoldError('kafka_unavailable', 'decision writer is closed', true);
      if (events.length === 0) return;
      const messages = events.map((e) => toMessage(codec, e));
      const p = producer.get();
      try {
        await withTimeout(
          (async () => {
            const prod = await p;
            for (let i = 0; i < messages.length; i += perSend) {
              // And by bytes: a broker refuses a batch over its message.max.bytes for good.
              for (const chunk of chunkMessages(messages.slice(i, i + perSend))) {
                await prod.send({ topic: opts.topic, acks: -1, compression: CompressionTypes.None, messages: chunk });
              }
            }
          })(),
          `${events.length} decisions`,
        );
      } catch (e) {
        producer.retire(p);
        if (e instanceof TrustfoldError) throw e;
        throw new TrustfoldError('kafka_unavailable', `writing decisions failed: ${errorMessage(e)}`, true, { cause: e });
      }
    },
    async close() {
      closed = true;
      await producer.close();
    },
  };
};
