// GET /v1/audit/pdps: per PDP (tenant, pdp_id) the decisions it stamped,
// when it was last seen, and how many it made on stale trust and how far
// behind — computed from the audit (decisions against the stored trust
// transitions), so it holds after any restart and agrees with `explain`:
// a decision is behind when its `trust_version` is older than the state in
// force at its `occurred_at` (the session's stored transition with the
// highest version whose `updated_at` is at or before it; trustLagOf in
// story.ts), by `versions` and by `ms` (since the first version the PDP had
// not seen came into force). Stale = behind by more than `grace_versions`
// and more than `grace_ms` (both 0 by default: every decision `explain` calls
// stale).
import type { ClickHouseClient } from '@clickhouse/client';
import type { FastifyPluginAsync, FastifyReply, onRequestHookHandler } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import { fromClickHouseTime } from '../../schemas/clickhouse/rows-read.ts';
import { toClickHouseTime } from '../../schemas/clickhouse/rows-write.ts';
import { LIMITS, timestamp, windowInOrder } from '../../schemas/events.ts';
import type { Result } from '../../schemas/result.ts';
import type { Caller } from '../lib/auth.ts';
import { callerOf } from '../lib/http.ts';
import { mergeParams, withReadSettings, type Sql, type TenantScope } from './sql.ts';

export type PdpQuery = { from?: string | undefined; to?: string | undefined; pdp?: string | undefined; graceVersions: number; graceMs: number; limit: number };

export type PdpSummary = {
  tenant: string;
  pdp_id: string;
  first_seen: string;
  last_seen: string;
  decisions: number;
  /** Decisions naming no trust_version: never judged stale. */
  unversioned: number;
  stale_decisions: number;
  /** Stale decisions that allowed the call. */
  stale_allows: number;
  /** The stale decision furthest behind (versions, then ms), or null when none is stale. */
  worst_lag: { versions: number; ms: number; event_id: string; session_id: string } | null;
};

const TIME = "DateTime64(3, 'UTC')";

/** Pure: the statement; parameters never enter the text. */
export const pdpsSql = (database: string, tenant: TenantScope, q: PdpQuery): Sql => {
  const where: string[] = ["pdp_id != ''"];
  const params: Record<string, unknown> = { grace_versions: q.graceVersions, grace_ms: q.graceMs, limit: q.limit + 1 };
  if (tenant !== undefined) {
    where.push('tenant = {tenant:String}');
    params['tenant'] = tenant;
  }
  if (q.pdp !== undefined) {
    where.push('pdp_id = {pdp:String}');
    params['pdp'] = q.pdp;
  }
  if (q.from !== undefined) {
    where.push(`occurred_at >= {from:${TIME}}`);
    params['from'] = toClickHouseTime(q.from);
  }
  if (q.to !== undefined) {
    where.push(`occurred_at < {to:${TIME}}`);
    params['to'] = toClickHouseTime(q.to);
  }
  const w = where.join(' AND ');
  const decisions = qualified(database, 'decisions');
  const transitions = qualified(database, 'trust_transitions');
  const query =
    // The steps (version, updated_at in ms) of every session those decisions belong to, first stored copy of each version.
    `SELECT tenant, pdp_id, min(occurred_at) AS first_seen, max(occurred_at) AS last_seen, count() AS decisions,\n` +
    `  countIf(tv < 0) AS unversioned, countIf(stale) AS stale_decisions, countIf(stale AND effect = 'allow') AS stale_allows,\n` +
    `  max(if(stale, behind, 0)) AS worst_versions, max(if(stale, ms_behind, 0)) AS worst_ms,\n` +
    `  argMaxIf(toString(event_id), (behind, ms_behind), stale) AS worst_event_id, argMaxIf(session_id, (behind, ms_behind), stale) AS worst_session_id\n` +
    `FROM (\n` +
    `  SELECT d.tenant AS tenant, d.pdp_id AS pdp_id, d.session_id AS session_id, d.occurred_at AS occurred_at, d.event_id AS event_id, toString(d.effect) AS effect,\n` +
    `    ifNull(toInt64(d.trust_version), -1) AS tv, toUnixTimestamp64Milli(d.occurred_at) AS at_ms,\n` +
    `    arrayFilter((v, t) -> t <= at_ms, s.vs, s.ts) AS known,\n` +
    `    if(tv < 0 OR length(known) = 0, 0, toInt64(arrayMax(known)) - tv) AS behind_raw,\n` +
    `    greatest(behind_raw, 0) AS behind,\n` +
    `    if(behind_raw > 0, greatest(at_ms - arrayMin(arrayFilter((t, v) -> toInt64(v) > tv AND t <= at_ms, s.ts, s.vs)), 0), 0) AS ms_behind,\n` +
    `    behind_raw > {grace_versions:UInt64} AND ms_behind > {grace_ms:UInt64} AS stale\n` +
    `  FROM (SELECT tenant, session_id, pdp_id, occurred_at, event_id, effect, trust_version FROM ${decisions}\n` +
    `    WHERE ${w}\n    LIMIT 1 BY tenant, event_id) AS d\n` +
    `  LEFT JOIN (\n` +
    `    SELECT tenant, session_id, groupArray(version) AS vs, groupArray(toUnixTimestamp64Milli(updated_at)) AS ts FROM (\n` +
    `      SELECT tenant, session_id, version, updated_at FROM ${transitions}\n` +
    `      WHERE ${tenant !== undefined ? 'tenant = {tenant:String} AND ' : ''}(tenant, session_id) IN (SELECT tenant, session_id FROM ${decisions} WHERE ${w})\n` +
    `      ORDER BY tenant, session_id, version, kafka_offset\n      LIMIT 1 BY tenant, session_id, version)\n` +
    `    GROUP BY tenant, session_id\n` +
    `  ) AS s ON d.tenant = s.tenant AND d.session_id = s.session_id\n` +
    `)\n` +
    `GROUP BY tenant, pdp_id\n` +
    `ORDER BY stale_decisions DESC, worst_versions DESC, worst_ms DESC, tenant ASC, pdp_id ASC\n` +
    `LIMIT {limit:UInt32}`;
  return { query, query_params: mergeParams(params) };
};

