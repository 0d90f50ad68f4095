// One stream's delivery: a Kafka consumer of the session-trust topic in a
// consumer group of the stream's own (so its position survives a restart,
// like any consumer's), the pure mapping to CAEP events, signed SETs in an
// outbox, and either a push worker (RFC 8935) or a poll endpoint (RFC 8936).
//
// Nothing is lost: the group's offset moves past a trust record only once
// every SET it produced is settled (push: the receiver answered 2xx, or
// refused that SET for good with `invalid_request`; poll: acknowledged). A
// receiver that is down, slow, or answers 5xx/429/401/403 or 400 with
// `invalid_key`, `invalid_issuer`, `invalid_audience`, `authentication_failed`
// or `access_denied` is retried with capped exponential backoff; while it is,
// the outbox fills up to `maxOutstanding` and the consumer then waits (and
// heartbeats), so the backlog stays in Kafka. Events of one session stay in
// order: one partition holds a session, and one worker sends in order.
//
// Status: `paused` stops consuming and sending and holds everything (in
// Kafka and in the outbox); `disabled` keeps consuming but drops, and clears
// the outbox (SSF 1.0 §8.1.2). A restart re-reads from the committed offset;
// SETs re-built from a record carry the same jti as before (`stableJti`), so
// a receiver can drop the copy.
import type { Consumer, Kafka } from 'kafkajs';
import type { Codec } from '../../schemas/codec.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import { retryTransient, tupleKey } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { EVENT_TYPES, eventsForTransition, type TransmitMapping } from './caep.ts';
import { createOutbox, type Commit, type OutboxItem } from './outbox.ts';
import { createPushTransport, type PushTransport } from './endpoint.ts';
import type { SsfMetrics } from './metrics.ts';
import { signSet, stableJti, SET_CONTENT_TYPE, type SetClaims, type SigningKey } from './set.ts';
import { PUSH, streamCovers, type StreamRecord } from './streams.ts';

export type PushOutcome = 'delivered' | 'refused' | 'retry';

/** The claims of one SET a stream sends: one event, a top-level sub_id, `txn` when a trust event caused it, no sub or exp. */
export const setClaimsOf = (c: { issuer: string; aud: string | string[]; jti: string; nowMs: number; txn?: string | undefined; subject: Record<string, unknown>; type: string; payload: Record<string, unknown> }): SetClaims => ({
  iss: c.issuer,
  jti: c.jti,
  iat: Math.floor(c.nowMs / 1000),
  aud: c.aud,
  ...(c.txn !== undefined ? { txn: c.txn } : {}),
  sub_id: c.subject,
  events: { [c.type]: c.payload },
});

/** How a push answer is treated (RFC 8935 §2.3, §2.4): only a refusal of the SET itself is final. */
export const pushOutcomeOf = (status: number, err: string | undefined): PushOutcome => {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 400 && (err === undefined || err === 'invalid_request')) return 'refused';
  if (status === 413) return 'refused';
  return 'retry';
};

export const backoffMs = (attempt: number, baseMs: number, maxMs: number): number => Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));

export type DeliveryStats = { delivered: number; refused: number; retries: number; dropped: number; outstanding: number };

export type PollRequest = { maxEvents?: number | undefined; returnImmediately?: boolean | undefined; ack?: string[] | undefined; setErrs?: Record<string, { err: string; description?: string | undefined }> | undefined };
export type PollResponse = { sets: Record<string, string>; moreAvailable: boolean };

export type StreamDelivery = {
  start(opts: { fresh: boolean }): Promise<void>;
  /** The stream's configuration changed (status, events, delivery, subjects). */
  update(stream: StreamRecord): void;
  /** Queues a verification or stream-updated event. */
  enqueueControl(type: string, payload: Record<string, unknown>): Promise<void>;
  /** `signal`: the poller went away or the server is closing; a long poll then answers at once. */
  poll(req: PollRequest, maxWaitMs: number, signal?: AbortSignal): Promise<PollResponse>;
  stats(): DeliveryStats;
  /** Whether the consumer has joined and fetches. */
  isRunning(): boolean;
  stop(): Promise<void>;
};

