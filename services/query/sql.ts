// Parameterised SQL for the forensics API. Pure: every builder returns the
// query text and its `{name:Type}` parameters; values never enter the text.
// Identifiers (database, table) come from configuration and go through ident().
//
// The audit is write-once per (tenant, event_id): the sink stores only the
// first copy of an id (a later one is a duplicate, or a conflict kept in the
// `conflicts` table, never in the record tables). What can still sit in two
// parts until a merge is the same record re-inserted after a crash (same
// Kafka coordinates, same content). Every read collapses by event id,
// preferring the first stored copy (lowest Kafka offset), so nothing is
// counted twice: in SQL (`LIMIT 1 BY tenant, event_id`), except the decision search,
// whose copies come out adjacent and are dropped by the repository (LIMIT BY
// there would defeat the top-N read).
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import { toClickHouseTime } from '../../schemas/clickhouse/rows-write.ts';

export type Sql = { query: string; query_params: Record<string, unknown> };

/**
 * The read settings, as a statement's SETTINGS clause rather than the client's
 * per-query settings: the embedded engine applies those with a SET on its
 * session and resets them with a second statement after the query
 * (services/lib/clickhouse.ts), two engine calls a read instead of one. Over
 * HTTP both forms scope the settings to the one statement.
 */
export const READ_SETTINGS_SQL = "SETTINGS date_time_output_format = 'iso', output_format_json_quote_64bit_integers = 0";

/** A statement of ./sql.ts with the read settings; every builder there leaves the SETTINGS clause to this. */
export const withReadSettings = (sql: Sql): Sql => ({ query: `${sql.query}\n${READ_SETTINGS_SQL}`, query_params: sql.query_params });

/** undefined = every tenant (an operator who named none). */
export type TenantScope = string | undefined;

export const DECISION_FILTERS = ['session', 'delegator', 'agent', 'tool', 'action', 'resource', 'effect', 'rule', 'policy', 'jti'] as const;
export type DecisionFilterName = (typeof DECISION_FILTERS)[number];
export type DecisionFilters = Partial<Record<DecisionFilterName, string>> & { from?: string; to?: string };

export type Order = 'asc' | 'desc';
/** Keyset position: the last row a page returned. */
export type DecisionKey = { at: string; id: string };

const COLUMN_OF: Record<DecisionFilterName, string> = {
  session: 'session_id',
  delegator: 'delegator',
  agent: 'agent_id',
  tool: 'tool',
  action: 'action',
  resource: 'resource',
  effect: 'effect',
  rule: 'rule_id',
  policy: 'policy_id',
  jti: 'token_jti',
};

const TIME = "DateTime64(3, 'UTC')";

/** Shared WHERE builder: adds a condition and its parameter under a fresh name. */
class Where {
  readonly parts: string[] = [];
  readonly params: Record<string, unknown> = {};
  add(condition: (p: (name: string, type: string, value: unknown) => string) => string): this {
    this.parts.push(
      condition((name, type, value) => {
        this.params[name] = value;
        return `{${name}:${type}}`;
      }),
    );
    return this;
  }
  sql(): string {
    return this.parts.length === 0 ? '1' : this.parts.join(' AND ');
  }
}

/** Parameters of queries combined into one: a shared name must carry the same value in each. */
export const mergeParams = (...all: Record<string, unknown>[]): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const params of all) {
    for (const [k, v] of Object.entries(params)) {
      if (k in out && JSON.stringify(out[k]) !== JSON.stringify(v)) throw new Error(`query parameter ${k} bound to two values`);
      out[k] = v;
    }
  }
  return out;
};

const tenantCondition = (w: Where, tenant: TenantScope): void => {
  if (tenant !== undefined) w.add((p) => `tenant = ${p('tenant', 'String', tenant)}`);
};

/** Every column of the decisions table, times as they were stored. */
export const DECISION_SELECT = '*';

