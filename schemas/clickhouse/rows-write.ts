// Event → ClickHouse row: what the sink writes. One function per table
// (`*Row`), `compact` for the insert-column order, and the time text both
// directions share. Read-back is ./rows-read.ts, the write-once identities
// ./rows-identity.ts; ./rows.ts re-exports all three.
import { actingAgentOf, delegatorOf, type DecisionEvent, type SessionTrust, type SignalEvent } from '../events.ts';
import { CONFLICTS, DECISIONS, insertColumns, RECORD_IDS, SIGNALS, TRUST_TRANSITIONS, type TableSpec } from './tables.ts';

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
