// The forensics API as a fastify plugin. Every route is behind
// requireScope('audit:read') (onRequest: before anything is parsed); the tenant comes from the caller's token and is
// a condition of every query (operators, tenant '*', may name one).
import { Readable } from 'node:stream';
import type { ClickHouseClient } from '@clickhouse/client';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { EFFECTS, LIMITS, timestamp, windowInOrder } from '../../schemas/events.ts';
import { err, ok, type Result } from '../../schemas/result.ts';
import { isOperator, type Caller } from '../lib/auth.ts';
import { callerOf, requireScope, sendError } from '../lib/http.ts';
import { CURSOR_KEYS, decodeKey, encodeCursor, queryHash } from './cursor.ts';
import { explainDecision } from './explain.ts';
import { pdpsRoutes } from './pdps.ts';
import { createAuditRepository } from './repository.ts';
import type { DecisionFilters, DecisionKey, SessionKey, TenantScope, TimelineKey } from './sql.ts';

export type AuditRoutesDeps = {
  /** The query side's own client: never the sink's (one chdb connection runs one operation at a time). */
  clickhouse: ClickHouseClient;
  database: string;
  /** Largest page a caller may ask for (default 1000). */
  maxLimit?: number;
  /** Rows per ClickHouse round trip while streaming NDJSON (default 5000). */
  exportPageSize?: number;
  /**
   * The tamper-evident log's evidence for `?proofs=1` on the NDJSON export
   * (services/audit-log/export.ts, wired by the composition root): without it
   * `proofs=1` is refused.
   */
  exportProofs?: {
    begin(): Promise<{
      proofOf(d: { event_id: string; tenant_id: string; audit: { kafka: { topic: string; partition: number; offset: string } } }): Promise<unknown>;
      checkpoints(): unknown[];
      verifierKeys: readonly string[];
    }>;
  };
};

const NDJSON = 'application/x-ndjson';
const id = z.string().min(1).max(LIMITS.id);
const filterValue = z.string().min(1).max(LIMITS.text);

const tenantParam = { tenant: id.optional() };
const pageParams = (maxLimit: number) => ({
  limit: z.coerce.number().int().min(1).max(maxLimit).default(100),
  cursor: z.string().min(1).max(2048).optional().describe('the next_cursor of the previous page of this same query (same filters, tenant and order); any other value is a 400'),
});

/** The tenant a request may read: its own, or for an operator the one named (undefined = all). */
export const tenantScope = (caller: Caller, requested: string | undefined): Result<TenantScope, string> => {
  if (isOperator(caller)) return ok(requested);
  if (requested !== undefined && requested !== caller.tenant) return err(`tenant: a token of tenant ${caller.tenant} cannot read tenant ${requested}`);
  return ok(caller.tenant);
};

const forbidden = (reply: FastifyReply, message: string) => sendError(reply, 403, 'forbidden', message, [{ path: 'tenant', message }]);
const badCursor = (reply: FastifyReply, message: string) => sendError(reply, 400, 'bad_request', `invalid querystring: cursor: ${message}`, [{ path: 'querystring.cursor', message }]);

/** The error body every refusal has (services/lib/http.ts), as the OpenAPI document shows it. */
const errorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string(), errors: z.array(z.object({ path: z.string(), message: z.string() })).optional() }) });

const wantsNdjson = (accept: string | undefined): boolean => accept !== undefined && accept.split(',').some((t) => t.trim().split(';')[0] === NDJSON);

