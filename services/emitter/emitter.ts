// The gateway side of POST /v1/events: buffer events, send them in batches,
// retry with backoff while ingest answers 503 (or the network fails), and tell
// each caller what became of its event.
//
// Emitting never throws and its promise never rejects: a PDP on the hot path
// may fire and forget without risking an unhandled rejection, or await the
// outcome — `{ ok: true }` once Kafka holds the event, `{ ok: false, error }`
// when ingest refused it or the retries ran out. Re-sending is safe because
// ingest and every consumer are idempotent by event_id, so a batch whose
// answer was lost is simply sent again with the same ids.
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { urlToHttpOptions } from 'node:url';
import type { z } from 'zod';
import type { decisionEventSchema, signalEventSchema, SignalEvent, TrustfoldEventInput } from '../../schemas/events.ts';
import type { FieldError } from '../../schemas/result.ts';
import { uuidv7 } from '../../schemas/ids.ts';

type DecisionInput = z.input<typeof decisionEventSchema>;
type Envelope = 'type' | 'event_id' | 'occurred_at' | 'tenant_id' | 'emitted_by';
type Optionalised<T> = Omit<T, Envelope> & { event_id?: string; occurred_at?: string; tenant_id?: string };
type DistributiveOptionalised<T> = T extends unknown ? Optionalised<T> : never;

/** A decision without the envelope the emitter fills in (type, event_id, occurred_at; tenant_id defaults to the emitter's). */
export type DecisionToEmit = Optionalised<DecisionInput>;
/** A signal of any kind, the envelope optional as for decisions. */
export type SignalToEmit = DistributiveOptionalised<z.input<typeof signalEventSchema>> & { kind: SignalEvent['kind'] };

export type EmitError = {
  /** `rejected`: ingest refused this event (not retried); `unavailable`: retries ran out; `closed`, `buffer_full`, or the HTTP error code. */
  code: string;
  message: string;
  errors?: FieldError[];
};
export type EmitOutcome = { ok: true; event_id: string } | { ok: false; event_id: string; error: EmitError };

export type EmitterOptions = {
  /** Base URL of ingest, e.g. http://127.0.0.1:8080 */
  url: string;
  /** Bearer token with events:write, or a function returning a fresh one (called per request). */
  token: string | (() => string | Promise<string>);
  /** Default tenant_id for events that do not name one. */
  tenant?: string;
  /** Events per request; ingest's default limit is 10 000. Default 500. */
  batchSize?: number;
  /** Longest an event waits in the buffer before a partial batch is sent. Default 50 ms. */
  flushIntervalMs?: number;
  /** Requests in flight at once. Default 2. */
  concurrency?: number;
  /** Attempts after the first for a batch that meets 503/429/5xx or a network error. Default 8. */
  maxRetries?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Events buffered (not yet sent) beyond which emits fail fast with `buffer_full`. Default 100 000. */
  maxBuffered?: number;
  /** Per-request timeout. Default 30 s. */
  requestTimeoutMs?: number;
  /**
   * Instead of the built-in client (node:http(s) on pooled keep-alive sockets). The built-in one costs a
   * gateway less CPU per request than fetch, which matters when every durable decision is a request of its own.
   */
  fetch?: typeof fetch;
  clock?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  /** Called once per event that could not be stored, for fire-and-forget callers. */
  onError?: (outcome: Extract<EmitOutcome, { ok: false }>) => void;
};

/** Per event. */
export type EmitOptions = {
  /**
   * Send without waiting for the flush interval: the caller waits on the outcome (a decision that must be
   * stored before its call is forwarded). The event leaves at once if a request slot is free, else with the
   * next batch as soon as one frees, together with whatever is buffered then.
   */
  immediate?: boolean;
};

export type EmitterStats = { emitted: number; stored: number; failed: number; retries: number; buffered: number; inFlight: number };

export type Emitter = {
  emitDecision(decision: DecisionToEmit, options?: EmitOptions): Promise<EmitOutcome>;
  emitSignal(signal: SignalToEmit, options?: EmitOptions): Promise<EmitOutcome>;
  /** Any event in the contract's JSON shape. */
  emit(event: Partial<TrustfoldEventInput> & Record<string, unknown>, options?: EmitOptions): Promise<EmitOutcome>;
  /** Sends what is buffered and waits until every emitted event has an outcome. */
  flush(): Promise<void>;
  /** flush(), then refuse further emits with `closed`. */
  close(): Promise<void>;
  stats(): EmitterStats;
};

