// HTTP → Kafka: gateways' events and the SOC's change freezes.
//
// A 2xx here means Kafka acknowledged (acks=all, idempotent producer) every
// event counted as accepted. When Kafka is down or slower than the produce
// timeout the answer is 503 + Retry-After and nothing of that request is
// reported accepted; some of it may still land, which is harmless because
// every consumer is idempotent by event_id and the client will re-send.
//
// `duplicates` is best effort per instance ((tenant, event_id) pairs seen in
// the request, and a bounded LRU of those this instance got acked, each with a
// digest of its content: the same id with other content is rejected as a
// conflict, never counted as a duplicate); the end-to-end guarantee is
// idempotency by event_id downstream, not this count.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import { eventSchema, freezeScopeSchema, LIMITS, signalSchemas, type ActiveFreeze, type SignalOf, type TrustfoldEvent } from '../../schemas/events.ts';
import { ok, type FieldError, type Result } from '../../schemas/result.ts';
import { EVENT_KIND_SCOPES, EVENT_WRITE_SCOPES, isOperator, OPERATOR_TENANT, type Caller } from '../lib/auth.ts';
import type { Config, Topics } from '../lib/config.ts';
import { codeOf, errorMessage } from '../lib/errors.ts';
import { DEFAULT_EVENT_TIME_BOUNDS, type EventTimeBounds } from '../lib/event-time.ts';
import { callerOf, requireAnyScope, requireScope, sendError, type ReadinessCheck } from '../lib/http.ts';
import { partitionKeyOf, topicOf } from '../lib/kafka.ts';
import type { Registry } from 'prom-client';
import { dedupeByColumns, type DedupeColumns, type Rejection } from './admit.ts';
import { formatOf, NDJSON_CONTENT_TYPES, type BodyError, type BodyFormat } from './body.ts';
import { inlinePreparer, threadPreparer, type Preparer } from './prepare-thread.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { createIngestMetrics } from './metrics.ts';
import { createRecentIds } from './recent-ids.ts';
import type { EventSink, OutboundRecord } from './sink.ts';

export type IngestDeps = {
  sink: EventSink;
  topics: Topics;
  registry: Registry;
  /** Active freezes of a tenant from the projected state (wired to the projector). */
  activeFreezes: (tenant: string) => Promise<ActiveFreeze[]>;
  limits: Pick<Config['http'], 'maxBodyBytes' | 'maxEventsPerRequest' | 'produceTimeoutMs'>;
  /** occurred_at bounds (config.eventTime). Default 60 s ahead, 30 days old. */
  eventTime?: EventTimeBounds;
  codec?: Codec;
  /**
   * Worker threads that prepare request bodies (parse, check, encode) off the
   * event loop (prepare-thread.ts). Default 0: on the request's thread. With a
   * custom `codec` bodies are always prepared inline (a codec cannot cross threads).
   */
  prepareThreads?: number;
  /** How many acknowledged event ids this instance remembers for duplicate detection. Default 100 000. */
  recentIdCapacity?: number;
  /** Retry-After seconds on 503. Default 2. */
  retryAfterSeconds?: number;
  clock?: () => Date;
  newId?: () => string;
};

const fieldErrorSchema = z.object({ path: z.string(), message: z.string() });
const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), errors: z.array(fieldErrorSchema).optional() }),
});

export const ingestResponseSchema = z.object({
  accepted: z.number().int().describe('events acknowledged by Kafka (acks=all) in this request'),
  duplicates: z
    .number()
    .int()
    .describe('events skipped as already seen, in this request or recently by this instance (best effort; consumers dedupe by event_id)'),
  rejected: z.array(z.object({ index: z.number().int(), event_id: z.string().optional(), errors: z.array(fieldErrorSchema) })),
});
export type IngestResponse = z.infer<typeof ingestResponseSchema>;

