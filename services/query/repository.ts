// Reads the audit tables: runs the SQL of ./sql.ts on the query side's own
// ClickHouse client and maps rows back to contract types.
import type { ClickHouseClient } from '@clickhouse/client';
import {
  decisionFromRecord,
  fromClickHouseTime,
  signalFromRecord,
  trustFromRecord,
  type AuditedDecision,
  type ConflictEvidence,
  type DecisionRecord,
  type SignalRecord,
} from '../../schemas/clickhouse/rows-read.ts';
import type { SessionTrust, SignalEvent, Tier } from '../../schemas/events.ts';
import {
  conflictKey,
  conflictsSql,
  decisionByIdSql,
  delegatorSessionsSql,
  lastTiersSql,
  searchDecisionsSql,
  signalsByIdSql,
  TIMELINE_CONFLICT_KEYS,
  TIMELINE_CONFLICTS_RANK,
  TIMELINE_RANK,
  timelineReferencedSignalsSql,
  timelineSql,
  trustByVersionsSql,
  trustHistorySql,
  trustStepsSql,
  type DecisionFilters,
  type DecisionKey,
  type Order,
  type SessionKey,
  type Sql,
  type TenantScope,
  type TimelineFlags,
  type TimelineKey,
  type TimelineSignals,
  withReadSettings,
} from './sql.ts';

export type TrustTransition = { tenant: string; session_id: string; version: number; tier: Tier; updated_at: string; caused_by: string; state: SessionTrust };

export type TrustStepRow = { version: number; tier: Tier; updated_at: string };

/** A decision as search and export return it: `audit.conflicted` when a refused conflicting copy of its id exists. */
export type ListedDecision = AuditedDecision & { audit: AuditedDecision['audit'] & { conflicted: boolean } };

/** `conflicted`: a refused conflicting copy of this record exists (GET /v1/audit/decisions/:id shows it for decisions). */
export type TimelineEntry = (
  | { kind: 'decision'; at: string; tenant: string; event_id: string; decision: AuditedDecision }
  | { kind: 'signal'; at: string; tenant: string; event_id: string; signal: SignalEvent }
  | { kind: 'trust'; at: string; tenant: string; version: number; tier: Tier; caused_by: string; trust: SessionTrust }
) & { conflicted: boolean };

export type DelegatorSession = {
  tenant: string;
  session_id: string;
  first_at: string;
  last_at: string;
  decisions: number;
  allows: number;
  denies: number;
  step_ups: number;
  agents: string[];
  last_tier: Tier | null;
  last_trust_version: number | null;
};

export type Page<T, K> = { items: T[]; next?: K | undefined };

/**
 * An operator asked for an id without naming a tenant, and several tenants
 * hold that id: which one was meant cannot be known, so none is shown. Fastify
 * answers it as 409 with the tenants named; the operator repeats the request
 * with `?tenant=`.
 */
export class AmbiguousTenantError extends Error {
  override readonly name = 'AmbiguousTenantError';
  readonly statusCode = 409;
  readonly code = 'ambiguous_tenant';
  constructor(
    readonly eventId: string,
    readonly tenants: readonly string[],
  ) {
    super(`event id ${eventId} exists in ${tenants.length} tenants (${tenants.join(', ')}): name one with ?tenant=`);
  }
}

/** Rows that carry the `conflicted` column (conflictedColumn in sql.ts): 0/1, or a boolean. */
type Flagged = { conflicted?: number | boolean | string };
const flag = (r: Flagged): boolean => r.conflicted === true || Number(r.conflicted) === 1;
const listed = (r: DecisionRecord & Flagged): ListedDecision => {
  const d = decisionFromRecord(r);
  return { ...d, audit: { ...d.audit, conflicted: flag(r) } };
};

type TrustRow = { tenant: string; session_id: string; version: string | number; tier: Tier; updated_at: string; caused_by: string; state: string };


const toTransition = (r: TrustRow): TrustTransition => ({
  tenant: r.tenant,
  session_id: r.session_id,
  version: Number(r.version),
  tier: r.tier,
  updated_at: fromClickHouseTime(r.updated_at),
  caused_by: r.caused_by,
  state: trustFromRecord({ ...r, state: r.state }),
});

/** Signals of other subjects a repository keeps after reading them for a timeline page (see `namedSignals`). */
export const NAMED_SIGNALS_KEPT = 4096;

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The event ids a trust transition names — what caused it, its causes, its
 * freezes — as referencedSignalIdsSql lists them in the engine (lower case;
 * anything not a UUID names no signal).
 */