export type StreamDeliveryOptions = {
  kafka: Kafka;
  trustTopic: string;
  groupId: string;
  stream: StreamRecord;
  issuer: string;
  key: SigningKey;
  codec: Codec;
  mapping: TransmitMapping;
  readUncommitted: boolean;
  logger?: Logger;
  now?: () => number;
  maxOutstanding?: number;
  pushTimeoutMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** A poller gets an item again when it did not acknowledge it within this. Default 30 s. */
  redeliverAfterMs?: number;
  /** How a SET is POSTed; default a transport that refuses private addresses (endpoint.ts). */
  transport?: PushTransport;
  metrics?: SsfMetrics;
};

/**
 * What may go out now: everything while enabled; while paused or disabled
 * only the stream-updated events saying so (SSF 1.0 §8.1.5: sent "before
 * stopping the stream"), which a receiver could otherwise never hear.
 */
export const deliverable = (items: readonly OutboxItem[], status: StreamRecord['status']): OutboxItem[] =>
  status === 'enabled' ? [...items] : items.filter((i) => i.source === undefined && i.eventType === EVENT_TYPES.streamUpdated);

const delay = (ms: number, stop: Promise<void>): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    void stop.then(() => {
      clearTimeout(t);
      resolve();
    });
  });

export const createStreamDelivery = (o: StreamDeliveryOptions): StreamDelivery => {
  const now = o.now ?? Date.now;
  const transport = o.transport ?? createPushTransport({ allowPrivate: false });
  const metrics = o.metrics;
  const lag = (items: Iterable<OutboxItem>, method: 'push' | 'poll'): void => {
    const t = now();
    for (const i of items) if (i.createdAt !== undefined) metrics?.lag.observe({ method }, Math.max(0, t - i.createdAt) / 1000);
  };
  const maxOutstanding = o.maxOutstanding ?? 1000;
  const outbox = createOutbox();
  const prev = new Map<string, SessionTrust>();
  const stats: DeliveryStats = { delivered: 0, refused: 0, retries: 0, dropped: 0, outstanding: 0 };
  let stream = o.stream;
  let consumer: Consumer | undefined;
  let running = false;
  let stopping = false;
  let stopSignal!: () => void;
  const stopped = new Promise<void>((r) => (stopSignal = r));
  let wake: (() => void) | undefined;
  const wakeAll: (() => void)[] = [];
  const changed = (): void => {
    wake?.();
    for (const w of wakeAll.splice(0)) w();
  };
  const nextChange = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(done, ms);
      wakeAll.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });

  const commit = async (commits: Commit[]): Promise<void> => {
    if (commits.length === 0 || consumer === undefined) return;
    try {
      await consumer.commitOffsets(commits.map((c) => ({ topic: o.trustTopic, partition: c.partition, offset: String(c.offset) })));
    } catch (e) {
      // A later commit covers this one; a crash before it re-delivers (same jti).
      o.logger?.warn({ err: (e as Error).message, stream_id: stream.stream_id }, 'ssf: offset commit failed');
    }
  };
  const settle = (jtis: Iterable<string>): void => {
    void commit(outbox.settle(jtis));
    changed();
  };

  const sign = async (type: string, payload: Record<string, unknown>, subject: Record<string, unknown>, jti: string, createdAt: number, txn?: string): Promise<Omit<OutboxItem, 'source'>> => {
    const set = await signSet(setClaimsOf({ issuer: o.issuer, aud: stream.aud, jti, nowMs: now(), txn, subject, type, payload }), o.key);
    metrics?.signed.inc({ event_type: type });
    return { jti, eventType: type, set, createdAt };
  };

  const itemsFor = async (state: SessionTrust, createdAt: number): Promise<Omit<OutboxItem, 'source'>[]> => {
    const key = tupleKey(state.tenant_id, state.session_id);
    const before = prev.get(key);
    if (before !== undefined && before.version >= state.version) return [];
    prev.set(key, state);
    if (stream.status === 'disabled' || !streamCovers(stream, state)) return [];
    const events = eventsForTransition(before, state, o.mapping).filter((e) => stream.events_delivered.includes(e.type));
    return Promise.all(events.map((e) => sign(e.type, e.payload, e.subject, stableJti(stream.stream_id, state.tenant_id, state.session_id, String(state.version), e.type), createdAt, state.caused_by)));
  };

  const pushLoop = async (): Promise<void> => {
    let attempt = 0;
    while (!stopping) {
      const item = stream.delivery.method === PUSH ? deliverable(outbox.items(), stream.status)[0] : undefined;
      if (item === undefined || stream.delivery.method !== PUSH) {
        await new Promise<void>((r) => {
          wake = r;
          void stopped.then(r);
        });
        wake = undefined;
        continue;
      }
      const d = stream.delivery;
      let outcome: PushOutcome;
      try {
        const res = await transport(
          d.endpoint_url,
          { 'content-type': SET_CONTENT_TYPE, accept: 'application/json', ...(d.authorization_header !== undefined ? { authorization: d.authorization_header } : {}) },
          item.set,
          o.pushTimeoutMs ?? 10_000,
        );
        let errCode: string | undefined;
        try {
          const body = JSON.parse(res.body) as { err?: unknown };
          errCode = typeof body.err === 'string' ? body.err : undefined;
        } catch {
          errCode = undefined;
        }
        outcome = pushOutcomeOf(res.status, errCode);
        metrics?.pushed.inc({ outcome, status: String(res.status) });
        if (outcome !== 'delivered') o.logger?.warn({ stream_id: stream.stream_id, jti: item.jti, status: res.status, err: errCode }, 'ssf push not accepted');
      } catch (e) {
        o.logger?.warn({ stream_id: stream.stream_id, jti: item.jti, err: (e as Error).message }, 'ssf push failed');
        outcome = 'retry';
        metrics?.pushed.inc({ outcome, status: 'error' });
      }
      if (outcome === 'retry') {
        stats.retries++;
        metrics?.retries.inc();
        attempt++;
        await delay(backoffMs(attempt, o.retryBaseMs ?? 250, o.retryMaxMs ?? 30_000), stopped);
        continue;
      }
      attempt = 0;
      if (outcome === 'delivered') {
        stats.delivered++;
        lag([item], 'push');
      } else stats.refused++;
      settle([item.jti]);
    }
  };

  const applyStatus = (): void => {
    if (consumer === undefined) return;
    if (stream.status === 'paused') consumer.pause([{ topic: o.trustTopic }]);
    else consumer.resume([{ topic: o.trustTopic }]);
    if (stream.status === 'disabled') {
      const before = outbox.size();
      void commit(outbox.clear((i) => i.eventType === EVENT_TYPES.streamUpdated));
      stats.dropped += before - outbox.size();
    }
    changed();
  };

  return {
    async start({ fresh }) {
      if (fresh) {
        // A new stream starts at the end of the topic as it is now, exactly:
        // "latest" resolved later, when the group has joined, could skip a
        // change made in between.
        const admin = o.kafka.admin();
        await admin.connect();
        try {
          const offsets = await retryTransient(() => admin.fetchTopicOffsets(o.trustTopic));
          await admin.setOffsets({ groupId: o.groupId, topic: o.trustTopic, partitions: offsets.map((p) => ({ partition: p.partition, offset: p.high })) });
        } finally {
          await admin.disconnect();
        }
      }
      const c = o.kafka.consumer({ groupId: o.groupId, maxWaitTimeInMs: 250, readUncommitted: o.readUncommitted });
      consumer = c;
      c.on(c.events.GROUP_JOIN, () => {
        running = true;
      });
      c.on(c.events.CRASH, () => {
        running = false;
      });
      await c.connect();
      await c.subscribe({ topic: o.trustTopic, fromBeginning: false });
      await c.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
          for (const m of batch.messages) {
            while (outbox.size() >= maxOutstanding) {
              if (!isRunning() || isStale()) return;
              await heartbeat();
              await nextChange(1000);
            }
            if (!isRunning() || isStale()) return;
            const source = { partition: batch.partition, offset: BigInt(m.offset) };
            let items: Omit<OutboxItem, 'source'>[] = [];
            if (m.value !== null) {
              const r = o.codec.decodeTrust(m.value);
              if (r.ok) items = await itemsFor(r.value, Number(m.timestamp));
              else o.logger?.warn({ offset: m.offset, reason: r.error.message }, 'ssf: skipping unreadable trust record');
            }
            const c0 = outbox.add(source, items);
            if (c0 !== undefined) await commit([c0]);
            resolveOffset(m.offset);
            if (items.length > 0) changed();
          }
          await heartbeat();
        },
      });
      applyStatus();
      void pushLoop();
    },
    update(s) {
      const statusChanged = s.status !== stream.status;
      stream = s;
      if (statusChanged) applyStatus();
      else changed();
    },
    async enqueueControl(type, payload) {
      const jti = stableJti(stream.stream_id, type, String(now()), String(Math.random()));
      outbox.addFree(await sign(type, payload, { format: 'opaque', id: stream.stream_id }, jti, now()));
      changed();
    },
    async poll(req, maxWaitMs, signal) {
      const settledNow = [...(req.ack ?? []), ...Object.keys(req.setErrs ?? {})];
      for (const [jti, e] of Object.entries(req.setErrs ?? {})) o.logger?.warn({ stream_id: stream.stream_id, jti, err: e.err, description: e.description }, 'ssf poller reported a SET error');
      if (settledNow.length > 0) {
        const acked = new Set(req.ack ?? []);
        const errs = new Set(Object.keys(req.setErrs ?? {}));
        const known = outbox.items().filter((i) => acked.has(i.jti) || errs.has(i.jti));
        const ackedItems = known.filter((i) => acked.has(i.jti));
        // Counted for what was outstanding: a repeated ack of a settled SET changes nothing.
        stats.delivered += ackedItems.length;
        stats.refused += known.length - ackedItems.length;
        metrics?.pollSettled.inc({ outcome: 'acked' }, ackedItems.length);
        metrics?.pollSettled.inc({ outcome: 'set_err' }, known.length - ackedItems.length);
        lag(ackedItems, 'poll');
        settle(settledNow);
      }
      const max = Math.min(req.maxEvents ?? 100, 1000);
      const deadline = now() + (req.returnImmediately === true ? 0 : maxWaitMs);
      for (;;) {
        const t = now();
        const ready = deliverable(outbox.items(), stream.status).filter((i) => i.handedAt === undefined || t - i.handedAt >= (o.redeliverAfterMs ?? 30_000));
        if (max === 0 || ready.length > 0 || t >= deadline || stopping || signal?.aborted === true) {
          const chosen = ready.slice(0, max);
          for (const i of chosen) i.handedAt = t;
          metrics?.pollServed.inc(chosen.length);
          return { sets: Object.fromEntries(chosen.map((i) => [i.jti, i.set])), moreAvailable: ready.length > chosen.length };
        }
        await nextChange(Math.min(1000, deadline - t), signal);
      }
    },
    stats: () => ({ ...stats, outstanding: outbox.size() }),
    isRunning: () => running,
    async stop() {
      stopping = true;
      stopSignal();
      changed();
      await consumer?.disconnect();
      running = false;
    },
  };
};

/** The control events a status change sends (SSF 1.0 §8.1.5). */
export const streamUpdatedPayload = (s: StreamRecord): Record<string, unknown> => ({ status: s.status, ...(s.reason !== undefined ? { reason: s.reason } : {}) });

export const VERIFICATION = EVENT_TYPES.verification;
export const STREAM_UPDATED = EVENT_TYPES.streamUpdated;
