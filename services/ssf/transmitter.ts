// The transmitter: the streams (from the store) and one delivery per stream.
// A stream created here starts at the end of the trust topic as it is at
// creation; streams found in the store (a restart, another instance's) resume
// from their group's committed offset.
import type { Kafka } from 'kafkajs';
import type { Codec } from '../../schemas/codec.ts';
import type { Logger } from '../lib/log.ts';
import type { TransmitMapping } from './caep.ts';
import { createStreamDelivery, type StreamDelivery, type StreamDeliveryOptions } from './delivery.ts';
import type { SigningKey } from './set.ts';
import type { StreamStore } from './store.ts';
import type { StreamRecord } from './streams.ts';

export type TransmitterOptions = {
  kafka: Kafka;
  store: StreamStore;
  trustTopic: string;
  issuer: string;
  key: SigningKey;
  codec: Codec;
  mapping: TransmitMapping;
  readUncommitted: boolean;
  groupPrefix: string;
  logger?: Logger;
  /** Tuning for every stream's delivery (tests shorten the backoff). */
  delivery?: Partial<Pick<StreamDeliveryOptions, 'maxOutstanding' | 'pushTimeoutMs' | 'retryBaseMs' | 'retryMaxMs' | 'redeliverAfterMs' | 'fetch'>>;
};

export type Transmitter = {
  /** Starts the delivery of a new stream (before it is stored, so nothing made meanwhile is missed). */
  open(stream: StreamRecord): Promise<void>;
  delivery(streamId: string): StreamDelivery | undefined;
  close(): Promise<void>;
};

export const createTransmitter = async (o: TransmitterOptions): Promise<Transmitter> => {
  const deliveries = new Map<string, StreamDelivery>();
  const groupOf = (id: string): string => `${o.groupPrefix}-${id}`;
  const make = (s: StreamRecord): StreamDelivery =>
    createStreamDelivery({
      kafka: o.kafka,
      trustTopic: o.trustTopic,
      groupId: groupOf(s.stream_id),
      stream: s,
      issuer: o.issuer,
      key: o.key,
      codec: o.codec,
      mapping: o.mapping,
      readUncommitted: o.readUncommitted,
      ...(o.logger !== undefined ? { logger: o.logger.child({ stream_id: s.stream_id }) } : {}),
      ...o.delivery,
    });
  const start = async (s: StreamRecord, fresh: boolean): Promise<void> => {
    const d = make(s);
    deliveries.set(s.stream_id, d);
    try {
      await d.start({ fresh });
    } catch (e) {
      deliveries.delete(s.stream_id);
      await d.stop().catch(() => undefined);
      throw e;
    }
  };
  const remove = async (id: string): Promise<void> => {
    const d = deliveries.get(id);
    deliveries.delete(id);
    await d?.stop();
    const admin = o.kafka.admin();
    try {
      await admin.connect();
      await admin.deleteGroups([groupOf(id)]);
    } catch (e) {
      o.logger?.warn({ err: (e as Error).message, stream_id: id }, 'ssf: could not delete the stream consumer group');
    } finally {
      await admin.disconnect();
    }
  };

  const unsubscribe = o.store.onChange((id, s) => {
    const d = deliveries.get(id);
    if (s === undefined) void remove(id);
    else if (d !== undefined) d.update(s);
    else void start(s, false).catch((e: unknown) => o.logger?.error({ err: (e as Error).message, stream_id: id }, 'ssf: stream delivery did not start'));
  });
  for (const s of o.store.all()) await start(s, false);

  return {
    open: (s) => start(s, true),
    delivery: (id) => deliveries.get(id),
    async close() {
      unsubscribe();
      await Promise.all([...deliveries.values()].map((d) => d.stop()));
      deliveries.clear();
    },
  };
};
