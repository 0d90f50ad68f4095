// The transmitter's HTTP surface (SSF 1.0 §7 discovery, §8 management; RFC
// 8936 poll). Management and poll need the `ssf:manage` scope; a stream is
// its tenant's: another tenant's stream id answers 404, as if it did not
// exist. Discovery and the JWKS are public, as receivers fetch them first.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { JWK } from 'jose';
import { z } from 'zod';
import { isOperator, OPERATOR_TENANT, type Caller } from '../lib/auth.ts';
import { callerOf, requireScope, sendError } from '../lib/http.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { streamUpdatedPayload, STREAM_UPDATED, VERIFICATION } from './delivery.ts';
import { endpointProblem, type EndpointPolicy } from './endpoint.ts';
import type { StreamStore } from './store.ts';
import {
  addSubject,
  createStream,
  POLL,
  publicView,
  PUSH,
  receiverFieldsSchema,
  removeSubject,
  replaceStream,
  STATUSES,
  subjectSchema,
  updateStream,
  withStatus,
  type StreamDefaults,
  type StreamRecord,
} from './streams.ts';
import type { Transmitter } from './transmitter.ts';

export const SSF_PATHS = {
  configuration: '/v1/ssf/streams',
  status: '/v1/ssf/streams/status',
  addSubject: '/v1/ssf/streams/subjects/add',
  removeSubject: '/v1/ssf/streams/subjects/remove',
  verification: '/v1/ssf/streams/verify',
  jwks: '/v1/ssf/jwks',
  poll: '/v1/ssf/poll',
} as const;

export type SsfRoutesDeps = {
  issuer: string;
  publicJwk: JWK;
  store: StreamStore;
  transmitter: Transmitter;
  minVerificationIntervalS: number;
  inactivityTimeoutS: number;
  /** Which push endpoint_url values are accepted (endpoint.ts). */
  endpointPolicy: EndpointPolicy;
  /** Longest a poll waits with returnImmediately false (ms). Default 15 s. */
  longPollMs?: number;
  clock?: () => Date;
};

const tenantQuery = z.object({ tenant: z.string().min(1).max(256).optional() });
const streamIdQuery = tenantQuery.extend({ stream_id: z.string().min(1).max(256) });
const pollBody = z.object({
  maxEvents: z.number().int().min(0).max(1000).optional(),
  returnImmediately: z.boolean().optional(),
  ack: z.array(z.string().min(1).max(256)).max(1000).optional(),
  setErrs: z.record(z.string().max(256), z.object({ err: z.string().max(256), description: z.string().max(4096).optional() })).optional(),
});

type TenantOf = { ok: true; tenant: string } | { ok: false; message: string };
const tenantOf = (caller: Caller, requested: string | undefined): TenantOf => {
  if (isOperator(caller)) {
    return requested === undefined || requested === OPERATOR_TENANT ? { ok: false, message: 'an operator token must name the tenant in ?tenant=' } : { ok: true, tenant: requested };
  }
  return requested === undefined || requested === caller.tenant ? { ok: true, tenant: caller.tenant } : { ok: false, message: `the token may act on tenant "${caller.tenant}" only` };
};

