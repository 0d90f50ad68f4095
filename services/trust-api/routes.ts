// HTTP for PDPs that do not speak Kafka: the current trust of a session, and
// a server-sent-event stream of changes. Both read a TrustView (the same live
// copy a Kafka-speaking PDP keeps), so any instance can serve them.
//
// Tenancy: a caller sees its own tenant only; an operator (tenant "*") sees
// every tenant and may narrow with ?tenant=.
//
// Streams are bounded: one ends when the token that opened it expires (the
// client reconnects with a fresh token and Last-Event-ID), and open streams
// are capped per token subject and in all (429 + Retry-After beyond), so one
// leaked token cannot hold every connection of the process.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { LIMITS, TIERS, type SessionTrust } from '../../schemas/events.ts';
import { canAccessTenant, isOperator, type Caller } from '../lib/auth.ts';
import { callerOf, requireScope, sendError } from '../lib/http.ts';
import type { TrustLookup } from '../pdp-client/trust-view.ts';
import { createTrustHub, type HubEntry, type TrustHub } from './hub.ts';

/** What the routes need of a TrustView. */
export type TrustSource = {
  isReady(): boolean;
  get(sessionId: string, tenantId: string): TrustLookup;
  find(sessionId: string): SessionTrust[];
  all(): Iterable<SessionTrust>;
  /** The states of one tenant, when the view indexes them; else `all()` is filtered. */
  ofTenant?(tenantId: string): Iterable<SessionTrust>;
  onChange(listener: (state: SessionTrust) => void): () => void;
};

export type TrustRoutesDeps = {
  view: TrustSource;
  /** Comment lines keep proxies from closing an idle stream. Default 15 s. */
  heartbeatMs?: number;
  /** Changes kept for Last-Event-ID resume. Default 10 000. */
  bufferSize?: number;
  /** A client further behind than this many bytes is disconnected (it resumes with Last-Event-ID). Default 4 MiB. */
  maxBufferedBytes?: number;
  hub?: TrustHub;
  /** Open streams in all (config.http.maxStreams). Default 1000. */
  maxStreams?: number;
  /** Open streams per token subject (config.http.maxStreamsPerSubject). Default 20. */
  maxStreamsPerSubject?: number;
  /** The clock (ms) a stream's remaining token lifetime is measured with. */
  now?: () => number;
};

/** setTimeout takes at most a signed 32-bit delay; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const id = z.string().min(1).max(LIMITS.id);
// The SessionTrust contract (schemas/events.ts) as a serializer: its timestamp
// transforms cannot run on output, and the state is already validated.
const trustResponseSchema = z
  .looseObject({ session_id: z.string(), tenant_id: z.string(), version: z.number().int(), tier: z.enum(TIERS), updated_at: z.string(), caused_by: z.string() })
  .describe('SessionTrust (docs/design.md, "Trust state")');
const errorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string(), errors: z.array(z.object({ path: z.string(), message: z.string() })).optional() }) });

type StreamFilter = { tenant?: string; session?: string; delegator?: string };

const matches = (f: StreamFilter, s: SessionTrust): boolean =>
  (f.tenant === undefined || s.tenant_id === f.tenant) &&
  (f.session === undefined || s.session_id === f.session) &&
  (f.delegator === undefined || s.delegator === f.delegator);

/** The tenant(s) a caller may read; undefined = every tenant (operator without ?tenant=). */
const tenantScope = (caller: Caller, requested: string | undefined): { ok: true; tenant: string | undefined } | { ok: false; message: string } => {
  if (isOperator(caller)) return { ok: true, tenant: requested };
  if (requested !== undefined && requested !== caller.tenant) return { ok: false, message: `the token may read tenant "${caller.tenant}" only` };
  return { ok: true, tenant: caller.tenant };
};

const frame = (e: { id: string; state: SessionTrust }): string => `id: ${e.id}\n${frameWithoutId(e.state)}`;
/** A frame that leaves the client's last event id as it was (SSE: no `id:` field). */
const frameWithoutId = (state: SessionTrust): string => `event: trust\ndata: ${JSON.stringify(state)}\n\n`;

