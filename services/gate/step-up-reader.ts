// Reads step_up_resolved signals for the gateway from the signals topic, from
// the moment it started (a group of its own, never committing, at the latest
// offsets): the requests it can honour are the ones it issued since then.
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import { retryTransient } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { resolutionOf, type StepUps } from './step-up.ts';

export type StepUpReader = { close(): Promise<void> };

export const createStepUpReader = async (o: { kafka: Kafka; topic: string; stepUps: StepUps; codec?: Codec; logger?: Logger; joinTimeoutMs?: number }): Promise<StepUpReader> => {
  const codec = o.codec ?? createCodec();
  const consumer = o.kafka.consumer({ groupId: `trustfold-gate-step-up-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const joined = new Promise<void>((resolve) => {
    consumer.on(consumer.events.GROUP_JOIN, () => resolve());
  });
  await retryTransient(() => consumer.connect());
  await retryTransient(() => consumer.subscribe({ topic: o.topic, fromBeginning: false }));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      if (message.value === null) return;
      const r = codec.decodeEvent(message.value);
      if (!r.ok) return void o.logger?.warn({ offset: message.offset, reason: r.error.message }, 'step-up reader: skipping an unreadable signal');
      if (r.value.type !== 'signal') return;
      const resolution = resolutionOf(r.value);
      if (resolution !== undefined) o.stepUps.resolved(resolution);
    },
  });
  // Serving before the group joined could miss a resolution of a request issued meanwhile.
  const timeout = o.joinTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    joined,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`step-up reader: no partition of ${o.topic} assigned after ${timeout} ms`)), timeout))),
  ]).finally(() => clearTimeout(timer));
  return { close: () => consumer.disconnect() };
};