type Pending = { event: Record<string, unknown>; event_id: string; settle: (o: EmitOutcome) => void };

const RETRIABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Retry-After in seconds or as an HTTP date; undefined if absent or unreadable. */
export const retryAfterMs = (header: string | null, now: number): number | undefined => {
  if (header === null || header.trim() === '') return undefined;
  const s = Number(header);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
};

/** One POST of a batch: the status, Retry-After and the JSON body (undefined if none or not JSON); rejects on a network error or timeout. */
type Poster = ((body: string, token: string, timeoutMs: number) => Promise<{ status: number; retryAfter: string | null; body: unknown }>) & { close(): void };

const fetchPoster = (doFetch: typeof fetch, endpoint: string): Poster =>
  Object.assign(
    async (body: string, token: string, timeoutMs: number) => {
      const res = await doFetch(endpoint, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json().catch(() => undefined) };
    },
    { close: () => undefined },
  );

const httpPoster = (endpoint: URL): Poster => {
  const https = endpoint.protocol === 'https:';
  const agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const request = https ? httpsRequest : httpRequest;
  const target = urlToHttpOptions(endpoint);
  return Object.assign(
    (body: string, token: string, timeoutMs: number) =>
      new Promise<{ status: number; retryAfter: string | null; body: unknown }>((resolve, reject) => {
        const req = request(
          { ...target, method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.once('error', reject);
            res.once('end', () => {
              let parsed: unknown;
              try {
                parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
              } catch {
                parsed = undefined;
              }
              const retryAfter = res.headers['retry-after'];
              resolve({ status: res.statusCode ?? 0, retryAfter: typeof retryAfter === 'string' ? retryAfter : null, body: parsed });
            });
          },
        );
        req.setNoDelay(true);
        // The whole exchange is bounded, as AbortSignal.timeout bounds a fetch.
        const deadline = setTimeout(() => req.destroy(new Error(`no answer from ingest within ${timeoutMs} ms`)), timeoutMs);
        req.once('close', () => clearTimeout(deadline));
        req.once('error', reject);
        req.end(body);
      }),
    { close: () => agent.destroy() },
  );
};