/**
 * The current states a new stream starts with, read from the caller's tenant
 * only: one session is looked up, a tenant is listed through its index when
 * the view has one; only an operator without ?tenant= walks every tenant.
 */
const snapshotOf = (view: TrustSource, filter: StreamFilter): Iterable<SessionTrust> => {
  if (filter.tenant !== undefined && filter.session !== undefined) {
    const r = view.get(filter.session, filter.tenant);
    return r.known ? [r.state] : [];
  }
  if (filter.tenant !== undefined && view.ofTenant !== undefined) return view.ofTenant(filter.tenant);
  return view.all();
};

/** Counts open streams per subject and in all. */
const createStreamCounter = (max: number, perSubject: number) => {
  const bySubject = new Map<string, number>();
  let total = 0;
  return {
    /** Why a new stream of `sub` is refused, or undefined after counting it in. */
    open(sub: string): string | undefined {
      const mine = bySubject.get(sub) ?? 0;
      if (total >= max) return `${total} streams are open on this instance, the limit (TRUSTFOLD_SSE_MAX_STREAMS)`;
      if (mine >= perSubject) return `${mine} streams are open for sub "${sub}", the limit per token subject (TRUSTFOLD_SSE_MAX_STREAMS_PER_SUBJECT)`;
      bySubject.set(sub, mine + 1);
      total++;
      return undefined;
    },
    close(sub: string): void {
      const mine = (bySubject.get(sub) ?? 1) - 1;
      if (mine <= 0) bySubject.delete(sub);
      else bySubject.set(sub, mine);
      total--;
    },
  };
};

