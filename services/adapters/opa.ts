// OPA's decision-log upload endpoint. OPA (and products built on it) POST
// gzip-compressed JSON arrays of decision events to `<service url>/logs`
// (or the configured `resource`), keep the chunk on any non-2xx, and retry it
// with backoff. So this answers 2xx only once every decision of the chunk is
// acknowledged by Kafka (acks=all), and 503 when Kafka is not there: OPA's own
// retry then carries the data over the outage. Re-sent chunks map to the same
// event ids, so a retry after a lost 2xx is a duplicate, not a second decision.
// A decision whose time is outside the configured bounds (TRUSTFOLD_MAX_*)
// is not written: it is listed in `rejected` and counted, and the rest of the
// chunk is answered 200, because OPA would otherwise re-send the chunk forever.
//
// Register with `app.register(opaRoutes(deps))` (encapsulated: its raw-body
// parser does not leak into the other routes).
import { gunzip, inflate } from 'node:zlib';
import { promisify } from 'node:util';
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import { Counter } from 'prom-client';
import { z } from 'zod';
import { isOperator } from '../lib/auth.ts';
import type { FieldError } from '../../schemas/result.ts';
import { errorMessage, TrustfoldError, type ErrorCode } from '../lib/errors.ts';
import { DEFAULT_EVENT_TIME_BOUNDS, eventTimeError, type EventTimeBounds } from '../lib/event-time.ts';
import { callerOf, errorBodySchema, requireScope, sendError } from '../lib/http.ts';
import type { OpaAdapterConfig } from './config.ts';
import { mapOpaEvent, type Mapped } from './mapping.ts';
import { adapterMetrics } from './metrics.ts';
import type { DecisionWriter } from './writer.ts';

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);

export const OPA_LOGS_PATH = '/v1/ingest/opa/logs';

export type OpaRoutesDeps = {
  writer: DecisionWriter;
  opa: OpaAdapterConfig;
  registry: Registry;
  now?: () => Date;
  /** Seconds OPA is told to wait after a 503 (it applies its own backoff too). */
  retryAfterSeconds?: number;
  /** occurred_at bounds (config.eventTime). Default 60 s ahead, 30 days old. */
  eventTime?: EventTimeBounds;
};

const fieldErrorSchema = z.object({ path: z.string(), message: z.string() });
export const opaUploadResponseSchema = z.object({
  accepted: z.number().int().min(0).describe('decisions acknowledged by Kafka (acks=all)'),
  partial: z.number().int().min(0).describe('of those, decisions some of whose fields the mapping could not find (written with what was there)'),
  rejected: z
    .array(z.object({ index: z.number().int().min(0), event_id: z.string(), errors: z.array(fieldErrorSchema) }))
    .describe('decisions not written, with why: a time outside the event-time bounds (TRUSTFOLD_MAX_*); the rest of the upload is still answered 200, or OPA would re-send it forever'),
});
export type OpaUploadResponse = { accepted: number; partial: number; rejected: { index: number; event_id: string; errors: FieldError[] }[] };

/** What the document says of the upload: the JSON before Content-Encoding, and the header naming that encoding. */
const uploadDoc = (maxEvents: number) => ({
  body: z
    .array(z.looseObject({}).describe('an OPA decision-log event (decision_id, path, input, result, timestamp, labels, …); fields the mapping does not find make the decision partial'))
    .max(maxEvents)
    .describe(`an array of at most ${maxEvents} OPA decision-log events (TRUSTFOLD_OPA_MAX_EVENTS), JSON, compressed as Content-Encoding says`),
  headers: z.object({
    'content-encoding': z
      .enum(['gzip', 'x-gzip', 'deflate', 'identity'])
      .optional()
      .describe('how the body bytes are encoded: OPA sends gzip; absent means identity (plain JSON). The body must be in this encoding (a gzip header over plain JSON is a 400)'),
  }),
});


type Decoded = { ok: true; events: unknown[] } | { ok: false; status: 400 | 413 | 415; code: ErrorCode; message: string; path: string };