export const createEmitter = (opts: EmitterOptions): Emitter => {
  const batchSize = opts.batchSize ?? 500;
  const flushIntervalMs = opts.flushIntervalMs ?? 50;
  const concurrency = opts.concurrency ?? 2;
  const maxRetries = opts.maxRetries ?? 8;
  const initialBackoff = opts.initialBackoffMs ?? 100;
  const maxBackoff = opts.maxBackoffMs ?? 10_000;
  const maxBuffered = opts.maxBuffered ?? 100_000;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  const endpointUrl = new URL('/v1/events', opts.url);
  const post: Poster = opts.fetch !== undefined ? fetchPoster(opts.fetch, endpointUrl.toString()) : httpPoster(endpointUrl);
  const clock = opts.clock ?? (() => new Date());
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  let buffer: Pending[] = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let inFlight = 0;
  /** Batches waiting for a request slot. */
  let waiting = 0;
  /** A buffered event asked to be sent at once and has not left yet. */
  let urgent = false;
  const stats = { emitted: 0, stored: 0, failed: 0, retries: 0 };
  const idle: (() => void)[] = [];
  const slots: (() => void)[] = [];

  const settle = (p: Pending, o: EmitOutcome) => {
    if (o.ok) stats.stored++;
    else {
      stats.failed++;
      try {
        opts.onError?.(o);
      } catch {
        // a throwing callback must not lose other events' outcomes
      }
    }
    p.settle(o);
  };
  const fail = (batch: readonly Pending[], error: EmitError) => {
    for (const p of batch) settle(p, { ok: false, event_id: p.event_id, error });
  };

  const tokenValue = async () => (typeof opts.token === 'string' ? opts.token : await opts.token());

  const backoff = (attempt: number) => Math.random() * Math.min(maxBackoff, initialBackoff * 2 ** attempt);

  /** One batch to a final outcome: stored, refused, or out of retries. */
  const deliver = async (batch: Pending[]): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      let status: number;
      let body: unknown;
      let wait: number | undefined;
      try {
        const res = await post(JSON.stringify(batch.map((p) => p.event)), await tokenValue(), requestTimeoutMs);
        status = res.status;
        wait = retryAfterMs(res.retryAfter, clock().getTime());
        body = res.body;
      } catch (e) {
        status = 0; // network error or timeout: the batch may or may not be stored; re-sending is safe
        body = { error: { code: 'network', message: e instanceof Error ? e.message : String(e) } };
      }
      if (status === 202) {
        const r = body as { rejected?: { index: number; errors?: FieldError[] }[] } | undefined;
        const refused = new Map((r?.rejected ?? []).map((x) => [x.index, x.errors ?? []]));
        batch.forEach((p, i) => {
          const errors = refused.get(i);
          if (errors === undefined) settle(p, { ok: true, event_id: p.event_id });
          else settle(p, { ok: false, event_id: p.event_id, error: { code: 'rejected', message: errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors } });
        });
        return;
      }
      const err = (body as { error?: EmitError } | undefined)?.error ?? { code: `http_${status}`, message: `ingest answered ${status}` };
      if (status === 413 && batch.length > 1) {
        const half = Math.ceil(batch.length / 2);
        await deliver(batch.slice(0, half));
        await deliver(batch.slice(half));
        return;
      }
      if (status !== 0 && !RETRIABLE.has(status)) return fail(batch, err);
      if (attempt >= maxRetries) return fail(batch, { code: 'unavailable', message: `gave up after ${attempt + 1} attempts: ${err.message}` });
      stats.retries++;
      await sleep(Math.min(maxBackoff, Math.max(wait ?? 0, backoff(attempt))));
    }
  };

  const sendBatch = async (batch: Pending[]) => {
    if (inFlight >= concurrency) {
      waiting++;
      while (inFlight >= concurrency) await new Promise<void>((r) => slots.push(r));
      waiting--;
    }
    inFlight++;
    try {
      await deliver(batch);
    } catch (e) {
      fail(batch, { code: 'internal', message: e instanceof Error ? e.message : String(e) });
    } finally {
      inFlight--;
      slots.shift()?.();
      if (urgent) sendUrgent();
      if (inFlight === 0 && buffer.length === 0) for (const r of idle.splice(0)) r();
    }
  };

  const drain = (all: boolean) => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    while (buffer.length >= batchSize || (all && buffer.length > 0)) {
      void sendBatch(buffer.splice(0, batchSize));
    }
    if (buffer.length === 0) urgent = false;
    if (buffer.length > 0) timer = setTimeout(() => drain(true), flushIntervalMs);
  };

  /** An event asked to leave at once: now if a request slot is free, else when one frees (the batches in between group-commit). */
  const sendUrgent = () => {
    urgent = true;
    if (inFlight + waiting < concurrency) drain(true);
  };

  const enqueue = (input: Record<string, unknown>, immediate: boolean): Promise<EmitOutcome> => {
    const event: Record<string, unknown> = { ...input };
    event['event_id'] ??= uuidv7(clock().getTime());
    event['occurred_at'] ??= clock().toISOString();
    if (opts.tenant !== undefined) event['tenant_id'] ??= opts.tenant;
    const event_id = String(event['event_id']);
    stats.emitted++;
    if (closed) {
      stats.failed++;
      return Promise.resolve({ ok: false, event_id, error: { code: 'closed', message: 'emitter is closed' } });
    }
    if (buffer.length >= maxBuffered) {
      stats.failed++;
      return Promise.resolve({ ok: false, event_id, error: { code: 'buffer_full', message: `${maxBuffered} events waiting; ingest is not keeping up` } });
    }
    return new Promise<EmitOutcome>((settleOutcome) => {
      buffer.push({ event, event_id, settle: settleOutcome });
      if (immediate) sendUrgent();
      if (buffer.length >= batchSize) drain(false);
      else if (buffer.length > 0) timer ??= setTimeout(() => drain(true), flushIntervalMs);
    });
  };

  const flush = async () => {
    drain(true);
    if (inFlight === 0 && buffer.length === 0) return;
    await new Promise<void>((r) => idle.push(r));
  };

  return {
    emitDecision: (d, o) => enqueue({ ...d, type: 'decision' }, o?.immediate === true),
    emitSignal: (s, o) => enqueue({ ...s, type: 'signal' }, o?.immediate === true),
    emit: (e, o) => enqueue(e, o?.immediate === true),
    flush,
    close: async () => {
      await flush();
      closed = true;
      buffer = [];
      post.close();
    },
    stats: () => ({ ...stats, buffered: buffer.length, inFlight }),
  };
};
