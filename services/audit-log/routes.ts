// The tamper-evident log over HTTP, a fastify plugin: a record's inclusion
// proof with its signed checkpoint, checkpoints, consistency proofs, the
// checkpoint key at a well-known URL, and verify for operators.
//
// Tenancy: a record's proof is found with the caller's tenant as a condition
// (another tenant's id is a 404, as for the record itself). A proof's sibling
// hashes are SHA-256 of other subtrees: of other records' full canonical
// bytes, random event ids included, so they name nothing. Checkpoints and
// consistency proofs carry sizes and roots only; any audit:read caller may
// read them (they are published on a topic for anyone to keep).
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { LIMITS } from '../../schemas/events.ts';
import { isOperator, type Caller } from '../lib/auth.ts';
import { callerOf, requireScope, sendError } from '../lib/http.ts';
import type { VerifyReport } from './verify.ts';
import { createEvidence, recordProofSchema, signedCheckpointSchema, toSignedCheckpoint } from './evidence.ts';
import type { LeafKind } from '../../schemas/audit-log/leaf.ts';
import { createProver } from './proofs.ts';
import type { RecordReader } from './record-reader.ts';
import { trustRef } from '../../schemas/audit-log/records.ts';
import type { AuditLogStore } from './store.ts';

export const AUDIT_KEY_PATH = '/.well-known/trustfold-audit-key';

export type AuditLogRoutesDeps = {
  /** With `warm` (the ClickHouse store), the tiles every proof reads are loaded when the server is ready, not on a first request. */
  store: Pick<AuditLogStore, 'findLeaves' | 'latestCheckpoints' | 'checkpointAt' | 'nodes' | 'nodeFrom'> & Partial<Pick<AuditLogStore, 'warm'>>;
  reader: Pick<RecordReader, 'recordAt'>;
  verify: (o: { log?: string | undefined; tenant?: string | undefined }) => Promise<VerifyReport>;
  /** Verifier keys of the checkpoint signer(s), `<name>+<id>+<key>`. */
  verifierKeys: readonly string[];
};

const b64 = (h: Uint8Array): string => Buffer.from(h).toString('base64');
const id = z.string().min(1).max(LIMITS.id);
const logId = z.string().regex(/^.+\/\d+$/, 'a log id: <topic>/<partition>').max(LIMITS.text);
const size = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const errorBody = z.object({ error: z.object({ code: z.string(), message: z.string(), errors: z.array(z.object({ path: z.string(), message: z.string() })).optional() }) });
const refusals = { 400: errorBody.describe('invalid parameters, each named'), 401: errorBody.describe('no valid token'), 403: errorBody.describe('scope audit:read missing, or another tenant named') };
const findingSchema = z.object({ kind: z.string(), log: z.string(), leaf_index: z.number().optional(), ref: z.string().optional(), tenant: z.string().optional(), offset: z.string().optional(), message: z.string() });
const noteSchema = z.object({ kind: z.literal('conflict'), log: z.string(), leaf_index: z.number(), ref: z.string(), tenant: z.string(), offset: z.string(), first_offset: z.string(), message: z.string() });
const verifyReportSchema = z.object({
  ok: z.boolean(),
  logs: z.array(
    z.object({ log: z.string(), checkpoint_size: z.number(), leaves: z.number(), records: z.number(), verified: z.number(), duplicates: z.number(), pending: z.number(), conflicts: z.number(), findings: z.array(findingSchema), notes: z.array(noteSchema) }),
  ),
  findings: z.array(findingSchema),
  notes: z.array(noteSchema).describe('refused conflicting copies found as leaves of their own: reported, not failures'),
});

/** The tenant a request may read: its own, or for an operator the one named (undefined = all). */
const tenantOf = (caller: Caller, requested: string | undefined): { ok: true; tenant: string | undefined } | { ok: false; message: string } => {
  if (isOperator(caller)) return { ok: true, tenant: requested };
  if (requested !== undefined && requested !== caller.tenant) return { ok: false, message: `tenant: a token of tenant ${caller.tenant} cannot read tenant ${requested}` };
  return { ok: true, tenant: caller.tenant };
};
const forbidden = (reply: FastifyReply, message: string) => sendError(reply, 403, 'forbidden', message, [{ path: 'tenant', message }]);

