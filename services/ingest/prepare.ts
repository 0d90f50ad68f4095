// A request body → the records ingest will produce, each with what the
// duplicate check needs: parse (body.ts), every per-event check (admit.ts
// checkEvents), the Avro encoding and its digest. Pure and free of shared
// state, so the same function runs on the request's thread or on a
// preparing thread (prepare-thread.ts); the duplicate check, which needs the
// instance's `recent` cache, stays with the caller (admit.ts dedupeEvents).
import type { Codec } from '../../schemas/codec.ts';
import { ok, type Result } from '../../schemas/result.ts';
import type { Caller } from '../lib/auth.ts';
import type { EventTimeBounds } from '../lib/event-time.ts';
import { partitionKeyOf } from '../lib/kafka.ts';
import { checkEvents, type Rejection, type RejectReason } from './admit.ts';
import { parseBody, type BodyError, type BodyFormat } from './body.ts';

/** `body`: the request body as read (bytes, decoded here as UTF-8, as fastify's string parser would) or as text. */
export type PrepareInput = { body: string | Uint8Array; format: BodyFormat; limit: number; caller: Caller; nowMs: number; bounds: EventTimeBounds };

const textOf = (body: string | Uint8Array): string => (typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));

/** One event ready for Kafka: `stream` picks the topic, `kind` the metric label. */
export type PreparedEvent = { index: number; tenant: string; id: string; digest: string; kind: string; stream: 'decisions' | 'signals'; key: string; value: Buffer };
/** `reasons[i]` is why `rejected[i]` was refused. */
export type Prepared = { events: PreparedEvent[]; rejected: Rejection[]; reasons: RejectReason[] };

export const prepareBody = (input: PrepareInput, codec: Codec): Result<Prepared, BodyError> => {
  const parsed = parseBody(textOf(input.body), input.format, input.limit);
  if (!parsed.ok) return parsed;
  const checked = checkEvents(parsed.value, { caller: input.caller, nowMs: input.nowMs, bounds: input.bounds, encode: (e) => codec.encodeEvent(e) });
  const events: PreparedEvent[] = [];
  for (const c of checked.events) {
    const e = c.event;
    if (c.bytes === undefined) continue; // not reached: checkEvents encodes every event it passes when given `encode`
    events.push({
      index: c.index,
      tenant: e.tenant_id,
      id: e.event_id,
      digest: c.digest,
      kind: e.type === 'decision' ? 'decision' : e.kind,
      stream: e.type === 'decision' ? 'decisions' : 'signals',
      key: partitionKeyOf(e),
      value: c.bytes,
    });
  }
  return ok({ events, rejected: checked.rejected, reasons: checked.reasons });
};