const raised = signalSchemas.change_freeze_raised.shape;
export const raiseFreezeBodySchema = z.strictObject({
  freeze_id: raised.freeze_id.optional().describe('defaults to a generated id; re-raising an id replaces that freeze'),
  tenant_id: raised.tenant_id.optional().describe('required for operator tokens (tenant "*"), else must be the token\'s tenant'),
  scope: raised.scope,
  reason: raised.reason.min(1),
  ticket: raised.ticket,
  expires_at: raised.expires_at,
});
const freezeEventResponse = z.object({ freeze_id: z.string(), event_id: z.string() });
// Response schemas must be encodable: fastify-type-provider-zod v7 serialises
// with z.encode, which refuses the contract's one-way timestamp transform.
const activeFreezeResponse = z.object({
  freeze_id: z.string(),
  scope: freezeScopeSchema,
  reason: z.string(),
  raised_by: z.string().optional(),
  ticket: z.string().optional(),
  event_id: z.string().optional(),
  since: z.string().optional().describe('RFC 3339'),
  expires_at: z.string().optional().describe('RFC 3339'),
});
const tenantQuery = z.object({
  tenant: raised.tenant_id
    .optional()
    .describe('the tenant: required with an operator token (tenant "*"; 400 without it); a tenant token may name only its own (403 otherwise)'),
});

/** /readyz check: the Kafka cluster answers metadata requests. */
export const kafkaReadiness = (sink: EventSink): ReadinessCheck => ({
  name: 'kafka',
  check: async () => ((await sink.ready()) ? true : 'Kafka cluster unreachable'),
});

type TenantChoice = { ok: true; tenant: string } | { ok: false; status: 400 | 403; code: 'bad_request' | 'forbidden'; message: string; errors: FieldError[] };
/** `field`: where the request names its tenant (`tenant_id` in a body, `tenant` in a query). */
const tenantFor = (caller: Caller, requested: string | undefined, field: string): TenantChoice => {
  if (isOperator(caller)) {
    if (requested === undefined || requested === OPERATOR_TENANT) {
      const message = `an operator token (tenant "*") must name the tenant in ${field}`;
      return { ok: false, status: 400, code: 'bad_request', message, errors: [{ path: field, message: 'required with an operator token' }] };
    }
    return { ok: true, tenant: requested };
  }
  if (requested !== undefined && requested !== caller.tenant) {
    const message = `the token may act on tenant "${caller.tenant}" only`;
    return { ok: false, status: 403, code: 'forbidden', message, errors: [{ path: field, message }] };
  }
  return { ok: true, tenant: caller.tenant };
};

/** The kind → scope table of the contract, as the OpenAPI description prints it. */
const kindScopeTable = (): string => {
  const byScope = new Map<string, string[]>();
  for (const [kind, scope] of Object.entries(EVENT_KIND_SCOPES)) byScope.set(scope, [...(byScope.get(scope) ?? []), kind]);
  return [...byScope].map(([scope, kinds]) => `\`${scope}\`: ${kinds.join(', ')}`).join('; ');
};

const subTooLong = (caller: Caller): FieldError[] | undefined =>
  caller.sub.length > LIMITS.id ? [{ path: 'sub', message: `token sub longer than ${LIMITS.id} characters cannot be stamped as emitted_by` }] : undefined;