/**
 * `conflicted`: whether a refused conflicting copy of the row's id exists (the
 * `conflicts` table, which only holds such copies, so the set is small). In the
 * same statement, so a page stays one round trip; the namespace is a constant
 * of a closed list, never a caller's value.
 */
export const conflictedColumn = (database: string, tenant: TenantScope, namespace: 'event' | 'trust', keyExpr: string): { sql: string; params: Record<string, unknown> } => ({
  sql:
    `(tenant, ${keyExpr}) IN (SELECT tenant, record_key FROM ${qualified(database, 'conflicts')} WHERE namespace = '${namespace}'` +
    `${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''}) AS conflicted`,
  params: tenant !== undefined ? { tenant } : {},
});
const EVENT_KEY = 'toString(event_id)';
const TRUST_KEY = "concat(toString(version), ':', session_id)";

/**
 * How a timeline statement says which of its records have a refused
 * conflicting copy. `inline`: a `conflicted` column on every row, from a set
 * each branch builds out of the conflicts table. `listed`: the branches carry
 * no such column and one more branch lists the conflicting records' keys
 * (conflictKey), which the caller matches: no subquery to plan per branch.
 */
export type TimelineFlags = 'inline' | 'listed';

/** The `conflicted` column of a branch, or nothing when the statement lists the keys instead. */
const flagColumn = (database: string, tenant: TenantScope, namespace: 'event' | 'trust', keyExpr: string, flags: TimelineFlags): { sql: string; params: Record<string, unknown> } => {
  if (flags === 'listed') return { sql: '', params: {} };
  const c = conflictedColumn(database, tenant, namespace, keyExpr);
  return { sql: `, ${c.sql}`, params: c.params };
};

/** A record as the conflicts table keys it: tenant, namespace, record key (an event id; `version:session` for a trust transition). */
export const conflictKey = (tenant: string, namespace: 'event' | 'trust', recordKey: string): string => `${tenant}\u0000${namespace}\u0000${recordKey}`;

/**
 * At most this many conflict rows are listed in a timeline statement; past
 * it, the caller asks again with the flags computed in the engine (`inline`),
 * so a tenant with many refused copies costs one more statement, never a long
 * list.
 */
export const TIMELINE_CONFLICT_KEYS = 1000;

export const decisionFilterWhere = (tenant: TenantScope, f: DecisionFilters): Where => {
  const w = new Where();
  tenantCondition(w, tenant);
  for (const name of DECISION_FILTERS) {
    const v = f[name];
    if (v === undefined) continue;
    // effect is an Enum8; compare as its string so an unknown value matches nothing instead of failing.
    const column = name === 'effect' ? 'toString(effect)' : COLUMN_OF[name];
    w.add((p) => `${column} = ${p(`f_${name}`, 'String', v)}`);
  }
  if (f.from !== undefined) w.add((p) => `occurred_at >= ${p('from', TIME, toClickHouseTime(f.from ?? ''))}`);
  if (f.to !== undefined) w.add((p) => `occurred_at < ${p('to', TIME, toClickHouseTime(f.to ?? ''))}`);
  return w;
};

/**
 * One page of decisions in a stable order (time, then event id), resuming
 * after `after`. Asks for limit + 1 rows: the extra one says whether a next
 * page exists, so the caller never truncates silently.
 *
 * No `LIMIT 1 BY tenant, event_id` here, on purpose: with it the engine must read
 * every column of every match before it can drop any (1.3 s for a 30-day
 * search on 10M rows). A plain ORDER BY … LIMIT lets it keep a top-N heap over
 * the sort and filter columns and read the other columns of only the rows it
 * returns (lazy materialization). Re-delivered copies of an event share its
 * (time, id), so they come out adjacent, lowest Kafka offset first; the
 * caller keeps the first copy and asks again past them if that left the page
 * short (repository.searchDecisions).
 */
