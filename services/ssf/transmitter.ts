// The transmitter: the streams (from the store) and one delivery per stream.
// A stream created here starts at the end of the trust topic as it is at
// creation; streams found in the store (a restart, another instance's) resume
// from their group's committed offset.
//
// inactivity_timeout (SSF 1.0 §8.1.1): a receiver's eligible activity is any
// management call naming its stream and, for a poll stream, every poll
// (`touch`). A stream enabled and without activity for its timeout is paused
// (or disabled, as configured) by trustfold itself, which first queues the
// Stream Updated event saying so. The counter lives in this process: it
// starts when the stream's delivery starts here (creation, or this
// instance's start), so a restart never pauses a stream earlier than its
// timeout after the restart.
import type { Kafka } from 'kafkajs';
import type { Codec } from '../../schemas/codec.ts';
import type { Logger } from '../lib/log.ts';
import type { TransmitMapping } from './caep.ts';
import { createStreamDelivery, STREAM_UPDATED, streamUpdatedPayload, type StreamDelivery, type StreamDeliveryOptions } from './delivery.ts';
import type { SsfMetrics } from './metrics.ts';
import type { SigningKey } from './set.ts';
import type { StreamStore } from './store.ts';
import { withStatus, type StreamRecord, type StreamStatus } from './streams.ts';

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
  delivery?: Partial<Pick<StreamDeliveryOptions, 'maxOutstanding' | 'pushTimeoutMs' | 'retryBaseMs' | 'retryMaxMs' | 'redeliverAfterMs' | 'transport'>>;
  metrics?: SsfMetrics;
  /** What a stream becomes after inactivity_timeout without receiver activity. Default pause. */
  inactivityAction?: 'pause' | 'disable';
  /** How often inactivity is checked (ms). Default 1 s. */
  inactivityCheckMs?: number;
  now?: () => number;
};

/** The enabled streams whose receiver did nothing for their inactivity_timeout (0: none). Pure. */
export const inactiveStreams = (streams: readonly StreamRecord[], lastActivity: ReadonlyMap<string, number>, nowMs: number): StreamRecord[] =>
  streams.filter((s) => {
    const last = lastActivity.get(s.stream_id);
    return s.status === 'enabled' && s.inactivity_timeout > 0 && last !== undefined && nowMs - last >= s.inactivity_timeout * 1000;
  });

export type Transmitter = {
  /** Starts the delivery of a new stream (before it is stored, so nothing made meanwhile is missed). */
  open(stream: StreamRecord): Promise<void>;
  delivery(streamId: string): StreamDelivery | undefined;
  /** The receiver did something that counts as activity on this stream (restarts its inactivity timeout). */
  touch(streamId: string): void;
  /** SETs not yet settled, over all streams. */
  outstanding(): number;
  close(): Promise<void>;
};

export const createTransmitter = async (o: TransmitterOptions): Promise<Transmitter> => {
  const deliveries = new Map<string, StreamDelivery>();
  const lastActivity = new Map<string, number>();
  const now = o.now ?? Date.now;
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
      ...(o.metrics !== undefined ? { metrics: o.metrics } : {}),
      ...o.delivery,
    });
  const start = async (s: StreamRecord, fresh: boolean): Promise<void> => {
    const d = make(s);
    deliveries.set(s.stream_id, d);
    lastActivity.set(s.stream_id, now());
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
    lastActivity.delete(id);
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

  const action: StreamStatus = o.inactivityAction === 'disable' ? 'disabled' : 'paused';
  let sweeping = false;
  const sweep = async (): Promise<void> => {
    if (sweeping) return;
    sweeping = true;
    try {
      const t = now();
      for (const s of inactiveStreams(o.store.all(), lastActivity, t)) {
        lastActivity.set(s.stream_id, t);
        const next = withStatus(s, action, `inactivity_timeout: no receiver activity for ${s.inactivity_timeout} s`, new Date(t).toISOString());
        await deliveries.get(s.stream_id)?.enqueueControl(STREAM_UPDATED, streamUpdatedPayload(next));
        await o.store.put(next);
        o.metrics?.inactive.inc({ action });
        o.logger?.info({ stream_id: s.stream_id, status: action, inactivity_timeout: s.inactivity_timeout }, 'ssf: stream inactive; status changed');
      }
    } catch (e) {
      o.logger?.warn({ err: (e as Error).message }, 'ssf: inactivity check failed; retried at the next check');
    } finally {
      sweeping = false;
    }
  };
  const timer = setInterval(() => void sweep(), o.inactivityCheckMs ?? 1000);
  timer.unref();

  return {
    open: (s) => start(s, true),
    delivery: (id) => deliveries.get(id),
    touch(id) {
      if (deliveries.has(id)) lastActivity.set(id, now());
    },
    outstanding: () => [...deliveries.values()].reduce((n, d) => n + d.stats().outstanding, 0),
    async close() {
      clearInterval(timer);
      unsubscribe();
      await Promise.all([...deliveries.values()].map((d) => d.stop()));
      deliveries.clear();
    },
  };
};
