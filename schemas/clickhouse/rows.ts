// Event ↔ ClickHouse row, both ways. The sink writes with `*Row`, the query
// side reads back with `*FromRecord`; test/unit/audit-rows round-trips them.
import { createHash } from 'node:crypto';
import {
  actingAgentOf,
  delegatorOf,
  sessionTrustSchema,
  signalEventSchema,
  type ChainLink,
  type DecisionEvent,
  type SessionTrust,
  type SignalEvent,
} from '../events.ts';
import { formatPath } from '../result.ts';
import { CONFLICTS, DECISIONS, insertColumns, RECORD_IDS, SIGNALS, TRUST_TRANSITIONS, type RecordNamespace, type TableSpec } from './tables.ts';

/** Where a row came from on Kafka: the sink's provenance and its dedup token's input. */
export type KafkaCoordinates = { topic: string; partition: number; offset: string };

type Scalar = string | number | boolean | null;
export type CellValue = Scalar | readonly string[];

const INSERT_COLUMNS = {
  decisions: insertColumns(DECISIONS),
  signals: insertColumns(SIGNALS),
  trust_transitions: insertColumns(TRUST_TRANSITIONS),
  record_ids: insertColumns(RECORD_IDS),
  conflicts: insertColumns(CONFLICTS),
} as const;

type DecisionColumn =
  | 'tenant' | 'session_id' | 'occurred_at' | 'event_id' | 'delegator' | 'agent_id' | 'agent_version' | 'agent_owner'
  | 'chain_kinds' | 'chain_ids' | 'chain_versions' | 'chain_owners'
  | 'token_jti' | 'token_scopes' | 'token_audience' | 'token_issued_at' | 'token_expires_at' | 'token_trust_level'
  | 'token_consent_ref' | 'token_policy_version' | 'intent_task_class' | 'intent_statement'
  | 'tool' | 'action' | 'resource' | 'args_digest'
  | 'effect' | 'policy_id' | 'policy_version' | 'rule_id' | 'reasons' | 'trust_version' | 'pdp_id' | 'latency_us'
  | 'outcome_status' | 'outcome_detail' | 'model' | 'prompt_digest' | 'output_digest' | 'tool_schema_digest'
  | 'emitted_by' | 'kafka_topic' | 'kafka_partition' | 'kafka_offset';
export type DecisionRow = Record<DecisionColumn, CellValue>;

type SignalColumn =
  | 'tenant' | 'session_id' | 'occurred_at' | 'event_id' | 'kind' | 'subject' | 'ref' | 'severity' | 'tier' | 'payload'
  | 'emitted_by' | 'kafka_topic' | 'kafka_partition' | 'kafka_offset';
export type SignalRow = Record<SignalColumn, CellValue>;

type TrustColumn =
  | 'tenant' | 'session_id' | 'version' | 'updated_at' | 'tier' | 'delegator' | 'agent_id' | 'caused_by' | 'ended' | 'state'
  | 'kafka_topic' | 'kafka_partition' | 'kafka_offset';
export type TrustRow = Record<TrustColumn, CellValue>;

/**
 * ISO-8601 UTC ('2026-06-09T14:03:11.000Z') → ClickHouse's basic DateTime64
 * text ('2026-06-09 14:03:11.000'), which parses under any
 * date_time_input_format, on the embedded engine and on a server alike.
 */