export const searchDecisionsSql = (
  database: string,
  tenant: TenantScope,
  f: DecisionFilters,
  page: { limit: number; order: Order; after?: DecisionKey | undefined },
): Sql => {
  const w = decisionFilterWhere(tenant, f);
  if (page.after !== undefined) {
    const after = page.after;
    const cmp = page.order === 'asc' ? '>' : '<';
    const cmpEq = page.order === 'asc' ? '>=' : '<=';
    w.add((p) => {
      const at = p('after_at', TIME, toClickHouseTime(after.at));
      const id = p('after_id', 'UUID', after.id);
      // The plain range on occurred_at lets the primary key / projection prune; the OR breaks ties.
      return `occurred_at ${cmpEq} ${at} AND (occurred_at ${cmp} ${at} OR event_id ${cmp} ${id})`;
    });
  }
  const dir = page.order === 'asc' ? 'ASC' : 'DESC';
  const conflicted = conflictedColumn(database, tenant, 'event', EVENT_KEY);
  return {
    query:
      `SELECT ${DECISION_SELECT}, ${conflicted.sql} FROM ${qualified(database, 'decisions')}\n` +
      `WHERE ${w.sql()}\n` +
      `ORDER BY occurred_at ${dir}, event_id ${dir}, kafka_offset ASC\n` +
      `LIMIT {limit:UInt32}`,
    query_params: mergeParams(w.params, conflicted.params, { limit: page.limit + 1 }),
  };
};

/** Tenants an operator's lookup by id reports at most when the id is in several. */
export const MAX_TENANTS_PER_ID = 20;

/**
 * A decision by id: the first stored copy. Scoped to one tenant, one row.
 * For an operator who named no tenant, the first copy in each tenant holding
 * the id (ids are only unique within a tenant), so the caller can tell one
 * tenant's decision from several and never shows one as if it were the other.
 */
export const decisionByIdSql = (database: string, tenant: TenantScope, eventId: string): Sql => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `event_id = ${p('event_id', 'UUID', eventId)}`);
  return {
    query:
      `SELECT ${DECISION_SELECT} FROM ${qualified(database, 'decisions')}\nWHERE ${w.sql()}\n` +
      `ORDER BY tenant ASC, kafka_offset ASC\nLIMIT 1 BY tenant\nLIMIT ${tenant === undefined ? MAX_TENANTS_PER_ID : 1}`,
    query_params: w.params,
  };
};

/** Refused later copies of one record id: the evidence beside the record. */
export const conflictsSql = (database: string, tenant: string, namespace: 'event' | 'trust', recordKey: string, limit = 100): Sql => ({
  query:
    `SELECT kafka_topic, kafka_partition, kafka_offset, copy_digest, copy, detected_at FROM ${qualified(database, 'conflicts')}\n` +
    `WHERE tenant = {tenant:String} AND namespace = {namespace:String} AND record_key = {key:String}\n` +
    `ORDER BY kafka_topic, kafka_partition, kafka_offset\nLIMIT 1 BY kafka_topic, kafka_partition, kafka_offset\nLIMIT {limit:UInt32}`,
  query_params: { tenant, namespace, key: recordKey, limit },
});

/** A session's trust transitions up to a version (or all), one row per version. */
export const trustHistorySql = (database: string, tenant: string, sessionId: string, upTo?: { version?: number; at?: string }): Sql => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `session_id = ${p('session', 'String', sessionId)}`);
  if (upTo?.version !== undefined) {
    const v = upTo.version;
    w.add((p) => `version <= ${p('version', 'UInt64', v)}`);
  }
  if (upTo?.at !== undefined) {
    const at = upTo.at;
    w.add((p) => `updated_at <= ${p('at', TIME, toClickHouseTime(at))}`);
  }
  return {
    query:
      `SELECT tenant, session_id, version, tier, updated_at, caused_by, state FROM ${qualified(database, 'trust_transitions')}\n` +
      `WHERE ${w.sql()}\nORDER BY version ASC, kafka_offset ASC\nLIMIT 1 BY tenant, version`,
    query_params: w.params,
  };
};

/**
 * A session's trust steps (version, tier, time), one row per version, without
 * the state: enough to tell which version was in force at a time, and since
 * when a tier held, without reading every state of a long session.
 */
