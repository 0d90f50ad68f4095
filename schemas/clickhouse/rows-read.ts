// ClickHouse row → event: what the query side and the audit log read back
// (`*FromRecord`), the inverse of ./rows-write.ts; test/unit/audit-rows
// round-trips the two.
import { sessionTrustSchema, signalEventSchema, type ChainLink, type DecisionEvent, type SessionTrust, type SignalEvent } from '../events.ts';
import { formatPath } from '../result.ts';
import type { KafkaCoordinates } from './rows-write.ts';

/** Back from a row read with `date_time_output_format = 'iso'` or the basic text form. */
export const fromClickHouseTime = (v: string): string => {
  if (v.endsWith('Z')) return new Date(v).toISOString();
  return new Date(`${v.replace(' ', 'T')}Z`).toISOString();
};

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