export const auditRoutes =
  (deps: AuditRoutesDeps): FastifyPluginAsync =>
  async (fastify) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    const repo = createAuditRepository(deps.clickhouse, deps.database);
    const maxLimit = deps.maxLimit ?? 1000;
    const exportPage = deps.exportPageSize ?? 5000;
    const guard = { onRequest: requireScope('audit:read') };

    const searchQuery = z
      .strictObject({
        session: filterValue.optional(),
        delegator: filterValue.optional(),
        agent: filterValue.optional(),
        tool: filterValue.optional(),
        action: filterValue.optional(),
        resource: z.string().max(LIMITS.text).optional(),
        effect: z.enum(EFFECTS).optional(),
        rule: filterValue.optional(),
        policy: filterValue.optional(),
        jti: filterValue.optional(),
        from: timestamp.optional(),
        to: timestamp.optional(),
        order: z.enum(['asc', 'desc']).default('asc'),
        proofs: z.enum(['0', '1']).optional().describe('1: each NDJSON line carries audit_proof (leaf index, inclusion proof), the export closes with the signed checkpoints'),
        ...tenantParam,
        ...pageParams(maxLimit),
      })
      .refine(windowInOrder, { message: 'from must be before to', path: ['from'] });

    app.get(
      '/v1/audit/decisions',
      {
        ...guard,
        schema: {
          querystring: searchQuery,
          tags: ['audit'],
          summary: 'Search decisions (JSON page, or NDJSON stream with Accept: application/x-ndjson)',
          description:
            '`from` must be before `to` (400 naming from). `proofs=1` goes with `Accept: application/x-ndjson` (400 otherwise). `cursor` is the `next_cursor` of an earlier page of the same query (same filters, tenant and order); any other value is a 400 naming cursor.',
        },
      },
      async (req, reply) => {
        const q = req.query;
        const scope = tenantScope(callerOf(req), q.tenant);
        if (!scope.ok) return forbidden(reply, scope.error);
        const { limit, cursor, order, tenant: _t, proofs, ...rest } = q;
        const withProofs = proofs === '1';
        if (withProofs && (!wantsNdjson(req.headers.accept) || deps.exportProofs === undefined)) {
          const message = deps.exportProofs === undefined ? 'proofs: the tamper-evident log is not served here' : 'proofs: proofs=1 goes with Accept: application/x-ndjson';
          return sendError(reply, 400, 'bad_request', `invalid querystring: ${message}`, [{ path: 'querystring.proofs', message }]);
        }
        const filters = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) as DecisionFilters;
        const hash = queryHash('decisions', { tenant: scope.value, order, ...filters });
        let after: DecisionKey | undefined;
        if (cursor !== undefined) {
          const k = decodeKey(cursor, hash, CURSOR_KEYS.decisions);
          if (!k.ok) return badCursor(reply, k.error);
          const [at, eventId] = k.value;
          after = { at, id: eventId };
        }
        const limitGiven = (req.query as { limit?: unknown }).limit !== undefined && new URL(req.url, 'http://x').searchParams.has('limit');

        if (wantsNdjson(req.headers.accept)) {
          // Streams every match after the cursor, a page of rows per round trip. With an explicit
          // limit and more rows left, the last line is {"next_cursor": …} — never a silent cut.
          const cap = limitGiven ? limit : Number.POSITIVE_INFINITY;
          // With proofs=1 every line gets its audit_proof against the checkpoints current at the start;
          // those checkpoints and the verifier keys close the export (before a next_cursor line).
          const evidence = withProofs ? await deps.exportProofs?.begin() : undefined;
          const stream = Readable.from(
            (async function* () {
              let sent = 0;
              let position = after;
              let nextCursor: string | undefined;
              for (;;) {
                const want = Math.min(exportPage, cap - sent);
                const page = await repo.searchDecisions(scope.value, filters, { limit: want, order, after: position });
                for (const d of page.items) yield `${JSON.stringify(evidence !== undefined ? { ...d, audit_proof: await evidence.proofOf(d) } : d)}\n`;
                sent += page.items.length;
                if (page.next === undefined) break;
                position = page.next;
                if (sent >= cap) {
                  nextCursor = encodeCursor(hash, [position.at, position.id]);
                  break;
                }
              }
              if (evidence !== undefined) {
                for (const c of evidence.checkpoints()) yield `${JSON.stringify({ checkpoint: c })}\n`;
                yield `${JSON.stringify({ verifier_keys: evidence.verifierKeys })}\n`;
              }
              if (nextCursor !== undefined) yield `${JSON.stringify({ next_cursor: nextCursor })}\n`;
            })(),
          );
          return reply.type(NDJSON).send(stream);
        }
        const page = await repo.searchDecisions(scope.value, filters, { limit, order, after });
        return {
          items: page.items,
          count: page.items.length,
          next_cursor: page.next !== undefined ? encodeCursor(hash, [page.next.at, page.next.id]) : null,
        };
      },
    );

    app.get(
      '/v1/audit/decisions/:event_id',
      {
        ...guard,
        schema: {
          params: z.strictObject({ event_id: z.uuid() }),
          querystring: z.strictObject(tenantParam),
          tags: ['audit'],
          summary: 'One decision, the trust state the PDP used and the one in force at its time, the signals behind them, and its story',
          response: {
            200: z
              .object({
                decision: z.unknown(),
                trust: z.object({
                  met: z.unknown(),
                  basis: z.enum(['trust_version', 'time', 'none']),
                  at_decision_time: z.unknown().optional(),
                  pdp_used: z.unknown().describe('the stored transition with the version the PDP named (null when none)'),
                  in_force: z.unknown().describe("the latest stored transition at or before the decision's occurred_at (null when none)"),
                  lag: z.object({ status: z.enum(['current', 'stale', 'ahead', 'unknown']) }).loose().describe('versions_behind and ms_behind when stale, computed at query time'),
                  finding: z.enum(['allowed_on_stale_trust']).optional(),
                }),
                signals: z.array(z.unknown()),
                story: z.string(),
                links: z.unknown(),
              })
              .describe('the decision as stored (audit.conflicts lists refused copies of its id), both trust states, and the story'),
            400: errorBodySchema.describe('bad_request: the id is not a UUID, or an unknown parameter'),
            403: errorBodySchema.describe('forbidden: a tenant token naming another tenant'),
            404: errorBodySchema.describe('not_found: no decision with that id in the tenants the caller may read'),
            409: errorBodySchema.describe(
              'ambiguous_tenant: an operator (tenant *) named no tenant and several tenants hold this id; the message names them (at most 20). Repeat with ?tenant=.',
            ),
          },
        },
      },
      async (req, reply) => {
        const scope = tenantScope(callerOf(req), req.query.tenant);
        if (!scope.ok) return forbidden(reply, scope.error);
        const x = await explainDecision(repo, scope.value, req.params.event_id.toLowerCase());
        if (x === undefined) return sendError(reply, 404, 'not_found', `no decision ${req.params.event_id}`);
        const d = x.decision;
        const enc = encodeURIComponent;
        return {
          ...x,
          links: {
            self: `/v1/audit/decisions/${d.event_id}`,
            session_timeline: `/v1/audit/sessions/${enc(d.session_id)}/timeline`,
            ...(x.decision.chain.find((l) => l.kind === 'human') !== undefined
              ? { delegator_sessions: `/v1/audit/delegators/${enc(x.decision.chain.find((l) => l.kind === 'human')?.id ?? '')}/sessions` }
              : {}),
            agent_decisions: `/v1/audit/decisions?agent=${enc(x.decision.chain.findLast((l) => l.kind === 'agent')?.id ?? '')}`,
            token_decisions: d.token !== undefined ? `/v1/audit/decisions?jti=${enc(d.token.jti)}` : null,
            policy_decisions: `/v1/audit/decisions?policy=${enc(d.decision.policy_id)}`,
            signals: x.signals.map((s) => ({ event_id: s.event_id, kind: s.kind })),
          },
        };
      },
    );

    app.get(
      '/v1/audit/sessions/:id/timeline',
      {
        ...guard,
        schema: { params: z.strictObject({ id }), querystring: z.strictObject({ ...tenantParam, ...pageParams(maxLimit) }), tags: ['audit'], summary: 'Decisions, signals and trust transitions of a session, in order' },
      },
      async (req, reply) => {
        const scope = tenantScope(callerOf(req), req.query.tenant);
        if (!scope.ok) return forbidden(reply, scope.error);
        const hash = queryHash('timeline', { tenant: scope.value, session: req.params.id });
        let after: TimelineKey | undefined;
        if (req.query.cursor !== undefined) {
          const k = decodeKey(req.query.cursor, hash, CURSOR_KEYS.timeline);
          if (!k.ok) return badCursor(reply, k.error);
          const [at, rank, key] = k.value;
          after = { at, rank, id: key };
        }
        const page = await repo.timeline(scope.value, req.params.id, req.query.limit, after);
        return {
          session_id: req.params.id,
          entries: page.items,
          count: page.items.length,
          next_cursor: page.next !== undefined ? encodeCursor(hash, [page.next.at, page.next.rank, page.next.id]) : null,
        };
      },
    );

    app.get(
      '/v1/audit/delegators/:user_id/sessions',
      {
        ...guard,
        schema: {
          params: z.strictObject({ user_id: id }),
          querystring: z
            .strictObject({ from: timestamp.optional(), to: timestamp.optional(), ...tenantParam, ...pageParams(maxLimit) })
            .refine(windowInOrder, { message: 'from must be before to', path: ['from'] }),
          tags: ['audit'],
          summary: "A delegator's sessions with allow/deny counts and their last tier",
          description: '`from` must be before `to` when both are given (400 naming from).',
        },
      },
      async (req, reply) => {
        const scope = tenantScope(callerOf(req), req.query.tenant);
        if (!scope.ok) return forbidden(reply, scope.error);
        const window = { from: req.query.from, to: req.query.to };
        const hash = queryHash('delegator', { tenant: scope.value, user: req.params.user_id, ...window });
        let after: SessionKey | undefined;
        if (req.query.cursor !== undefined) {
          const k = decodeKey(req.query.cursor, hash, CURSOR_KEYS.delegator);
          if (!k.ok) return badCursor(reply, k.error);
          const [last, tenant, session] = k.value;
          after = { last, tenant, session };
        }
        const page = await repo.delegatorSessions(scope.value, req.params.user_id, window, req.query.limit, after);
        return {
          user_id: req.params.user_id,
          sessions: page.items,
          count: page.items.length,
          next_cursor: page.next !== undefined ? encodeCursor(hash, [page.next.last, page.next.tenant, page.next.session]) : null,
        };
      },
    );

    // GET /v1/audit/pdps (pdps.ts): per PDP, decisions on stale trust, from the audit.
    await fastify.register(pdpsRoutes({ clickhouse: deps.clickhouse, database: deps.database, onRequest: guard.onRequest, tenantScope, forbidden, errorBody: errorBodySchema }));
  };