export const ingestRoutes =
  (deps: IngestDeps): FastifyPluginAsyncZod =>
  async (app) => {
    const codec = deps.codec ?? createCodec();
    const metrics = createIngestMetrics(deps.registry);
    const recent = createRecentIds(deps.recentIdCapacity ?? 100_000);
    const threads = deps.codec === undefined ? Math.max(0, Math.floor(deps.prepareThreads ?? 0)) : 0;
    const preparer: Preparer = threads > 0 ? threadPreparer(threads, app.log) : inlinePreparer(deps.codec);
    app.addHook('onClose', async () => preparer.close());
    const clock = deps.clock ?? (() => new Date());
    const newId = deps.newId ?? (() => uuidv7(clock().getTime()));
    const retryAfter = String(deps.retryAfterSeconds ?? 2);
    // Freezes this instance raised and has not lifted, so an immediate lift is
    // not refused while the projector has yet to fold the raise.
    const raisedHere = new Map<string, Set<string>>();

    const toRecord = (e: TrustfoldEvent): OutboundRecord => ({
      topic: topicOf(deps.topics, e),
      key: partitionKeyOf(e),
      value: codec.encodeEvent(e),
    });

    /**
     * What a produce needs to remember until Kafka answers: the records, the
     * ids and the per-kind counts — not the parsed events, so those die young
     * while the request waits for the ack (cheaper garbage collection).
     */
    type Outbound = { records: OutboundRecord[]; recent?: DedupeColumns; kinds: Map<string, number> };
    /** Events the server made itself (freezes): fresh ids, nothing for the duplicate cache. */
    const outboundOf = (events: readonly TrustfoldEvent[]): Outbound => {
      const out: Outbound = { records: [], kinds: new Map() };
      for (const e of events) {
        const kind = e.type === 'decision' ? 'decision' : e.kind;
        out.records.push(toRecord(e));
        out.kinds.set(kind, (out.kinds.get(kind) ?? 0) + 1);
      }
      return out;
    };

    /** Hands events to Kafka; true once acked, false after answering 503. */
    const produce = async (out: Outbound, reply: Parameters<typeof sendError>[0]): Promise<boolean> => {
      const started = process.hrtime.bigint();
      try {
        await deps.sink.send(out.records);
        metrics.produceSeconds.observe({ outcome: 'acked' }, Number(process.hrtime.bigint() - started) / 1e9);
        if (out.recent !== undefined) recent.addColumns(out.recent.keys, out.recent.digests, out.records.length);
        for (const [kind, n] of out.kinds) metrics.accepted.inc({ kind }, n);
        return true;
      } catch (e) {
        metrics.produceSeconds.observe({ outcome: 'failed' }, Number(process.hrtime.bigint() - started) / 1e9);
        metrics.rejected.inc({ reason: 'unavailable' }, out.records.length);
        metrics.requestsRefused.inc({ reason: 'unavailable' });
        const code = codeOf(e, 'kafka_unavailable');
        // The cause stays in the log: Kafka's text names brokers and addresses.
        reply.log.warn({ err: errorMessage(e) }, 'produce failed; answering 503');
        reply.header('retry-after', retryAfter);
        await sendError(reply, 503, code, `events not stored (Kafka unavailable), nothing of this request was accepted; retry after ${retryAfter} s`);
        return false;
      }
    };

    /**
     * Body → validated, stamped, encoded records (on a preparing thread when
     * there are any), then the duplicate check here, where `recent` lives.
     * The parsed JSON and zod's output never reach this thread's heap when a
     * thread prepared them.
     */
    const prepareEvents = async (body: string | Buffer, format: BodyFormat, caller: Caller): Promise<Result<{ out: Outbound; duplicates: number; rejected: Rejection[] }, BodyError>> => {
      const input = { body, format, limit: deps.limits.maxEventsPerRequest, caller, nowMs: clock().getTime(), bounds: deps.eventTime ?? DEFAULT_EVENT_TIME_BOUNDS };
      const prepared = await preparer.prepare(input);
      if (!prepared.ok) return prepared;
      const p = prepared.value;
      const d = dedupeByColumns(p.events, p, recent);
      for (const r of p.reasons) metrics.rejected.inc({ reason: r });
      for (const r of d.reasons) metrics.rejected.inc({ reason: r });
      const duplicates = d.duplicatesInRequest + d.duplicatesRecent;
      if (d.duplicatesInRequest > 0) metrics.duplicates.inc({ where: 'request' }, d.duplicatesInRequest);
      if (d.duplicatesRecent > 0) metrics.duplicates.inc({ where: 'recent' }, d.duplicatesRecent);
      const out: Outbound = { records: [], recent: { keys: d.keys, digests: d.digests }, kinds: new Map() };
      for (const e of d.kept) {
        out.records.push({ topic: e.stream === 'decisions' ? deps.topics.decisions : deps.topics.signals, key: e.key, value: e.value, hash: e.hash });
        out.kinds.set(e.kind, (out.kinds.get(e.kind) ?? 0) + 1);
      }
      const rejected = d.rejected.length === 0 ? p.rejected : [...p.rejected, ...d.rejected].sort((a, b) => a.index - b.index);
      return ok({ out, duplicates, rejected });
    };

    await app.register(async (events) => {
      // The raw body is kept so a malformed one can be answered with line/column; it is
      // decoded (UTF-8) where it is parsed, on a preparing thread when there is one.
      events.removeAllContentTypeParsers();
      events.addContentTypeParser(
        ['application/json', ...NDJSON_CONTENT_TYPES],
        { parseAs: 'buffer', bodyLimit: deps.limits.maxBodyBytes },
        (_req, body, done) => done(null, body),
      );

      events.post(
        '/v1/events',
        {
          bodyLimit: deps.limits.maxBodyBytes,
          // Authenticated before the body is read: no token, no parse.
          onRequest: requireAnyScope(EVENT_WRITE_SCOPES),
          // The body schema documents the contract; events are validated one by
          // one in the handler so that one bad event does not refuse the rest.
          validatorCompiler: () => (data) => ({ value: data }),
          schema: {
            summary: 'Ingest decision and signal events (JSON array or NDJSON)',
            description:
              'Answers 202 once every accepted event is acknowledged by Kafka (acks=all). Per-event problems are listed in `rejected` and do not affect the others. ' +
              `Each event needs the scope of its kind (${kindScopeTable()}); the token needs at least one of them to post at all. ` +
              'Actor fields (`emitted_by`, `set_by`, `raised_by`, `lifted_by`) are the token\'s `sub`: leave them out or send the sub; another value is rejected. ' +
              '`occurred_at` must be at most TRUSTFOLD_MAX_FUTURE_SKEW_MS (60 s) ahead and TRUSTFOLD_MAX_EVENT_AGE_MS (30 days) old. ' +
              'Re-sending an identical event is harmless (counted in `duplicates`); the same (tenant, event_id) with other content is rejected as a conflict. ' +
              '400: malformed body (line/column named); 401 before the body is read; 413: body or event count over the limit; 503 + Retry-After: Kafka unavailable, nothing accepted.',
            tags: ['ingest'],
            // Any item is accepted into the request: each is checked on its own, and one that is not a
            // valid event is listed in `rejected` (202) without refusing the rest — so the document
            // says "an event, or anything else" rather than calling such a request invalid.
            // NDJSON of one line is one JSON value, not an array: that is a body too.
            body: z
              .union([
                z.array(z.union([eventSchema, z.unknown().describe('anything else: refused on its own, listed in `rejected`')])),
                z.union([eventSchema, z.looseObject({})]).describe('one event object (NDJSON of one line), checked as one item'),
              ])
              .describe('decision and signal events as a JSON array, or NDJSON (one per line); each item is validated on its own'),
            response: { 202: ingestResponseSchema, 400: errorBodySchema, 413: errorBodySchema, 503: errorBodySchema },
          },
        },
        async (req, reply) => {
          const caller = callerOf(req);
          const badSub = subTooLong(caller);
          if (badSub) return sendError(reply, 400, 'bad_request', badSub[0]?.message ?? 'bad sub', badSub);
          const body = Buffer.isBuffer(req.body) || typeof req.body === 'string' ? req.body : '';
          const prepared = await prepareEvents(body, formatOf(req.headers['content-type']), caller);
          if (!prepared.ok) {
            const e = prepared.error;
            metrics.requestsRefused.inc({ reason: e.kind });
            if (e.kind === 'too_many_events') return sendError(reply, 413, 'payload_too_large', e.message);
            return sendError(reply, 400, 'bad_request', e.message, [e.kind === 'malformed' ? { path: `line ${e.line}, column ${e.column}`, message: e.reason } : { path: '(body)', message: e.message }]);
          }
          const { out, duplicates, rejected } = prepared.value;
          if (out.records.length > 0 && !(await produce(out, reply))) return reply;
          return reply.code(202).send({ accepted: out.records.length, duplicates, rejected });
        },
      );
    });

    app.post(
      '/v1/freezes',
      {
        onRequest: requireScope('freeze:write'),
        schema: {
          summary: 'Raise a change freeze (emitted as a change_freeze_raised signal)',
          description:
            'The tenant is `tenant_id` in the body or `?tenant=`; when both are given they must be the same (400). An operator token (tenant "*") must name one (400); ' +
            'a tenant token only its own (403). `expires_at` must be in the future (400).',
          tags: ['freezes'],
          body: raiseFreezeBodySchema,
          querystring: tenantQuery,
          response: { 201: freezeEventResponse, 400: errorBodySchema, 403: errorBodySchema, 503: errorBodySchema },
        },
      },
      async (req, reply) => {
        const caller = callerOf(req);
        const badSub = subTooLong(caller);
        if (badSub) return sendError(reply, 400, 'bad_request', badSub[0]?.message ?? 'bad sub', badSub);
        // The tenant as the other freeze routes take it (?tenant=), or tenant_id in the body; not two different ones.
        const inBody = req.body.tenant_id;
        const inQuery = req.query.tenant;
        if (inBody !== undefined && inQuery !== undefined && inBody !== inQuery) {
          const message = `tenant_id "${inBody}" and ?tenant="${inQuery}" differ`;
          return sendError(reply, 400, 'bad_request', message, [{ path: 'tenant_id', message }]);
        }
        const t = inBody === undefined && inQuery !== undefined ? tenantFor(caller, inQuery, 'tenant') : tenantFor(caller, inBody, 'tenant_id');
        if (!t.ok) return sendError(reply, t.status, t.code, t.message, t.errors);
        const now = clock();
        const { expires_at, ticket } = req.body;
        if (expires_at !== undefined && Date.parse(expires_at) <= now.getTime()) {
          return sendError(reply, 400, 'bad_request', 'expires_at is in the past', [{ path: 'expires_at', message: 'must be in the future' }]);
        }
        const freeze_id = req.body.freeze_id ?? `frz-${newId()}`;
        const event: SignalOf<'change_freeze_raised'> = {
          type: 'signal',
          kind: 'change_freeze_raised',
          event_id: newId(),
          tenant_id: t.tenant,
          occurred_at: now.toISOString(),
          emitted_by: caller.sub,
          freeze_id,
          scope: req.body.scope,
          reason: req.body.reason,
          raised_by: caller.sub,
          ...(ticket !== undefined ? { ticket } : {}),
          ...(expires_at !== undefined ? { expires_at } : {}),
        };
        if (!(await produce(outboundOf([event]), reply))) return reply;
        let set = raisedHere.get(t.tenant);
        if (!set) raisedHere.set(t.tenant, (set = new Set()));
        set.add(freeze_id);
        if (set.size > 10_000) set.delete(set.values().next().value ?? '');
        return reply.code(201).header('location', `/v1/freezes/${encodeURIComponent(freeze_id)}`).send({ freeze_id, event_id: event.event_id });
      },
    );

    app.delete(
      '/v1/freezes/:id',
      {
        onRequest: requireScope('freeze:write'),
        schema: {
          summary: 'Lift a change freeze (emitted as a change_freeze_lifted signal)',
          tags: ['freezes'],
          params: z.object({ id: raised.freeze_id }),
          querystring: tenantQuery.extend({ reason: raised.reason.optional() }),
          response: { 200: freezeEventResponse, 400: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 503: errorBodySchema },
        },
      },
      async (req, reply) => {
        const caller = callerOf(req);
        const badSub = subTooLong(caller);
        if (badSub) return sendError(reply, 400, 'bad_request', badSub[0]?.message ?? 'bad sub', badSub);
        const t = tenantFor(caller, req.query.tenant, 'tenant');
        if (!t.ok) return sendError(reply, t.status, t.code, t.message, t.errors);
        const freeze_id = req.params.id;
        const known =
          raisedHere.get(t.tenant)?.has(freeze_id) === true ||
          (await deps.activeFreezes(t.tenant)).some((f) => f.freeze_id === freeze_id);
        if (!known) return sendError(reply, 404, 'not_found', `no active freeze "${freeze_id}" in tenant "${t.tenant}"`);
        const event: SignalOf<'change_freeze_lifted'> = {
          type: 'signal',
          kind: 'change_freeze_lifted',
          event_id: newId(),
          tenant_id: t.tenant,
          occurred_at: clock().toISOString(),
          emitted_by: caller.sub,
          freeze_id,
          lifted_by: caller.sub,
          ...(req.query.reason !== undefined ? { reason: req.query.reason } : {}),
        };
        if (!(await produce(outboundOf([event]), reply))) return reply;
        raisedHere.get(t.tenant)?.delete(freeze_id);
        return reply.code(200).send({ freeze_id, event_id: event.event_id });
      },
    );

    app.get(
      '/v1/freezes',
      {
        onRequest: requireScope('freeze:read'),
        schema: {
          summary: "Active change freezes of the caller's tenant (from the projected state)",
          tags: ['freezes'],
          querystring: tenantQuery,
          response: { 200: z.object({ tenant_id: z.string(), freezes: z.array(activeFreezeResponse) }), 400: errorBodySchema, 403: errorBodySchema },
        },
      },
      async (req, reply) => {
        const t = tenantFor(callerOf(req), req.query.tenant, 'tenant');
        if (!t.ok) return sendError(reply, t.status, t.code, t.message, t.errors);
        const freezes = await deps.activeFreezes(t.tenant);
        return reply.code(200).send({ tenant_id: t.tenant, freezes });
      },
    );
  };