export const toClickHouseTime = (iso: string): string => `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;

/** Back from a row read with `date_time_output_format = 'iso'` or the basic text form. */
export const fromClickHouseTime = (v: string): string => {
  if (v.endsWith('Z')) return new Date(v).toISOString();
  return new Date(`${v.replace(' ', 'T')}Z`).toISOString();
};

const orEmpty = (v: string | undefined): string => v ?? '';
const timeOrNull = (v: string | undefined): string | null => (v === undefined ? null : toClickHouseTime(v));

export const decisionRow = (e: DecisionEvent, at: KafkaCoordinates): DecisionRow => {
  const agent = actingAgentOf(e.chain);
  return {
    tenant: e.tenant_id,
    session_id: e.session_id,
    occurred_at: toClickHouseTime(e.occurred_at),
    event_id: e.event_id,
    delegator: orEmpty(delegatorOf(e.chain)?.id),
    agent_id: orEmpty(agent?.id),
    agent_version: orEmpty(agent?.version),
    agent_owner: orEmpty(agent?.owner),
    chain_kinds: e.chain.map((l) => l.kind),
    chain_ids: e.chain.map((l) => l.id),
    chain_versions: e.chain.map((l) => orEmpty(l.version)),
    chain_owners: e.chain.map((l) => orEmpty(l.owner)),
    token_jti: orEmpty(e.token?.jti),
    token_scopes: e.token?.scopes ?? [],
    token_audience: orEmpty(e.token?.audience),
    token_issued_at: timeOrNull(e.token?.issued_at),
    token_expires_at: timeOrNull(e.token?.expires_at),
    token_trust_level: orEmpty(e.token?.trust_level),
    token_consent_ref: orEmpty(e.token?.consent_ref),
    token_policy_version: orEmpty(e.token?.policy_version),
    intent_task_class: orEmpty(e.intent?.task_class),
    intent_statement: orEmpty(e.intent?.statement),
    tool: e.request.tool,
    action: e.request.action,
    resource: e.request.resource,
    args_digest: orEmpty(e.request.args_digest),
    effect: e.decision.effect,
    policy_id: e.decision.policy_id,
    policy_version: orEmpty(e.decision.policy_version),
    rule_id: orEmpty(e.decision.rule_id),
    reasons: e.decision.reasons,
    trust_version: e.decision.trust_version ?? null,
    pdp_id: orEmpty(e.decision.pdp_id),
    latency_us: e.decision.latency_us ?? null,
    outcome_status: orEmpty(e.outcome?.status),
    outcome_detail: orEmpty(e.outcome?.detail),
    model: orEmpty(e.provenance?.model),
    prompt_digest: orEmpty(e.provenance?.prompt_digest),
    output_digest: orEmpty(e.provenance?.output_digest),
    tool_schema_digest: orEmpty(e.provenance?.tool_schema_digest),
    emitted_by: orEmpty(e.emitted_by),
    kafka_topic: at.topic,
    kafka_partition: at.partition,
    kafka_offset: at.offset,
  };
};

/** Which session a signal is about ('' if none), whom it addresses otherwise, and its own id. */
export const signalIndexFields = (e: SignalEvent): { session_id: string; subject: string; ref: string; severity: string; tier: string } => {
  const none = { session_id: '', subject: '', ref: '', severity: '', tier: '' };
  switch (e.kind) {
    case 'session_started':
    case 'session_ended':
      return { ...none, session_id: e.session_id };
    case 'injection_detected':
      return { ...none, session_id: e.session_id, ref: e.signal_id, severity: e.severity };
    case 'trust_set':
      return { ...none, session_id: e.session_id, subject: e.set_by, tier: e.tier };
    case 'role_revoked':
    case 'role_granted':
      return { ...none, subject: e.user_id, ref: e.role };
    case 'consent_revoked':
    case 'consent_granted':
      return { ...none, subject: e.user_id, ref: orEmpty(e.consent_ref) };
    case 'change_freeze_raised':
    case 'change_freeze_lifted':
      return { ...none, subject: e.freeze_id, ref: e.freeze_id };
    case 'step_up_requested':
    case 'step_up_resolved':
      return { ...none, session_id: e.session_id, ref: e.request_id };
    case 'token_issued':
      return { ...none, session_id: orEmpty(e.session_id), subject: e.user_id, ref: e.jti };
    default: {
      const unreachable: never = e;
      return unreachable;
    }
  }
};

export const signalRow = (e: SignalEvent, at: KafkaCoordinates): SignalRow => ({
  tenant: e.tenant_id,
  ...signalIndexFields(e),
  occurred_at: toClickHouseTime(e.occurred_at),
  event_id: e.event_id,
  kind: e.kind,
  payload: JSON.stringify(e),
  emitted_by: orEmpty(e.emitted_by),
  kafka_topic: at.topic,
  kafka_partition: at.partition,
  kafka_offset: at.offset,
});

export const trustRow = (s: SessionTrust, at: KafkaCoordinates): TrustRow => ({
  tenant: s.tenant_id,
  session_id: s.session_id,
  version: s.version,
  updated_at: toClickHouseTime(s.updated_at),
  tier: s.tier,
  delegator: orEmpty(s.delegator),
  agent_id: orEmpty(s.agent),
  caused_by: s.caused_by,
  ended: s.ended,
  state: JSON.stringify(s),
  kafka_topic: at.topic,
  kafka_partition: at.partition,
  kafka_offset: at.offset,
});

/** A row as JSONCompactEachRow wants it: values in the table's insert-column order. */
export const compact = (table: TableSpec, row: Readonly<Record<string, CellValue>>): CellValue[] =>
  INSERT_COLUMNS[table.name as keyof typeof INSERT_COLUMNS].map((c) => {
    const v = row[c];
    if (v === undefined) throw new Error(`row for ${table.name} has no value for column ${c}`);
    return v;
  });

// ---- write-once ------------------------------------------------------------

/** JSON with every object's keys sorted: one text per content, whatever order a decoder built it in. */
export const canonicalJson = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
};

export const contentDigest = (canonical: string): string => createHash('sha256').update(canonical).digest('hex');

/** The write-once key of a trust transition: its version, then its session (versions are digits, so the first ':' splits). */
export const trustRecordKey = (s: Pick<SessionTrust, 'version' | 'session_id'>): string => `${s.version}:${s.session_id}`;

/** One record as the write-once check sees it. */
export type RecordIdentity = {
  tenant: string;
  namespace: RecordNamespace;
  key: string;
  digest: string;
  /** The partition column's value (ClickHouse text), for grouping inserts by month. */
  time: string;
  /** Canonical JSON of the record: kept as evidence when it conflicts with the stored copy. */
  canonical: string;
};

export const eventIdentity = (e: DecisionEvent | SignalEvent): RecordIdentity => {
  const canonical = canonicalJson(e);
  return { tenant: e.tenant_id, namespace: 'event', key: e.event_id, digest: contentDigest(canonical), time: toClickHouseTime(e.occurred_at), canonical };
};

export const trustIdentity = (s: SessionTrust): RecordIdentity => {
  const canonical = canonicalJson(s);
  return { tenant: s.tenant_id, namespace: 'trust', key: trustRecordKey(s), digest: contentDigest(canonical), time: toClickHouseTime(s.updated_at), canonical };
};

export const recordIdRow = (id: RecordIdentity, at: KafkaCoordinates): CellValue[] =>
  compact(RECORD_IDS, {
    tenant: id.tenant,
    namespace: id.namespace,
    record_key: id.key,
    digest: id.digest,
    occurred_at: id.time,
    kafka_topic: at.topic,
    kafka_partition: at.partition,
    kafka_offset: at.offset,
  });

/** Where and with which digest the first copy of a record was stored. */
export type StoredCopy = { digest: string; kafka: KafkaCoordinates };

export const conflictRow = (copy: RecordIdentity, at: KafkaCoordinates, first: StoredCopy): CellValue[] =>
  compact(CONFLICTS, {
    tenant: copy.tenant,
    namespace: copy.namespace,
    record_key: copy.key,
    first_topic: first.kafka.topic,
    first_partition: first.kafka.partition,
    first_offset: first.kafka.offset,
    first_digest: first.digest,
    copy_digest: copy.digest,
    copy: copy.canonical,
    kafka_topic: at.topic,
    kafka_partition: at.partition,
    kafka_offset: at.offset,
  });

// ---- reading back ----------------------------------------------------------

/** A decisions row as JSONEachRow returns it (64-bit integers quoted, times as ISO). */
export type DecisionRecord = {
  tenant: string;
  session_id: string;
  occurred_at: string;
  event_id: string;
  delegator: string;
  agent_id: string;
  agent_version: string;
  agent_owner: string;
  chain_kinds: string[];
  chain_ids: string[];
  chain_versions: string[];
  chain_owners: string[];
  token_jti: string;
  token_scopes: string[];
  token_audience: string;
  token_issued_at: string | null;
  token_expires_at: string | null;
  token_trust_level: string;
  token_consent_ref: string;
  token_policy_version: string;
  intent_task_class: string;
  intent_statement: string;
  tool: string;
  action: string;
  resource: string;
  args_digest: string;
  effect: string;
  policy_id: string;
  policy_version: string;
  rule_id: string;
  reasons: string[];
  trust_version: string | number | null;
  pdp_id: string;
  latency_us: number | null;
  outcome_status: string;
  outcome_detail: string;
  model: string;
  prompt_digest: string;
  output_digest: string;
  tool_schema_digest: string;
  emitted_by: string;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: string | number;
  ingested_at: string;
};

/** Only the non-empty entries, so '' reads back as "absent". */
const present = <T extends Record<string, unknown>>(o: T): Partial<T> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== '' && v !== null && v !== undefined)) as Partial<T>;

const presentOrUndefined = <T extends Record<string, unknown>>(o: T): Partial<T> | undefined => {
  const p = present(o);
  return Object.keys(p).length === 0 ? undefined : p;
};

/** A later copy of the id with other content: refused as the record, kept as evidence. */
export type ConflictEvidence = { kafka: KafkaCoordinates; digest: string; detected_at: string; copy: unknown };

/**
 * The decision event as the gateway sent it (the contract's JSON), plus where
 * the audit found it, and — only when there are any — the conflicting copies
 * of its id that were refused.
 */
export type AuditedDecision = DecisionEvent & { audit: { kafka: KafkaCoordinates; ingested_at: string; conflicts?: ConflictEvidence[] } };

export const decisionFromRecord = (r: DecisionRecord): AuditedDecision => {
  const chain: ChainLink[] = r.chain_ids.map((id, i) => ({
    kind: (r.chain_kinds[i] ?? 'agent') as ChainLink['kind'],
    id,
    ...present({ version: r.chain_versions[i] ?? '', owner: r.chain_owners[i] ?? '' }),
  }));
  const token =
    r.token_jti === ''
      ? undefined
      : {
          jti: r.token_jti,
          scopes: r.token_scopes,
          ...present({
            audience: r.token_audience,
            issued_at: r.token_issued_at === null ? '' : fromClickHouseTime(r.token_issued_at),
            expires_at: r.token_expires_at === null ? '' : fromClickHouseTime(r.token_expires_at),
            trust_level: r.token_trust_level,
            consent_ref: r.token_consent_ref,
            policy_version: r.token_policy_version,
          }),
        };
  const intent = presentOrUndefined({ task_class: r.intent_task_class, statement: r.intent_statement });
  const outcome = r.outcome_status === '' ? undefined : { status: r.outcome_status, ...present({ detail: r.outcome_detail }) };
  const provenance = presentOrUndefined({
    model: r.model,
    prompt_digest: r.prompt_digest,
    output_digest: r.output_digest,
    tool_schema_digest: r.tool_schema_digest,
  });
  const event = {
    type: 'decision' as const,
    event_id: r.event_id,
    tenant_id: r.tenant,
    occurred_at: fromClickHouseTime(r.occurred_at),
    ...present({ emitted_by: r.emitted_by }),
    session_id: r.session_id,
    chain,
    ...(token !== undefined ? { token } : {}),
    ...(intent !== undefined ? { intent } : {}),
    request: { tool: r.tool, action: r.action, resource: r.resource, ...present({ args_digest: r.args_digest }) },
    decision: {
      effect: r.effect,
      policy_id: r.policy_id,
      ...present({ policy_version: r.policy_version, rule_id: r.rule_id }),
      reasons: r.reasons,
      ...(r.trust_version !== null ? { trust_version: Number(r.trust_version) } : {}),
      ...present({ pdp_id: r.pdp_id }),
      ...(r.latency_us !== null ? { latency_us: Number(r.latency_us) } : {}),
    },
    ...(outcome !== undefined ? { outcome } : {}),
    ...(provenance !== undefined ? { provenance } : {}),
  };
  return {
    ...(event as DecisionEvent),
    audit: {
      kafka: { topic: r.kafka_topic, partition: Number(r.kafka_partition), offset: String(r.kafka_offset) },
      ingested_at: fromClickHouseTime(r.ingested_at),
    },
  };
};

export type SignalRecord = {
  tenant: string;
  session_id: string;
  occurred_at: string;
  event_id: string;
  kind: string;
  subject: string;
  ref: string;
  payload: string;
};

/**
 * A stored JSON copy, parsed by the contract's schema, not cast: the sink
 * stored only what the contract accepted, so a failure means the row or the
 * contract changed underneath — said with the fields at fault.
 */
const parseStored = <T>(what: string, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } } }, json: string): T => {
  const r = schema.safeParse(JSON.parse(json));
  if (r.success) return r.data;
  throw new Error(`stored ${what} does not satisfy the contract: ${r.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join('; ')}`);
};

export const signalFromRecord = (r: SignalRecord): SignalEvent => parseStored(`signal ${r.event_id}`, signalEventSchema, r.payload);

export type TrustRecord = { tenant: string; session_id: string; version: string | number; state: string };

export const trustFromRecord = (r: TrustRecord): SessionTrust => parseStored(`trust state ${r.session_id} v${r.version}`, sessionTrustSchema, r.state);
