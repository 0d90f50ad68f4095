// The projector's input: a batch of records becomes the events to fold. A
// record already in the restored world is skipped; one that does not decode,
// or whose key is not the one its event implies, is dead-lettered unchanged.
import type { Batch, Producer } from 'kafkajs';
import type { Codec } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import type { DeadLetterReason } from '../lib/errors.ts';
import { partitionKeyOf, sendToDeadLetter } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';

/** A Kafka record timestamp (ms as a string) as an ISO time, or undefined when it is missing or absurd. */
export const isoOfRecordTime = (timestamp: string | undefined): string | undefined => {
  const ms = Number(timestamp);
  return timestamp === undefined || !Number.isFinite(ms) || ms <= 0 || ms > 8.64e15 ? undefined : new Date(ms).toISOString();
};

/** Why a record's key is not the one its event implies (`partitionKeyOf`), or undefined when it is. */
export const keyMismatch = (key: Buffer | null, event: TrustfoldEvent): string | undefined => {
  const want = partitionKeyOf(event);
  const got = key?.toString();
  return got === want ? undefined : `record key ${got === undefined ? '(none)' : JSON.stringify(got.slice(0, 200))} is not the event's key ${JSON.stringify(want)}`;
};

/** Each decoded event with its record's broker time (log-append time on the input topics). */
export type Admitted = { event: TrustfoldEvent; appendedAt: string | undefined };

export type AdmitDeps = {
  codec: Codec;
  logger: Logger;
  /** The dead-letter producer as it is now (undefined while torn down: the poison is counted, not sent). */
  dlq: () => Producer | undefined;
  deadLetterTopic: string;
  groupId: string;
  now: () => number;
  stats: { replaySkipped: number; keyMismatches: number; deadLettered: number };
};

/** The events of a batch to fold, in order; records below `skipBelow` are already in the restored world. */
export const admitBatch = async (batch: Batch, skipBelow: bigint, deps: AdmitDeps): Promise<Admitted[]> => {
  const { codec, logger, stats } = deps;
  const valid: Admitted[] = [];
  for (const m of batch.messages) {
    // Already in the restored world (and dead-lettered, if it was poison).
    if (BigInt(m.offset) < skipBelow) {
      stats.replaySkipped++;
      continue;
    }
    const decoded = m.value === null ? undefined : codec.decodeEvent(m.value);
    // The record's key must be the one its payload implies: a record keyed
    // as another tenant's or session's lands on that partition and (with
    // several instances) on another owner; it is not folded.
    const keyRefusal = decoded === undefined || !decoded.ok ? undefined : keyMismatch(m.key, decoded.value);
    if (decoded !== undefined && decoded.ok && keyRefusal === undefined) {
      valid.push({ event: decoded.value, appendedAt: isoOfRecordTime(m.timestamp) });
      continue;
    }
    if (keyRefusal !== undefined) stats.keyMismatches++;
    const [reason, message]: [DeadLetterReason, string] =
      decoded === undefined ? ['empty_value', 'message has no value'] : !decoded.ok ? [decoded.error.code, decoded.error.message] : ['key_mismatch', keyRefusal ?? ''];
    logger.warn({ topic: batch.topic, partition: batch.partition, offset: m.offset, reason }, 'dead-lettering poison message');
    const dlq = deps.dlq();
    if (dlq !== undefined) {
      await sendToDeadLetter(
        dlq,
        deps.deadLetterTopic,
        { topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value, reason, message, consumer: deps.groupId },
        new Date(deps.now()),
      );
    }
    stats.deadLettered++;
  }
  return valid;
};