export const trustRoutes =
  (deps: TrustRoutesDeps): FastifyPluginAsyncZod =>
  async (app) => {
    const hub = deps.hub ?? createTrustHub(deps.bufferSize ?? 10_000);
    const heartbeatMs = deps.heartbeatMs ?? 15_000;
    const maxBuffered = deps.maxBufferedBytes ?? 4 * 1024 * 1024;
    const unsubscribe = deps.hub === undefined ? deps.view.onChange((s) => hub.publish(s)) : () => undefined;
    const now = deps.now ?? Date.now;
    const streams = createStreamCounter(deps.maxStreams ?? 1_000, deps.maxStreamsPerSubject ?? 20);
    const open = new Set<() => void>();
    // Streams never end on their own: close them before the server waits for its connections.
    app.addHook('preClose', async () => {
      for (const close of open) close();
    });
    app.addHook('onClose', async () => {
      unsubscribe();
    });

    app.get(
      '/v1/sessions/:id/trust',
      {
        onRequest: requireScope('trust:read'),
        schema: {
          description: 'Current trust state of a session (404 if unknown).',
          params: z.object({ id }),
          querystring: z.object({ tenant: id.optional().describe('operators: the tenant of the session') }),
          response: { 200: trustResponseSchema, 400: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 503: errorBodySchema },
        },
      },
      async (req, reply) => {
        const caller = callerOf(req);
        const scope = tenantScope(caller, req.query.tenant);
        if (!scope.ok) return sendError(reply, 403, 'forbidden', scope.message);
        if (!deps.view.isReady()) {
          reply.header('retry-after', '1');
          return sendError(reply, 503, 'not_ready', 'trust view is still loading');
        }
        let state: SessionTrust | undefined;
        let stalenessMs = 0;
        if (scope.tenant !== undefined) {
          const r = deps.view.get(req.params.id, scope.tenant);
          stalenessMs = r.stalenessMs;
          if (r.known) state = r.state;
        } else {
          const all = deps.view.find(req.params.id);
          if (all.length > 1) return sendError(reply, 400, 'bad_request', `session ${req.params.id} exists in ${all.length} tenants: add ?tenant=`);
          state = all[0];
        }
        if (state === undefined || !canAccessTenant(caller, state.tenant_id)) return sendError(reply, 404, 'not_found', `no trust state for session ${req.params.id}`);
        reply.header('etag', `"${state.version}"`);
        reply.header('x-trustfold-staleness-ms', String(stalenessMs));
        return reply.code(200).send(state);
      },
    );

    app.get(
      '/v1/trust/stream',
      {
        onRequest: requireScope('trust:read'),
        schema: {
          description:
            'Server-sent events of trust changes (`event: trust`, data = the session trust state). Filters: session, delegator, tenant (operators). ' +
            'Ids are `<epoch>-<seq>`; reconnect with Last-Event-ID to get what was missed, or a snapshot of current states when that is no longer possible. ' +
            'Without Last-Event-ID the stream starts with the current states matching a session or delegator filter (snapshot=false to skip). Comment lines are heartbeats. ' +
            'The stream ends with `event: token_expired` when the token expires: reconnect with a fresh token and Last-Event-ID. 429 + Retry-After beyond the open-stream limits (per token subject and per instance).',
          querystring: z.object({
            session: id.optional(),
            delegator: id.optional(),
            tenant: id.optional(),
            snapshot: z.enum(['true', 'false']).optional(),
            last_event_id: z.string().max(64).optional().describe('for clients that cannot set the Last-Event-ID header'),
          }),
        },
      },
      async (req, reply) => {
        const caller = callerOf(req);
        const scope = tenantScope(caller, req.query.tenant);
        if (!scope.ok) return sendError(reply, 403, 'forbidden', scope.message);
        const filter: StreamFilter = {
          ...(scope.tenant !== undefined && { tenant: scope.tenant }),
          ...(req.query.session !== undefined && { session: req.query.session }),
          ...(req.query.delegator !== undefined && { delegator: req.query.delegator }),
        };
        const header = req.headers['last-event-id'];
        const lastEventId = (Array.isArray(header) ? header[0] : header) ?? req.query.last_event_id;
        const refused = streams.open(caller.sub);
        if (refused !== undefined) {
          reply.header('retry-after', '5');
          return sendError(reply, 429, 'too_many_streams', refused);
        }

        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        let closed = false;
        const write = (chunk: string): void => {
          if (closed) return;
          res.write(chunk);
          if (res.writableLength > maxBuffered) close();
        };
        // Subscribe first, then replay: both happen in this tick, so nothing falls between them.
        const stopListening = hub.listen((e: HubEntry) => {
          if (matches(filter, e.state)) write(frame(e));
        });
        const heartbeat = setInterval(() => write(`: heartbeat ${new Date().toISOString()}\n\n`), heartbeatMs);
        const expiry = setTimeout(
          () => {
            write(`event: token_expired\ndata: {"reconnect":"with a fresh token and Last-Event-ID"}\n\n`);
            close();
          },
          Math.min(MAX_TIMER_MS, Math.max(0, caller.expiresAt - now())),
        );
        const close = (): void => {
          if (closed) return;
          closed = true;
          clearInterval(heartbeat);
          clearTimeout(expiry);
          stopListening();
          open.delete(close);
          streams.close(caller.sub);
          res.end();
        };
        open.add(close);
        req.raw.on('close', close);

        write('retry: 2000\n\n');
        const missed = lastEventId === undefined ? undefined : hub.since(lastEventId);
        if (missed !== undefined) {
          for (const e of missed) if (matches(filter, e.state)) write(frame(e));
        } else {
          const wantSnapshot =
            lastEventId !== undefined || (req.query.snapshot ?? (filter.session !== undefined || filter.delegator !== undefined ? 'true' : 'false')) === 'true';
          if (wantSnapshot) {
            // Only the snapshot's last frame carries an id: a client cut off
            // mid-snapshot reconnects with the id it had before it (or none)
            // and gets the snapshot again, instead of resuming after states it
            // never received.
            const head = hub.headId();
            const states = [...snapshotOf(deps.view, filter)].filter((s) => matches(filter, s));
            states.forEach((s, i) => write(i === states.length - 1 ? frame({ id: head, state: s }) : frameWithoutId(s)));
          }
        }
      },
    );
  };