export const trustStepsSql = (database: string, tenant: string, sessionId: string): Sql => ({
  query:
    `SELECT version, tier, updated_at FROM ${qualified(database, 'trust_transitions')}\n` +
    `WHERE tenant = {tenant:String} AND session_id = {session:String}\nORDER BY version ASC, kafka_offset ASC\nLIMIT 1 BY version`,
  query_params: { tenant, session: sessionId },
});

/** Whole transitions of a session at the given versions (first stored copy of each). */
export const trustByVersionsSql = (database: string, tenant: string, sessionId: string, versions: readonly number[]): Sql => ({
  query:
    `SELECT tenant, session_id, version, tier, updated_at, caused_by, state FROM ${qualified(database, 'trust_transitions')}\n` +
    `WHERE tenant = {tenant:String} AND session_id = {session:String} AND version IN {versions:Array(UInt64)}\n` +
    `ORDER BY version ASC, kafka_offset ASC\nLIMIT 1 BY version`,
  query_params: { tenant, session: sessionId, versions: [...new Set(versions)] },
});

export const signalsByIdSql = (database: string, tenant: TenantScope, eventIds: readonly string[]): Sql => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `event_id IN ${p('ids', 'Array(UUID)', eventIds)}`);
  return {
    query:
      `SELECT tenant, session_id, occurred_at, event_id, kind, subject, ref, payload FROM ${qualified(database, 'signals')}\n` +
      `WHERE ${w.sql()}\nORDER BY occurred_at ASC, event_id ASC, kafka_offset ASC\nLIMIT 1 BY tenant, event_id`,
    query_params: w.params,
  };
};

// ---- session timeline ------------------------------------------------------

/** Within one instant: the signal, then the trust change it caused, then the decision that met it. */
export const TIMELINE_RANK = { signal: 0, trust: 1, decision: 2 } as const;
export type TimelineKind = keyof typeof TIMELINE_RANK;
export type TimelineKey = { at: string; rank: number; id: string };

/**
 * The keyset condition for one source table of the timeline, whose rows all
 * share `rank`: strictly after (at, rank, id).
 */
const afterKey = (w: Where, timeColumn: string, idExpr: string, rank: number, after: TimelineKey | undefined): void => {
  if (after === undefined) return;
  w.add((p) => {
    const at = p('after_at', TIME, toClickHouseTime(after.at));
    if (rank > after.rank) return `${timeColumn} >= ${at}`;
    if (rank < after.rank) return `${timeColumn} > ${at}`;
    return `${timeColumn} >= ${at} AND (${timeColumn} > ${at} OR ${idExpr} > ${p('after_id', 'String', after.id)})`;
  });
};

/**
 * One source of the timeline, its select list apart from the rest of the
 * statement: alone it is `SELECT list rest`; in the one-statement form
 * (timelineSql) the list is rendered into the row in place.
 */
type TimelineBranch = { columns: string; rest: string; params: Record<string, unknown> };

const branchSql = (b: TimelineBranch): Sql => ({ query: `SELECT ${b.columns} ${b.rest}`, query_params: b.params });

/** A branch as the timeline's rows: its list rendered into `row` (the text JSONEachRow gives for it alone), tagged with `rank`. */
const rankedSelect = (rank: number, b: TimelineBranch): string => `SELECT toUInt8(${rank}) AS rank, formatRowNoNewline('JSONEachRow', ${b.columns}) AS row ${b.rest}`;

const decisionsBranch = (database: string, tenant: TenantScope, sessionId: string, limit: number, after: TimelineKey | undefined, flags: TimelineFlags): TimelineBranch => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `session_id = ${p('session', 'String', sessionId)}`);
  afterKey(w, 'occurred_at', 'toString(event_id)', TIMELINE_RANK.decision, after);
  const conflicted = flagColumn(database, tenant, 'event', EVENT_KEY, flags);
  return {
    columns: `${DECISION_SELECT}${conflicted.sql}`,
    rest:
      `FROM ${qualified(database, 'decisions')}\nWHERE ${w.sql()}\n` +
      `ORDER BY occurred_at ASC, toString(event_id) ASC, kafka_offset ASC\nLIMIT 1 BY tenant, event_id\nLIMIT {limit:UInt32}`,
    params: mergeParams(w.params, conflicted.params, { limit }),
  };
};