export const auditLogRoutes =
  (deps: AuditLogRoutesDeps): FastifyPluginAsync =>
  async (fastify) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    const warm = deps.store.warm;
    if (warm !== undefined) {
      fastify.addHook('onReady', async () => {
        // A store that cannot be read yet is warmed by its first requests instead; the server still starts.
        const t0 = performance.now();
        await warm().then(
          (w) => fastify.log.info({ logs: w.logs, tiles: w.tiles, ms: Math.round(performance.now() - t0) }, 'audit log: proof tiles loaded'),
          (e: unknown) => fastify.log.warn({ err: e }, 'audit log: loading proof tiles failed'),
        );
      });
    }
    const prover = createProver(deps.store);
    const evidence = createEvidence({ store: deps.store, prover, reader: deps.reader });
    const guard = { onRequest: requireScope('audit:read') };
    const proofQuery = z.strictObject({ tenant: id.optional(), size: size.optional().describe('prove against the checkpoint of this size (default: the latest)') });
    const proofResponses = {
      200: recordProofSchema,
      ...refusals,
      404: errorBody.describe('no such record of this tenant, or no checkpoint of that size'),
      409: errorBody.describe('logged after the checkpoint asked for (or before any): ask again after the next checkpoint'),
    };

    const prove = async (reply: FastifyReply, caller: Caller, q: { tenant?: string | undefined; size?: number | undefined }, kind: LeafKind, ref: string) => {
      const scope = tenantOf(caller, q.tenant);
      if (!scope.ok) return forbidden(reply, scope.message);
      const r = await evidence.proofOf(kind, ref, scope.tenant, q.size);
      if (!r.ok) return sendError(reply, r.error.status, r.error.code, r.error.message);
      return reply.send(r.proof);
    };
    const summary = (what: string) => `Inclusion proof of ${what} in its log, against the latest (or ?size=) signed checkpoint`;

    app.get(
      '/v1/audit/decisions/:event_id/proof',
      { ...guard, schema: { params: z.strictObject({ event_id: z.uuid() }), querystring: proofQuery, tags: ['audit-log'], summary: summary('a decision'), response: proofResponses } },
      async (req, reply) => prove(reply, callerOf(req), req.query, 'decision', req.params.event_id.toLowerCase()),
    );
    app.get(
      '/v1/audit/signals/:event_id/proof',
      { ...guard, schema: { params: z.strictObject({ event_id: z.uuid() }), querystring: proofQuery, tags: ['audit-log'], summary: summary('a signal'), response: proofResponses } },
      async (req, reply) => prove(reply, callerOf(req), req.query, 'signal', req.params.event_id.toLowerCase()),
    );
    app.get(
      '/v1/audit/sessions/:id/transitions/:version/proof',
      {
        ...guard,
        schema: { params: z.strictObject({ id, version: z.coerce.number().int().min(0) }), querystring: proofQuery, tags: ['audit-log'], summary: summary("a session's trust transition"), response: proofResponses },
      },
      async (req, reply) => prove(reply, callerOf(req), req.query, 'trust', trustRef(req.params.id, req.params.version)),
    );

    app.get(
      '/v1/audit/checkpoints',
      {
        ...guard,
        schema: {
          querystring: z.strictObject({ log: logId.optional(), size: size.optional() }).refine((q) => q.size === undefined || q.log !== undefined, { message: 'size needs log', path: ['size'] }),
          tags: ['audit-log'],
          summary: 'The latest signed checkpoint of every log (or of ?log=), or the one of ?log=&size=',
          description: '`size` goes with `log`: `size` alone is a 400 naming size.',
          response: { 200: z.object({ checkpoints: z.array(signedCheckpointSchema) }), ...refusals, 404: errorBody.describe('no checkpoint of that log and size') },
        },
      },
      async (req, reply) => {
        const { log, size: at } = req.query;
        if (log !== undefined && at !== undefined) {
          const c = await deps.store.checkpointAt(log, at);
          if (c === undefined) return sendError(reply, 404, 'not_found', `log ${log} has no checkpoint of size ${at}`);
          return { checkpoints: [toSignedCheckpoint(c)] };
        }
        return { checkpoints: (await deps.store.latestCheckpoints(log)).map(toSignedCheckpoint) };
      },
    );

    app.get(
      '/v1/audit/consistency',
      {
        ...guard,
        schema: {
          querystring: z.strictObject({ log: logId, from: size, to: size }).refine((q) => q.from <= q.to, { message: 'from must not exceed to', path: ['from'] }),
          tags: ['audit-log'],
          summary: 'Consistency proof (RFC 9162) that the log of size from is a prefix of the log of size to',
          description: '`from` must not exceed `to` (400 naming from); 404 when no signed checkpoint of the log reaches `to`.',
          response: {
            200: z.object({ log_id: z.string(), from: z.number(), to: z.number(), proof: z.array(z.string()), from_checkpoint: signedCheckpointSchema.nullable(), to_checkpoint: signedCheckpointSchema.nullable() }),
            ...refusals,
            404: errorBody.describe('no signed checkpoint of this log reaches size to'),
          },
        },
      },
      async (req, reply) => {
        const { log, from, to } = req.query;
        const latest = (await deps.store.latestCheckpoints(log))[0];
        if (latest === undefined || latest.size < to) return sendError(reply, 404, 'not_found', `no signed checkpoint of log ${log} reaches size ${to}${latest !== undefined ? ` (latest: ${latest.size})` : ''}`);
        const [a, b] = await Promise.all([deps.store.checkpointAt(log, from), deps.store.checkpointAt(log, to)]);
        const proof = await prover.consistency(log, from, to);
        return { log_id: log, from, to, proof: proof.map(b64), from_checkpoint: a !== undefined ? toSignedCheckpoint(a) : null, to_checkpoint: b !== undefined ? toSignedCheckpoint(b) : null };
      },
    );

    app.get(
      AUDIT_KEY_PATH,
      {
        schema: {
          tags: ['audit-log'],
          summary: 'The checkpoint signer key(s), one signed-note verifier key (<name>+<id>+<key>) per line; no token needed',
          security: [],
          produces: ['text/plain'],
          response: { 200: z.string().describe('text/plain') },
        },
      },
      async (_req, reply) => reply.type('text/plain; charset=utf-8').header('cache-control', 'public, max-age=300').send(`${deps.verifierKeys.join('\n')}\n`),
    );

    app.post(
      '/v1/audit/verify',
      {
        ...guard,
        schema: {
          body: z.strictObject({ log: logId.optional(), tenant: id.optional() }).default({}),
          tags: ['audit-log'],
          summary: 'Operators: verify the stored records against the signed checkpoints (every log, or one; every tenant, or one)',
          response: { 200: verifyReportSchema, ...refusals, 403: errorBody.describe('scope audit:read missing, or not an operator token (tenant *)') },
        },
      },
      async (req, reply) => {
        const caller = callerOf(req);
        if (!isOperator(caller)) return sendError(reply, 403, 'forbidden', 'audit verify reads every tenant\'s records: it needs an operator token (tenant *)');
        return deps.verify({ log: req.body.log, tenant: req.body.tenant });
      },
    );
  };