export const ssfRoutes =
  (deps: SsfRoutesDeps): FastifyPluginAsyncZod =>
  async (app) => {
    const clock = deps.clock ?? (() => new Date());
    const defaults: StreamDefaults = {
      issuer: deps.issuer,
      pollUrl: (id) => `${deps.issuer}${SSF_PATHS.poll}/${encodeURIComponent(id)}`,
      minVerificationIntervalS: deps.minVerificationIntervalS,
      inactivityTimeoutS: deps.inactivityTimeoutS,
    };
    const lastVerification = new Map<string, number>();
    // Long polls answer at once when the server closes, so closing does not wait for them.
    const closing = new AbortController();
    app.addHook('preClose', async () => closing.abort());
    const manage = { onRequest: requireScope('ssf:manage') };

    /** The caller's stream, or undefined after answering 400/404. */
    type Reply = Parameters<typeof sendError>[0];
    const owned = async (caller: Caller, tenant: string | undefined, streamId: string, reply: Reply): Promise<StreamRecord | undefined> => {
      const t = tenantOf(caller, tenant);
      if (!t.ok) {
        await sendError(reply, 403, 'forbidden', t.message);
        return undefined;
      }
      const s = deps.store.get(streamId);
      if (s === undefined || s.tenant_id !== t.tenant) {
        await sendError(reply, 404, 'not_found', `no stream "${streamId}"`);
        return undefined;
      }
      // Any management call naming the stream, and every poll, is the receiver's activity (SSF 1.0 §8.1.1).
      deps.transmitter.touch(s.stream_id);
      return s;
    };
    /** Answers 400 naming delivery.endpoint_url when a push endpoint is not acceptable. */
    const endpointRefused = async (body: { delivery?: { method: string; endpoint_url?: string | undefined } | undefined }, reply: Reply): Promise<boolean> => {
      const d = body.delivery;
      if (d === undefined || d.method !== PUSH || d.endpoint_url === undefined) return false;
      const problem = await endpointProblem(d.endpoint_url, deps.endpointPolicy);
      if (problem === undefined) return false;
      await sendError(reply, 400, 'bad_request', `delivery.endpoint_url ${problem}`, [{ path: 'delivery.endpoint_url', message: problem }]);
      return true;
    };
    const save = async (s: StreamRecord): Promise<void> => {
      await deps.store.put(s);
    };

    app.get('/.well-known/ssf-configuration', { schema: { summary: 'SSF transmitter configuration metadata (SSF 1.0 §7.1)', tags: ['ssf'] } }, async () => ({
      spec_version: '1_0',
      issuer: deps.issuer,
      jwks_uri: `${deps.issuer}${SSF_PATHS.jwks}`,
      delivery_methods_supported: [PUSH, POLL],
      configuration_endpoint: `${deps.issuer}${SSF_PATHS.configuration}`,
      status_endpoint: `${deps.issuer}${SSF_PATHS.status}`,
      add_subject_endpoint: `${deps.issuer}${SSF_PATHS.addSubject}`,
      remove_subject_endpoint: `${deps.issuer}${SSF_PATHS.removeSubject}`,
      verification_endpoint: `${deps.issuer}${SSF_PATHS.verification}`,
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6750' }],
      default_subjects: 'ALL',
    }));

    app.get(SSF_PATHS.jwks, { schema: { summary: 'The keys SETs are signed with', tags: ['ssf'] } }, async () => ({ keys: [deps.publicJwk] }));

    app.post(SSF_PATHS.configuration, { ...manage, schema: { summary: 'Create a stream (SSF 1.0 §8.1.1.1)', tags: ['ssf'], body: receiverFieldsSchema, querystring: tenantQuery } }, async (req, reply) => {
      const caller = callerOf(req);
      const t = tenantOf(caller, req.query.tenant);
      if (!t.ok) return sendError(reply, 403, 'forbidden', t.message);
      if (await endpointRefused(req.body, reply)) return reply;
      const now = clock();
      const s = createStream(req.body, { streamId: uuidv7(now.getTime()), tenant: t.tenant, defaultAud: caller.sub, now: now.toISOString() }, defaults);
      await deps.transmitter.open(s);
      await save(s);
      return reply.code(201).send(publicView(s, deps.issuer));
    });

    app.get(SSF_PATHS.configuration, { ...manage, schema: { summary: 'Read one stream, or all of the tenant (SSF 1.0 §8.1.1.2)', tags: ['ssf'], querystring: tenantQuery.extend({ stream_id: z.string().max(256).optional() }) } }, async (req, reply) => {
      const caller = callerOf(req);
      if (req.query.stream_id !== undefined) {
        const s = await owned(caller, req.query.tenant, req.query.stream_id, reply);
        return s === undefined ? reply : reply.send(publicView(s, deps.issuer));
      }
      const t = tenantOf(caller, req.query.tenant);
      if (!t.ok) return sendError(reply, 403, 'forbidden', t.message);
      return reply.send(deps.store.all().filter((s) => s.tenant_id === t.tenant).map((s) => publicView(s, deps.issuer)));
    });

    for (const [method, op, summary] of [
      ['PATCH', updateStream, 'Update a stream (SSF 1.0 §8.1.1.3)'],
      ['PUT', replaceStream, 'Replace a stream (SSF 1.0 §8.1.1.4)'],
    ] as const) {
      app.route({
        method,
        url: SSF_PATHS.configuration,
        ...manage,
        schema: { summary, tags: ['ssf'], body: receiverFieldsSchema.extend({ stream_id: z.string().min(1).max(256) }), querystring: tenantQuery },
        handler: async (req, reply) => {
          const s = await owned(callerOf(req), req.query.tenant, req.body.stream_id, reply);
          if (s === undefined) return reply;
          if (await endpointRefused(req.body, reply)) return reply;
          const next = op(s, req.body, clock().toISOString(), defaults);
          await save(next);
          return reply.send(publicView(next, deps.issuer));
        },
      });
    }

    app.delete(SSF_PATHS.configuration, { ...manage, schema: { summary: 'Delete a stream (SSF 1.0 §8.1.1.5)', tags: ['ssf'], querystring: streamIdQuery } }, async (req, reply) => {
      const s = await owned(callerOf(req), req.query.tenant, req.query.stream_id, reply);
      if (s === undefined) return reply;
      await deps.store.delete(s.stream_id);
      return reply.code(204).send();
    });

    app.get(SSF_PATHS.status, { ...manage, schema: { summary: 'Read stream status (SSF 1.0 §8.1.2.1)', tags: ['ssf'], querystring: streamIdQuery } }, async (req, reply) => {
      const s = await owned(callerOf(req), req.query.tenant, req.query.stream_id, reply);
      if (s === undefined) return reply;
      return reply.send({ stream_id: s.stream_id, status: s.status, ...(s.reason !== undefined ? { reason: s.reason } : {}) });
    });

    app.post(
      SSF_PATHS.status,
      { ...manage, schema: { summary: 'Update stream status (SSF 1.0 §8.1.2.2); sends a stream-updated event', tags: ['ssf'], querystring: tenantQuery, body: z.object({ stream_id: z.string().min(1).max(256), status: z.enum(STATUSES), reason: z.string().max(4096).optional() }) } },
      async (req, reply) => {
        const s = await owned(callerOf(req), req.query.tenant, req.body.stream_id, reply);
        if (s === undefined) return reply;
        const next = withStatus(s, req.body.status, req.body.reason, clock().toISOString());
        // Queued before the change takes effect, so a receiver pausing its stream still hears it was paused.
        await deps.transmitter.delivery(s.stream_id)?.enqueueControl(STREAM_UPDATED, streamUpdatedPayload(next));
        await save(next);
        return reply.send({ stream_id: next.stream_id, status: next.status, ...(next.reason !== undefined ? { reason: next.reason } : {}) });
      },
    );

    const subjectBody = z.object({ stream_id: z.string().min(1).max(256), subject: subjectSchema, verified: z.boolean().optional() });
    app.post(SSF_PATHS.addSubject, { ...manage, schema: { summary: 'Add a subject (SSF 1.0 §8.1.3.2)', tags: ['ssf'], querystring: tenantQuery, body: subjectBody } }, async (req, reply) => {
      const s = await owned(callerOf(req), req.query.tenant, req.body.stream_id, reply);
      if (s === undefined) return reply;
      await save(addSubject(s, req.body.subject, clock().toISOString()));
      return reply.code(200).send();
    });
    app.post(SSF_PATHS.removeSubject, { ...manage, schema: { summary: 'Remove a subject (SSF 1.0 §8.1.3.3)', tags: ['ssf'], querystring: tenantQuery, body: subjectBody } }, async (req, reply) => {
      const s = await owned(callerOf(req), req.query.tenant, req.body.stream_id, reply);
      if (s === undefined) return reply;
      await save(removeSubject(s, req.body.subject, clock().toISOString()));
      return reply.code(204).send();
    });

    app.post(
      SSF_PATHS.verification,
      { ...manage, schema: { summary: 'Request a verification event (SSF 1.0 §8.1.4.2); 429 within min_verification_interval', tags: ['ssf'], querystring: tenantQuery, body: z.object({ stream_id: z.string().min(1).max(256), state: z.string().max(4096).optional() }) } },
      async (req, reply) => {
        const s = await owned(callerOf(req), req.query.tenant, req.body.stream_id, reply);
        if (s === undefined) return reply;
        const now = clock().getTime();
        const last = lastVerification.get(s.stream_id);
        const waitS = last === undefined ? 0 : Math.ceil((last + s.min_verification_interval * 1000 - now) / 1000);
        if (waitS > 0) {
          reply.header('retry-after', String(waitS));
          return sendError(reply, 429, 'too_many_requests', `one verification per ${s.min_verification_interval} s (min_verification_interval); retry after ${waitS} s`);
        }
        lastVerification.set(s.stream_id, now);
        await deps.transmitter.delivery(s.stream_id)?.enqueueControl(VERIFICATION, req.body.state !== undefined ? { state: req.body.state } : {});
        return reply.code(204).send();
      },
    );

    app.post(
      `${SSF_PATHS.poll}/:stream_id`,
      { ...manage, schema: { summary: 'Poll for SETs, acknowledge them (RFC 8936)', tags: ['ssf'], params: z.object({ stream_id: z.string().min(1).max(256) }), querystring: tenantQuery, body: pollBody } },
      async (req, reply) => {
        const s = await owned(callerOf(req), req.query.tenant, req.params.stream_id, reply);
        if (s === undefined) return reply;
        const d = deps.transmitter.delivery(s.stream_id);
        if (s.delivery.method !== POLL || d === undefined) return sendError(reply, 400, 'bad_request', 'this stream is not delivered by poll');
        // ... and when the poller hangs up: nobody is left to hand SETs to (they stay in the outbox).
        const gone = new AbortController();
        reply.raw.once('close', () => gone.abort());
        return reply.send(await d.poll(req.body, deps.longPollMs ?? 15_000, AbortSignal.any([closing.signal, gone.signal])));
      },
    );
  };