export const timelineDecisionsSql = (database: string, tenant: TenantScope, sessionId: string, limit: number, after?: TimelineKey, flags: TimelineFlags = 'inline'): Sql =>
  branchSql(decisionsBranch(database, tenant, sessionId, limit, after, flags));

/**
 * Which signals the timeline's signal branch reads. `referenced`: the
 * session's own and those its trust changes name as causes (a user's role, a
 * freeze), the ids from a subquery over the session's trust transitions, so
 * no round trip is spent fetching them first. `own`: the session's own only
 * (session_id); the caller adds the referenced ones itself
 * (timelineReferencedSignalsSql), which saves the subquery's planning when
 * it can list the references from the page's own trust rows.
 */
export type TimelineSignals = 'referenced' | 'own';

const SIGNAL_COLUMNS = 'tenant, session_id, occurred_at, event_id, kind, subject, ref, payload';
const SIGNAL_ORDER = 'ORDER BY occurred_at ASC, event_id ASC, kafka_offset ASC\nLIMIT 1 BY tenant, event_id\nLIMIT {limit:UInt32}';

const signalsBranch = (database: string, tenant: TenantScope, sessionId: string, limit: number, after: TimelineKey | undefined, flags: TimelineFlags, which: TimelineSignals = 'referenced'): TimelineBranch => {
  const referenced = which === 'referenced' ? referencedSignalIdsSql(database, tenant, sessionId) : undefined;
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) =>
    referenced === undefined
      ? `session_id = ${p('session', 'String', sessionId)}`
      : `(session_id = ${p('session', 'String', sessionId)} OR event_id IN (SELECT toUUIDOrZero(id) FROM (\n${referenced.query}\n)))`,
  );
  afterKey(w, 'occurred_at', 'toString(event_id)', TIMELINE_RANK.signal, after);
  const conflicted = flagColumn(database, tenant, 'event', EVENT_KEY, flags);
  return {
    columns: `${SIGNAL_COLUMNS}${conflicted.sql}`,
    rest: `FROM ${qualified(database, 'signals')}\nWHERE ${w.sql()}\n${SIGNAL_ORDER}`,
    params: mergeParams(referenced?.query_params ?? {}, conflicted.params, { ...w.params, limit }),
  };
};

export const timelineSignalsSql = (database: string, tenant: TenantScope, sessionId: string, limit: number, after?: TimelineKey, flags: TimelineFlags = 'inline'): Sql =>
  branchSql(signalsBranch(database, tenant, sessionId, limit, after, flags));

/**
 * The other half of an `own` signal branch on a first page: the signals of
 * other subjects (a user's role, a freeze) that the session's trust
 * transitions name, by id, as the timeline's rows (rank, row). Together the
 * two give exactly the `referenced` branch's rows: that branch's condition
 * is `session_id = S OR event_id IN refs`, split here at session_id.
 */
export const timelineReferencedSignalsSql = (database: string, tenant: TenantScope, sessionId: string, ids: readonly string[], limit: number, flags: TimelineFlags): Sql => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `session_id != ${p('session', 'String', sessionId)}`);
  w.add((p) => `event_id IN ${p('ref_ids', 'Array(UUID)', [...new Set(ids)])}`);
  const conflicted = flagColumn(database, tenant, 'event', EVENT_KEY, flags);
  const b: TimelineBranch = {
    columns: `${SIGNAL_COLUMNS}${conflicted.sql}`,
    rest: `FROM ${qualified(database, 'signals')}\nWHERE ${w.sql()}\n${SIGNAL_ORDER}`,
    params: mergeParams(conflicted.params, { ...w.params, limit }),
  };
  return { query: rankedSelect(TIMELINE_RANK.signal, b), query_params: b.params };
};