const tooLarge = (e: unknown): boolean =>
  e instanceof RangeError || (typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE');

/** gzip (what OPA sends), deflate, or identity → a JSON array, within the decompressed limit. */
export const decodeUpload = async (body: Buffer, contentEncoding: string | undefined, cfg: Pick<OpaAdapterConfig, 'maxDecompressedBytes' | 'maxEvents'>): Promise<Decoded> => {
  const encoding = (contentEncoding ?? 'identity').trim().toLowerCase();
  let raw: Buffer;
  try {
    if (encoding === 'gzip' || encoding === 'x-gzip') raw = await gunzipAsync(body, { maxOutputLength: cfg.maxDecompressedBytes });
    else if (encoding === 'deflate') raw = await inflateAsync(body, { maxOutputLength: cfg.maxDecompressedBytes });
    else if (encoding === 'identity') raw = body;
    else return { ok: false, status: 415, code: 'unsupported_media_type', message: `unsupported Content-Encoding ${encoding}; OPA sends gzip`, path: 'content-encoding' };
  } catch (e) {
    if (tooLarge(e)) return { ok: false, status: 413, code: 'payload_too_large', message: `decompressed body larger than ${cfg.maxDecompressedBytes} bytes`, path: '(body)' };
    return { ok: false, status: 400, code: 'bad_request', message: `malformed ${encoding} body: ${errorMessage(e)}`, path: '(body)' };
  }
  if (raw.length > cfg.maxDecompressedBytes) {
    return { ok: false, status: 413, code: 'payload_too_large', message: `body larger than ${cfg.maxDecompressedBytes} bytes`, path: '(body)' };
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    return { ok: false, status: 400, code: 'bad_request', message: `malformed JSON: ${errorMessage(e)}`, path: '(body)' };
  }
  if (!Array.isArray(json)) return { ok: false, status: 400, code: 'bad_request', message: 'expected a JSON array of OPA decision-log events', path: '(body)' };
  if (json.length > cfg.maxEvents) {
    return { ok: false, status: 413, code: 'payload_too_large', message: `${json.length} events in one upload; the limit is ${cfg.maxEvents}`, path: '(body)' };
  }
  const bad = json.findIndex((x) => x === null || typeof x !== 'object' || Array.isArray(x));
  if (bad >= 0) return { ok: false, status: 400, code: 'bad_request', message: `element [${bad}] is not a decision-log event object`, path: `[${bad}]` };
  return { ok: true, events: json };
};

export const opaRoutes = (deps: OpaRoutesDeps): FastifyPluginAsync => async (app) => {
  const metrics = adapterMetrics(deps.registry);
  const uploads =
    (deps.registry.getSingleMetric('trustfold_opa_uploads_total') as Counter<'status'> | undefined) ??
    new Counter({ name: 'trustfold_opa_uploads_total', help: 'OPA decision-log uploads, by response status', labelNames: ['status'] as const, registers: [deps.registry] });
  const now = deps.now ?? (() => new Date());

  // OPA labels the body application/json but gzips it; the bytes are read raw
  // here and decoded in the handler, where the limits and errors are ours.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.opa.maxUploadBytes }, (_req, body, done) => done(null, body));
  app.addHook('onResponse', async (_req, reply) => {
    uploads.inc({ status: String(reply.statusCode) });
  });

  app.post(
    OPA_LOGS_PATH,
    {
      // Before the body is read: an unauthenticated upload costs no gunzip.
      onRequest: requireScope('events:write'),
      bodyLimit: deps.opa.maxUploadBytes,
      // The body is raw bytes (gzip on the wire), decoded and checked in the handler with
      // the statuses the document lists (an unknown Content-Encoding is a 415 there, not a
      // schema 400): the body and header schemas document, they do not validate.
      validatorCompiler: () => (data: unknown) => ({ value: data }),
      schema: {
        summary: 'OPA decision-log upload (gzip JSON array); 200 only once durable in Kafka',
        description:
          'What OPA\'s decision-log plugin sends to `<service>/logs`: a JSON array of decision events, gzip-compressed ' +
          '(`Content-Encoding: gzip`; `deflate` and plain JSON are read too). The body must be encoded as Content-Encoding ' +
          'says, which OpenAPI cannot state for a JSON body: a header saying gzip over bytes that are not gzip is a 400. ' +
          `At most TRUSTFOLD_OPA_MAX_UPLOAD_BYTES (${deps.opa.maxUploadBytes}) on the wire and TRUSTFOLD_OPA_MAX_DECOMPRESSED_BYTES ` +
          `(${deps.opa.maxDecompressedBytes}) decompressed (413). Answers 200 once every written decision is acknowledged by Kafka; ` +
          'decisions outside the event-time bounds are listed in `rejected` and the rest still written. 503 + Retry-After: Kafka unavailable (OPA keeps the chunk and retries).',
        tags: ['adapters'],
        ...uploadDoc(deps.opa.maxEvents),
        consumes: ['application/json'],
        response: {
          200: opaUploadResponseSchema,
          400: errorBodySchema.describe('bad_request: an empty body, bytes that are not in the Content-Encoding named, not JSON, not an array, or an element that is not an object'),
          413: errorBodySchema.describe('payload_too_large: over the upload or decompressed byte limit, or more than TRUSTFOLD_OPA_MAX_EVENTS events'),
          415: errorBodySchema.describe('unsupported_media_type: a Content-Encoding other than gzip, x-gzip, deflate or identity'),
          503: errorBodySchema.describe('kafka_unavailable: not durable, retry (Retry-After)'),
        },
      },
    },
    async (req, reply) => {
      const caller = callerOf(req);
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      if (body.length === 0) {
        const message = 'empty body; expected a gzip JSON array of decision-log events';
        return sendError(reply, 400, 'bad_request', message, [{ path: '(body)', message }]);
      }
      const header = req.headers['content-encoding'];
      const decoded = await decodeUpload(body, Array.isArray(header) ? header[0] : header, deps.opa);
      if (!decoded.ok) return sendError(reply, decoded.status, decoded.code, decoded.message, [{ path: decoded.path, message: decoded.message }]);

      const at = now();
      const receivedAt = at.toISOString();
      const bounds = deps.eventTime ?? DEFAULT_EVENT_TIME_BOUNDS;
      const mapped: Mapped[] = [];
      const rejected: OpaUploadResponse['rejected'] = [];
      for (const [i, ev] of decoded.events.entries()) {
        const r = mapOpaEvent(ev as Record<string, unknown>, {
          convention: deps.opa.convention,
          callerTenant: isOperator(caller) ? '*' : caller.tenant,
          defaultTenant: deps.opa.defaultTenant,
          emittedBy: caller.sub,
          receivedAt,
        });
        // Built to satisfy the contract; reaching this is a bug here, and a 500 keeps OPA holding the chunk.
        if (!r.ok) {
          req.log.error({ index: i, error: r.error }, 'OPA event could not be mapped');
          return sendError(reply, 500, 'internal', `event [${i}] could not be mapped: ${r.error}`);
        }
        const late = eventTimeError(r.value.event.occurred_at, at.getTime(), bounds);
        if (late !== undefined) rejected.push({ index: i, event_id: r.value.event.event_id, errors: [late] });
        else mapped.push(r.value);
      }
      if (rejected.length > 0) {
        metrics.entries.inc({ engine: 'opa', result: 'out_of_time_bounds' }, rejected.length);
        req.log.warn({ rejected: rejected.length, first: rejected[0]?.errors[0]?.message }, 'OPA decisions outside the event-time bounds not written');
      }
      try {
        await deps.writer.write(mapped.map((m) => m.event));
      } catch (e) {
        const retriable = e instanceof TrustfoldError ? e.retriable : true;
        // Kafka's text (brokers, addresses) stays in the log.
        req.log.warn({ err: errorMessage(e) }, 'OPA upload not durable; OPA will retry');
        if (retriable) reply.header('retry-after', String(deps.retryAfterSeconds ?? 1));
        return sendError(reply, retriable ? 503 : 500, e instanceof TrustfoldError ? e.code : 'kafka_unavailable', 'not durable (Kafka unavailable), retry');
      }
      metrics.entries.inc({ engine: 'opa', result: 'mapped' }, mapped.length);
      metrics.observe('opa', mapped);
      const response: OpaUploadResponse = { accepted: mapped.length, partial: mapped.filter((m) => m.missing.length > 0).length, rejected };
      return reply.code(200).send(response);
    },
  );
};
