// A request body → the records ingest will produce, each with what the
// duplicate check needs: parse (body.ts), every per-event check (admit.ts
// checkEvents), the Avro encoding and its digest. Pure and free of shared
// state, so the same function runs on the request's thread or on a
// preparing thread (prepare-thread.ts); the duplicate check, which needs the
// instance's `recent` cache, stays with the caller (admit.ts dedupeEvents).
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import { ok, type Result } from '../../schemas/result.ts';
import type { Caller } from '../lib/auth.ts';
import type { EventTimeBounds } from '../lib/event-time.ts';
import { partitionKeyOf } from '../lib/kafka.ts';
import { checkEvents, type Rejection, type RejectReason } from './admit.ts';
import { parseBody, type BodyError, type BodyFormat } from './body.ts';
import { createFastEventEncoder } from './fast-avro.ts';
import { DIGEST_WORDS, KEY_WORDS, writeDigestBytes, writeRecentKey } from './recent-ids.ts';
import { murmur2 } from './murmur2.ts';

/** `body`: the request body as read (bytes, decoded here as UTF-8, as fastify's string parser would) or as text. */
export type PrepareInput = { body: string | Uint8Array; format: BodyFormat; limit: number; caller: Caller; nowMs: number; bounds: EventTimeBounds };

const textOf = (body: string | Uint8Array): string => (typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));

/**
 * One event ready for Kafka: `stream` picks the topic, `kind` the metric
 * label, `hash` the murmur2 of the record key (the sink's lane). What the
 * duplicate check needs of it is in the batch's columns (Prepared).
 */
export type PreparedEvent = {
  index: number;
  tenant: string;
  id: string;
  kind: string;
  stream: 'decisions' | 'signals';
  key: string;
  hash: number;
  value: Buffer;
};
/**
 * `reasons[i]` is why `rejected[i]` was refused; `keys`/`digests`: the
 * duplicate check's columns of `events` (admit.ts DedupeColumns), hashed
 * here so that the thread holding the recent-id cache does not.
 */
export type Prepared = { events: PreparedEvent[]; rejected: Rejection[]; reasons: RejectReason[]; keys: Int32Array; digests: Int32Array };

/** An event → its bytes for Kafka (throws when the Avro schema refuses it). */
export type EventEncoder = (e: TrustfoldEvent) => Buffer;

/**
 * The codec's encodeEvent; without a codec of the caller's, the default
 * codec behind the fast writer (fast-avro.ts), which gives the same bytes and
 * hands whatever it declines to the codec.
 */
export const eventEncoder = (codec?: Codec): EventEncoder => {
  if (codec !== undefined) return (e) => codec.encodeEvent(e);
  const standard = createCodec();
  const fast = createFastEventEncoder(standard);
  return (e) => fast(e) ?? standard.encodeEvent(e);
};

export const prepareBody = (input: PrepareInput, encode: EventEncoder): Result<Prepared, BodyError> => {
  const parsed = parseBody(textOf(input.body), input.format, input.limit);
  if (!parsed.ok) return parsed;
  const checked = checkEvents(parsed.value, { caller: input.caller, nowMs: input.nowMs, bounds: input.bounds, encode });
  const events: PreparedEvent[] = [];
  const keys = new Int32Array(KEY_WORDS * checked.events.length);
  const digests = new Int32Array(DIGEST_WORDS * checked.events.length);
  for (const c of checked.events) {
    const e = c.event;
    if (c.bytes === undefined || c.sha === undefined) continue; // not reached: checkEvents encodes every event it passes when given `encode`
    const key = partitionKeyOf(e);
    writeRecentKey(e.tenant_id, e.event_id, keys, KEY_WORDS * events.length);
    writeDigestBytes(c.sha, digests, DIGEST_WORDS * events.length);
    events.push({
      index: c.index,
      tenant: e.tenant_id,
      id: e.event_id,
      kind: e.type === 'decision' ? 'decision' : e.kind,
      stream: e.type === 'decision' ? 'decisions' : 'signals',
      key,
      hash: murmur2(key),
      value: c.bytes,
    });
  }
  const n = events.length;
  return ok({ events, rejected: checked.rejected, reasons: checked.reasons, keys: n === checked.events.length ? keys : keys.slice(0, KEY_WORDS * n), digests: n === checked.events.length ? digests : digests.slice(0, DIGEST_WORDS * n) });
};