export const referencedSignalIds = (r: { caused_by: string; state: string }): string[] => {
  const state = JSON.parse(r.state) as { causes?: unknown; freezes?: unknown };
  const ids = (list: unknown): unknown[] => (Array.isArray(list) ? list.map((x: unknown) => (typeof x === 'object' && x !== null && 'event_id' in x ? x.event_id : undefined)) : []);
  return [r.caused_by, ...ids(state.causes), ...ids(state.freezes)]
    .filter((id): id is string => typeof id === 'string')
    .map((id) => id.toLowerCase())
    .filter((id) => UUID_TEXT.test(id));
};

export type AuditRepository = ReturnType<typeof createAuditRepository>;

export const createAuditRepository = (client: ClickHouseClient, database: string) => {
  const rows = async <T>(sql: Sql): Promise<T[]> => {
    const rs = await client.query({ ...withReadSettings(sql), format: 'JSONEachRow' });
    return rs.json<T>();
  };

  /**
   * One query per page (see searchDecisionsSql): limit + 1 rows, the extra
   * one saying whether a next page exists, so nothing is truncated silently.
   * Copies of one event arrive adjacent; the first (lowest Kafka offset) is
   * kept, and if dropping the rest left the page short the next rows are
   * fetched from past the last key seen.
   */
  const searchDecisions = async (
    tenant: TenantScope,
    filters: DecisionFilters,
    page: { limit: number; order: Order; after?: DecisionKey | undefined },
  ): Promise<Page<ListedDecision, DecisionKey>> => {
    const want = page.limit + 1;
    const found: ListedDecision[] = [];
    const seen = new Set<string>();
    let after = page.after;
    for (;;) {
      const batch = (await rows<DecisionRecord & Flagged>(searchDecisionsSql(database, tenant, filters, { limit: page.limit, order: page.order, after }))).map(listed);
      for (const d of batch) {
        // Ids are unique per tenant only: an operator's search sees each tenant's copy.
        const k = `${d.tenant_id}\u0000${d.event_id}`;
        if (seen.has(k)) continue;
        seen.add(k);
        found.push(d);
      }
      const lastRaw = batch[batch.length - 1];
      if (found.length >= want || batch.length < want || lastRaw === undefined) break;
      after = { at: lastRaw.occurred_at, id: lastRaw.event_id };
    }
    const items = found.slice(0, page.limit);
    const last = items[items.length - 1];
    return { items, next: found.length > page.limit && last !== undefined ? { at: last.occurred_at, id: last.event_id } : undefined };
  };

  type ConflictRow = { kafka_topic: string; kafka_partition: number; kafka_offset: string | number; copy_digest: string; copy: string; detected_at: string };

  const conflictsOf = async (tenant: string, eventId: string): Promise<ConflictEvidence[]> =>
    (await rows<ConflictRow>(conflictsSql(database, tenant, 'event', eventId))).map((r) => ({
      kafka: { topic: r.kafka_topic, partition: Number(r.kafka_partition), offset: String(r.kafka_offset) },
      digest: r.copy_digest,
      detected_at: fromClickHouseTime(r.detected_at),
      copy: JSON.parse(r.copy) as unknown,
    }));

  /**
   * The first stored copy of a decision, with the conflicting copies of its id
   * that were refused (`audit.conflicts`, only when there are any). An
   * operator without a tenant gets the decision only when one tenant holds
   * the id; several → AmbiguousTenantError.
   */
  const decisionById = async (tenant: TenantScope, eventId: string): Promise<AuditedDecision | undefined> => {
    const found = await rows<DecisionRecord>(decisionByIdSql(database, tenant, eventId));
    const [r] = found;
    if (r === undefined) return undefined;
    if (found.length > 1) throw new AmbiguousTenantError(eventId, found.map((x) => x.tenant));
    const d = decisionFromRecord(r);
    const conflicts = await conflictsOf(d.tenant_id, d.event_id);
    return conflicts.length === 0 ? d : { ...d, audit: { ...d.audit, conflicts } };
  };

  const trustHistory = async (tenant: string, sessionId: string, upTo?: { version?: number; at?: string }): Promise<TrustTransition[]> =>
    (await rows<TrustRow>(trustHistorySql(database, tenant, sessionId, upTo))).map(toTransition);

  const trustSteps = async (tenant: string, sessionId: string): Promise<TrustStepRow[]> =>
    (await rows<{ version: string | number; tier: Tier; updated_at: string }>(trustStepsSql(database, tenant, sessionId))).map((r) => ({
      version: Number(r.version),
      tier: r.tier,
      updated_at: fromClickHouseTime(r.updated_at),
    }));

  const trustByVersions = async (tenant: string, sessionId: string, versions: readonly number[]): Promise<TrustTransition[]> =>
    versions.length === 0 ? [] : (await rows<TrustRow>(trustByVersionsSql(database, tenant, sessionId, versions))).map(toTransition);

  const signalsById = async (tenant: TenantScope, ids: readonly string[]): Promise<SignalEvent[]> =>
    ids.length === 0 ? [] : (await rows<SignalRecord>(signalsByIdSql(database, tenant, ids))).map(signalFromRecord);

  type Ranked = { rank: number; row: string };

  /**
   * Signals of other subjects that transitions named, as read by id
   * (timelineReferencedSignalsSql, `listed`), by tenant and id: a freeze or a
   * role change is named by every session it touched, and a stored signal is
   * write-once (the first stored copy is the record forever), so a row read
   * once serves every later page that names it. Only found rows are kept;
   * the oldest goes past NAMED_SIGNALS_KEPT.
   */
  const namedSignals = new Map<string, { row: Ranked; session: string }>();

  /**
   * A page's rows: one statement (timelineSql). On a first page the signal
   * branch reads the session's own signals only, and the signals its trust
   * transitions name (a user's role, a freeze) are listed from the trust rows
   * the same statement returned — all of them when fewer than the branch's
   * limit came back — and read by id in a second statement only when some are
   * not the session's own (timelineReferencedSignalsSql). Otherwise (a later
   * page, or more transitions than one page) the engine resolves them in the
   * statement, through a subquery that costs its planning on every page.
   */
  const timelineRows = async (tenant: TenantScope, sessionId: string, want: number, after: TimelineKey | undefined, flags: TimelineFlags): Promise<Ranked[]> => {
    const signals: TimelineSignals = after === undefined ? 'own' : 'referenced';
    const found = await rows<Ranked>(timelineSql(database, tenant, sessionId, want, after, flags, signals));
    if (signals === 'referenced') return found;
    const trust = found.filter((r) => r.rank === TIMELINE_RANK.trust);
    if (trust.length >= want) return rows<Ranked>(timelineSql(database, tenant, sessionId, want, after, flags, 'referenced'));
    // Ids are unique per tenant only: for an operator (every tenant) another tenant may hold a named id in
    // another session, so nothing is struck off and the by-id read alone tells (its session_id != S).
    const own = new Set(tenant === undefined ? [] : found.filter((r) => r.rank === TIMELINE_RANK.signal).map((r) => (JSON.parse(r.row) as { event_id: string }).event_id.toLowerCase()));
    const named = trust.flatMap((r) => referencedSignalIds(JSON.parse(r.row) as { caused_by: string; state: string })).filter((id) => !own.has(id));
    if (named.length === 0) return found;
    // Kept rows serve a tenant's `listed` pages only: an operator's read spans tenants, and a row whose flag the
    // engine computed (`inline`) may change; listed rows are the record alone.
    const keep = tenant !== undefined && flags === 'listed';
    const known: Ranked[] = [];
    const missing: string[] = [];
    for (const id of new Set(named)) {
      const hit = keep ? namedSignals.get(`${tenant}\u0000${id}`) : undefined;
      if (hit === undefined) missing.push(id);
      else if (hit.session !== sessionId) known.push(hit.row);
    }
    if (missing.length === 0) return [...found, ...known];
    const read = await rows<Ranked>(timelineReferencedSignalsSql(database, tenant, sessionId, missing, want, flags));
    for (const r of keep ? read : []) {
      const { event_id, session_id } = JSON.parse(r.row) as { event_id: string; session_id: string };
      namedSignals.set(`${tenant}\u0000${event_id.toLowerCase()}`, { row: r, session: session_id });
      if (namedSignals.size > NAMED_SIGNALS_KEPT) namedSignals.delete(namedSignals.keys().next().value ?? '');
    }
    return [...found, ...known, ...read];
  };

  /**
   * A page: its rows and the keys of the tenant's conflicting records
   * (`listed`); only when those are more than TIMELINE_CONFLICT_KEYS is the
   * page read again with the flags computed in the engine.
   */
  const timeline = async (tenant: TenantScope, sessionId: string, limit: number, after?: TimelineKey): Promise<Page<TimelineEntry, TimelineKey>> => {
    let found = await timelineRows(tenant, sessionId, limit + 1, after, 'listed');
    const listedRows = found.filter((r) => r.rank === TIMELINE_CONFLICTS_RANK);
    let listedKeys: Set<string> | undefined = new Set(listedRows.map((r) => r.row));
    if (listedRows.length > TIMELINE_CONFLICT_KEYS) {
      found = await timelineRows(tenant, sessionId, limit + 1, after, 'inline');
      listedKeys = undefined;
    }
    const conflictedOf = (r: Flagged, key: string): boolean => (listedKeys === undefined ? flag(r) : listedKeys.has(key));
    const decisions: (DecisionRecord & Flagged)[] = [];
    const signals: (SignalRecord & Flagged)[] = [];
    const trust: (TrustRow & Flagged)[] = [];
    for (const r of found) {
      if (r.rank === TIMELINE_RANK.decision) decisions.push(JSON.parse(r.row) as DecisionRecord & Flagged);
      else if (r.rank === TIMELINE_RANK.signal) signals.push(JSON.parse(r.row) as SignalRecord & Flagged);
      else if (r.rank === TIMELINE_RANK.trust) trust.push(JSON.parse(r.row) as TrustRow & Flagged);
    }
    type Keyed = { key: TimelineKey; entry: TimelineEntry };
    const all: Keyed[] = [
      ...decisions.map((r): Keyed => {
        const d = decisionFromRecord(r);
        const conflicted = conflictedOf(r, conflictKey(r.tenant, 'event', r.event_id));
        return { key: { at: d.occurred_at, rank: TIMELINE_RANK.decision, id: d.event_id }, entry: { kind: 'decision', at: d.occurred_at, tenant: d.tenant_id, event_id: d.event_id, decision: d, conflicted } };
      }),
      ...signals.map((r): Keyed => {
        const at = fromClickHouseTime(r.occurred_at);
        const conflicted = conflictedOf(r, conflictKey(r.tenant, 'event', r.event_id));
        return { key: { at, rank: TIMELINE_RANK.signal, id: r.event_id }, entry: { kind: 'signal', at, tenant: r.tenant, event_id: r.event_id, signal: signalFromRecord(r), conflicted } };
      }),
      ...trust.map((r): Keyed => {
        const t = toTransition(r);
        return {
          key: { at: t.updated_at, rank: TIMELINE_RANK.trust, id: String(t.version).padStart(20, '0') },
          entry: { kind: 'trust', at: t.updated_at, tenant: t.tenant, version: t.version, tier: t.tier, caused_by: t.caused_by, trust: t.state, conflicted: conflictedOf(r, conflictKey(r.tenant, 'trust', `${String(r.version)}:${r.session_id}`)) },
        };
      }),
    ];
    all.sort((a, b) => a.key.at.localeCompare(b.key.at) || a.key.rank - b.key.rank || (a.key.id < b.key.id ? -1 : a.key.id > b.key.id ? 1 : 0));
    const page = all.slice(0, limit);
    const last = page[page.length - 1];
    const items = page.map((k) => k.entry);
    return { items, next: all.length > limit && last !== undefined ? last.key : undefined };
  };

  const delegatorSessions = async (
    tenant: TenantScope,
    userId: string,
    window: { from?: string | undefined; to?: string | undefined },
    limit: number,
    after?: SessionKey,
  ): Promise<Page<DelegatorSession, SessionKey>> => {
    type Row = { tenant: string; session_id: string; first_at: string; last_at: string; decisions: number | string; allows: number | string; denies: number | string; step_ups: number | string; agents: string[] };
    const found = await rows<Row>(delegatorSessionsSql(database, tenant, userId, window, limit, after));
    const page = found.slice(0, limit);
    const tiers = new Map<string, { tier: Tier; version: number }>();
    if (page.length > 0) {
      const t = await rows<{ tenant: string; session_id: string; last_tier: Tier; last_version: number | string }>(
        lastTiersSql(database, page.map((s) => ({ tenant: s.tenant, session: s.session_id }))),
      );
      for (const r of t) tiers.set(`${r.tenant}\u0000${r.session_id}`, { tier: r.last_tier, version: Number(r.last_version) });
    }
    const items = page.map((r): DelegatorSession => {
      const last = tiers.get(`${r.tenant}\u0000${r.session_id}`);
      return {
        tenant: r.tenant,
        session_id: r.session_id,
        first_at: fromClickHouseTime(r.first_at),
        last_at: fromClickHouseTime(r.last_at),
        decisions: Number(r.decisions),
        allows: Number(r.allows),
        denies: Number(r.denies),
        step_ups: Number(r.step_ups),
        agents: [...r.agents].sort(),
        last_tier: last?.tier ?? null,
        last_trust_version: last?.version ?? null,
      };
    });
    const lastItem = items[items.length - 1];
    return {
      items,
      next: found.length > limit && lastItem !== undefined ? { last: lastItem.last_at, session: lastItem.session_id, tenant: lastItem.tenant } : undefined,
    };
  };

  return { searchDecisions, decisionById, trustHistory, trustSteps, trustByVersions, signalsById, timeline, delegatorSessions };
};