const trustBranch = (database: string, tenant: TenantScope, sessionId: string, limit: number, after: TimelineKey | undefined, flags: TimelineFlags): TimelineBranch => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `session_id = ${p('session', 'String', sessionId)}`);
  // Versions sort like strings only when padded; the id of a trust row is its zero-padded version.
  afterKey(w, 'updated_at', "leftPad(toString(version), 20, '0')", TIMELINE_RANK.trust, after);
  const conflicted = flagColumn(database, tenant, 'trust', TRUST_KEY, flags);
  return {
    columns: `tenant, session_id, version, tier, updated_at, caused_by, state${conflicted.sql}`,
    rest: `FROM ${qualified(database, 'trust_transitions')}\nWHERE ${w.sql()}\nORDER BY updated_at ASC, version ASC, kafka_offset ASC\nLIMIT 1 BY tenant, version\nLIMIT {limit:UInt32}`,
    params: mergeParams(w.params, conflicted.params, { limit }),
  };
};

export const timelineTrustSql = (database: string, tenant: TenantScope, sessionId: string, limit: number, after?: TimelineKey, flags: TimelineFlags = 'inline'): Sql =>
  branchSql(trustBranch(database, tenant, sessionId, limit, after, flags));

/** Event ids a session's trust transitions name: what caused each change, its causes and its freezes. */
export const referencedSignalIdsSql = (database: string, tenant: TenantScope, sessionId: string): Sql => {
  const w = new Where();
  tenantCondition(w, tenant);
  w.add((p) => `session_id = ${p('session', 'String', sessionId)}`);
  return {
    query:
      `SELECT DISTINCT arrayJoin(arrayConcat([toString(caused_by)],\n` +
      `  arrayMap(x -> JSONExtractString(x, 'event_id'), JSONExtractArrayRaw(state, 'causes')),\n` +
      `  arrayMap(x -> JSONExtractString(x, 'event_id'), JSONExtractArrayRaw(state, 'freezes')))) AS id\n` +
      `FROM ${qualified(database, 'trust_transitions')}\nWHERE ${w.sql()}`,
    query_params: w.params,
  };
};

/** The rank of a `listed` timeline statement's rows that name a conflicting record (conflictKey) rather than an entry. */
export const TIMELINE_CONFLICTS_RANK = 3;

/** Keys (conflictKey) of the records with a refused conflicting copy, in the tenant (every tenant: none named); TIMELINE_CONFLICT_KEYS + 1 rows at most. */
const conflictKeysBranch = (database: string, tenant: TenantScope): TimelineBranch => {
  const w = new Where();
  tenantCondition(w, tenant);
  return {
    columns: "concat(tenant, '\\0', namespace, '\\0', record_key)",
    rest: `FROM ${qualified(database, 'conflicts')}\nWHERE ${w.sql()}\nLIMIT {conflict_keys:UInt32}`,
    params: { ...w.params, conflict_keys: TIMELINE_CONFLICT_KEYS + 1 },
  };
};

export const timelineConflictKeysSql = (database: string, tenant: TenantScope): Sql => {
  const b = conflictKeysBranch(database, tenant);
  return { query: `SELECT ${b.columns} AS key ${b.rest}`, query_params: b.params };
};

/**
 * The whole timeline page in one statement: signals, trust transitions and
 * decisions as three UNION ALL branches, which the engine runs side by side,
 * each row rendered as one JSON object in `row` (the same text JSONEachRow
 * would give for that branch alone) and tagged with its `rank`. One round
 * trip instead of four on a client that runs one operation at a time.
 * `listed` (the default) adds the conflicting records' keys as a fourth
 * branch instead of a `conflicted` column per row (TimelineFlags).
 *
 * Each branch renders its own select list into `row` (formatRowNoNewline
 * over the list itself, not over a subquery of it): a page's time is mostly
 * the engine planning this statement, and a subquery per branch cost ~2 ms
 * of a ~19 ms page (README, "Where a timeline page's time goes").
 */