type Row = {
  tenant: string;
  pdp_id: string;
  first_seen: string;
  last_seen: string;
  decisions: number | string;
  unversioned: number | string;
  stale_decisions: number | string;
  stale_allows: number | string;
  worst_versions: number | string;
  worst_ms: number | string;
  worst_event_id: string;
  worst_session_id: string;
};

export const summaryOfRow = (r: Row): PdpSummary => {
  const stale = Number(r.stale_decisions);
  return {
    tenant: r.tenant,
    pdp_id: r.pdp_id,
    first_seen: fromClickHouseTime(r.first_seen),
    last_seen: fromClickHouseTime(r.last_seen),
    decisions: Number(r.decisions),
    unversioned: Number(r.unversioned),
    stale_decisions: stale,
    stale_allows: Number(r.stale_allows),
    worst_lag: stale > 0 ? { versions: Number(r.worst_versions), ms: Number(r.worst_ms), event_id: r.worst_event_id, session_id: r.worst_session_id } : null,
  };
};

export const listPdps = async (client: ClickHouseClient, database: string, tenant: TenantScope, q: PdpQuery): Promise<{ items: PdpSummary[]; truncated: boolean }> => {
  const rs = await client.query({ ...withReadSettings(pdpsSql(database, tenant, q)), format: 'JSONEachRow' });
  const rows = (await rs.json<Row>()).map(summaryOfRow);
  return { items: rows.slice(0, q.limit), truncated: rows.length > q.limit };
};

export type PdpsRouteDeps = {
  clickhouse: ClickHouseClient;
  database: string;
  /** The audit routes' guard (requireScope('audit:read')). */
  onRequest: onRequestHookHandler;
  /** The audit routes' tenant rule (routes.ts tenantScope). */
  tenantScope: (caller: Caller, requested: string | undefined) => Result<TenantScope, string>;
  forbidden: (reply: FastifyReply, message: string) => unknown;
  errorBody: z.ZodType;
};

const pdpSummarySchema = z.object({
  tenant: z.string(),
  pdp_id: z.string(),
  first_seen: z.string(),
  last_seen: z.string().describe("the newest decision's occurred_at"),
  decisions: z.number(),
  unversioned: z.number().describe('decisions naming no trust_version (never stale)'),
  stale_decisions: z.number(),
  stale_allows: z.number().describe('stale decisions that allowed the call'),
  worst_lag: z.object({ versions: z.number(), ms: z.number(), event_id: z.string(), session_id: z.string() }).nullable().describe('the stale decision furthest behind'),
});

export const pdpsRoutes =
  (deps: PdpsRouteDeps): FastifyPluginAsync =>
  async (fastify) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    const querystring = z
      .strictObject({
        tenant: z.string().min(1).max(LIMITS.id).optional(),
        pdp: z.string().min(1).max(LIMITS.id).optional(),
        from: timestamp.optional(),
        to: timestamp.optional(),
        grace_versions: z.coerce.number().int().min(0).max(1_000_000).default(0),
        grace_ms: z.coerce.number().int().min(0).max(86_400_000).default(0),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
      })
      .refine(windowInOrder, { message: 'from must be before to', path: ['from'] });
    app.get(
      '/v1/audit/pdps',
      {
        onRequest: deps.onRequest,
        schema: {
          querystring,
          tags: ['audit'],
          description: '`from` must be before `to` when both are given (400 naming from).',
          summary: 'PDPs by the decisions they stamped: last seen, decisions, decisions on stale trust, worst lag (from the audit: decisions against stored trust transitions)',
          response: {
            200: z
              .object({ items: z.array(pdpSummarySchema), count: z.number(), truncated: z.boolean().describe('more PDPs matched than limit') })
              .describe('most stale decisions first; stale = more than grace_versions and more than grace_ms behind the state in force at occurred_at'),
            400: deps.errorBody.describe('bad_request: an unknown parameter, a bad time or number, from not before to'),
            403: deps.errorBody.describe('forbidden: a tenant token naming another tenant'),
          },
        },
      },
      async (req, reply) => {
        const q = req.query;
        const scope = deps.tenantScope(callerOf(req), q.tenant);
        if (!scope.ok) return deps.forbidden(reply, scope.error);
        const r = await listPdps(deps.clickhouse, deps.database, scope.value, { from: q.from, to: q.to, pdp: q.pdp, graceVersions: q.grace_versions, graceMs: q.grace_ms, limit: q.limit });
        return { items: r.items, count: r.items.length, truncated: r.truncated };
      },
    );
  };