export const timelineSql = (
  database: string,
  tenant: TenantScope,
  sessionId: string,
  limit: number,
  after?: TimelineKey,
  flags: TimelineFlags = 'listed',
  signals: TimelineSignals = 'referenced',
): Sql => {
  const branches: [number, TimelineBranch][] = [
    [TIMELINE_RANK.signal, signalsBranch(database, tenant, sessionId, limit, after, flags, signals)],
    [TIMELINE_RANK.trust, trustBranch(database, tenant, sessionId, limit, after, flags)],
    [TIMELINE_RANK.decision, decisionsBranch(database, tenant, sessionId, limit, after, flags)],
  ];
  const keys = flags === 'listed' ? [conflictKeysBranch(database, tenant)] : [];
  return {
    query: [
      ...branches.map(([rank, b]) => rankedSelect(rank, b)),
      ...keys.map((k) => `SELECT toUInt8(${TIMELINE_CONFLICTS_RANK}) AS rank, ${k.columns} AS row ${k.rest}`),
    ].join('\nUNION ALL\n'),
    query_params: mergeParams(...branches.map(([, b]) => b.params), ...keys.map((k) => k.params)),
  };
};

// ---- delegator -------------------------------------------------------------

export type SessionKey = { last: string; session: string; tenant: string };

/**
 * A delegator's sessions in a window with allow/deny/step-up counts, newest
 * activity first. The inner query reads the delegator projection.
 */
export const delegatorSessionsSql = (
  database: string,
  tenant: TenantScope,
  userId: string,
  window: { from?: string | undefined; to?: string | undefined },
  limit: number,
  after?: SessionKey,
): Sql => {
  const w = decisionFilterWhere(tenant, { delegator: userId, ...(window.from !== undefined ? { from: window.from } : {}), ...(window.to !== undefined ? { to: window.to } : {}) });
  const having = new Where();
  if (after !== undefined) {
    having.add((p) => {
      const last = p('after_last', TIME, toClickHouseTime(after.last));
      const key = p('after_key', 'String', `${after.tenant}\u0000${after.session}`);
      return `(last_at < ${last} OR (last_at = ${last} AND concat(tenant, '\\0', session_id) > ${key}))`;
    });
  }
  return {
    query:
      `SELECT tenant, session_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at, count() AS decisions,\n` +
      `  countIf(effect = 'allow') AS allows, countIf(effect = 'deny') AS denies, countIf(effect = 'step_up') AS step_ups,\n` +
      `  groupUniqArray(16)(agent_id) AS agents\n` +
      `FROM (SELECT tenant, session_id, occurred_at, event_id, effect, agent_id FROM ${qualified(database, 'decisions')}\n` +
      `  WHERE ${w.sql()}\n  LIMIT 1 BY tenant, event_id)\n` +
      `GROUP BY tenant, session_id\n` +
      (after !== undefined ? `HAVING ${having.sql()}\n` : '') +
      `ORDER BY last_at DESC, tenant ASC, session_id ASC\nLIMIT {limit:UInt32}`,
    query_params: { ...w.params, ...having.params, limit: limit + 1 },
  };
};

/**
 * The last trust tier of each session (its highest version). Tenants and
 * sessions go in as two sets so the primary key prunes; the caller keeps only
 * the pairs it asked for.
 */
export const lastTiersSql = (database: string, sessions: readonly { tenant: string; session: string }[]): Sql => ({
  query:
    `SELECT tenant, session_id, argMax(tier, version) AS last_tier, max(version) AS last_version FROM ${qualified(database, 'trust_transitions')}\n` +
    `WHERE tenant IN {tenants:Array(String)} AND session_id IN {sessions:Array(String)}\nGROUP BY tenant, session_id`,
  query_params: { tenants: [...new Set(sessions.map((s) => s.tenant))], sessions: [...new Set(sessions.map((s) => s.session))] },
});
