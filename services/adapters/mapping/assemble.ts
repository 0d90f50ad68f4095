// Assembly: from what one engine decided and the record it decided on, the
// trustfold decision event. An entry is never dropped for lack of a field:
// what cannot be found gets a visible placeholder, the reasons end with one
// marker `trustfold:unmapped=<field>,<field>`, and `missing` lists the fields
// so the caller can count them in /metrics.
import { decisionEventSchema, LIMITS, type ChainLink, type DecisionEvent, type Effect } from '../../../schemas/events.ts';
import { err, ok, type Result } from '../../../schemas/result.ts';
import { zodIssues } from '../../../schemas/codec.ts';
import { UNMAPPED, UNMAPPED_MARKER, type CommonConvention, type Engine, type StoryField } from './conventions.ts';
import { digestOf } from './digests.ts';
import { asId, asInt, asList, asText, asTier, asTime, clip, first } from './values.ts';

export type Mapped = { event: DecisionEvent; missing: StoryField[] };

export type Decided = {
  action: string | undefined;
  effect: Effect | undefined;
  policyId: string | undefined;
  policyVersion: string | undefined;
  ruleId: string | undefined;
  reasons: string[];
  pdpId: string | undefined;
  latencyUs: number | undefined;
  occurredAt: string | undefined;
};

type Assembly = {
  engine: Engine;
  eventId: string;
  tenant: string;
  emittedBy: string | undefined;
  /** Makes an unmapped session unique per source entry rather than lumping strangers together. */
  sourceRef: string;
  root: unknown;
  convention: CommonConvention;
  decided: Decided;
  fallbackTime: string;
};

export const assemble = (a: Assembly): Result<Mapped, string> => {
  const { root, convention: c, decided: d } = a;
  const missing: StoryField[] = [];
  const need = <T>(field: StoryField, v: T | undefined, placeholder: T): T => {
    if (v !== undefined) return v;
    missing.push(field);
    return placeholder;
  };

  const session = need('session_id', first(root, c.session, asId), clip(`${UNMAPPED}:${a.engine}:${a.sourceRef}`, LIMITS.id));
  const delegator = first(root, c.delegator, asId);
  if (delegator === undefined) missing.push('delegator');
  const agent = need('agent', first(root, c.agent, asId), UNMAPPED);
  const agentVersion = first(root, c.agentVersion, asId);
  const agentOwner = first(root, c.agentOwner, asId);
  const chain: ChainLink[] = [];
  if (delegator !== undefined) chain.push({ kind: 'human', id: delegator });
  chain.push({
    kind: 'agent',
    id: agent,
    ...(agentVersion !== undefined ? { version: agentVersion } : {}),
    ...(agentOwner !== undefined ? { owner: agentOwner } : {}),
  });

  const jti = first(root, c.tokenJti, asId);
  const token =
    jti === undefined
      ? undefined
      : compact({
          jti,
          scopes: first(root, c.tokenScopes, asList) ?? [],
          audience: first(root, c.tokenAudience, (v) => (Array.isArray(v) ? asId(v[0]) : asId(v))),
          issued_at: first(root, c.tokenIssuedAt, asTime),
          expires_at: first(root, c.tokenExpiresAt, asTime),
          trust_level: first(root, c.tokenTrustLevel, asTier),
          consent_ref: first(root, c.consentRef, asId),
          policy_version: first(root, c.tokenPolicyVersion, asId),
        });

  const intent = compact({ task_class: first(root, c.taskClass, asId), statement: first(root, c.intentStatement, asText) });
  const args = first(root, c.args, (v) => (v === undefined || v === null ? undefined : v));
  const argsDigest = first(root, c.argsDigest, asId) ?? (args !== undefined ? digestOf(args) : undefined);
  const request = {
    tool: need('tool', first(root, c.tool, asId), UNMAPPED),
    action: need('action', d.action, UNMAPPED),
    resource: need('resource', first(root, c.resource, asText), ''),
    ...(argsDigest !== undefined ? { args_digest: argsDigest } : {}),
  };
  const provenance = compact({
    model: first(root, c.model, asId),
    prompt_digest: first(root, c.promptDigest, asId),
    output_digest: first(root, c.outputDigest, asId),
    tool_schema_digest: first(root, c.toolSchemaDigest, asId),
  });

  // An effect we cannot read is recorded as a deny: enforcement points fail
  // closed on an undefined decision, and the marker says it was not read.
  const effect = need('effect', d.effect, 'deny');
  const policyId = need('policy_id', d.policyId, UNMAPPED);
  const occurredAt = need('occurred_at', d.occurredAt, a.fallbackTime);
  const trustVersion = first(root, c.trustVersion, asInt);

  const reasons = d.reasons.slice(0, LIMITS.list - 1);
  if (missing.length > 0) reasons.push(`${UNMAPPED_MARKER}${missing.join(',')}`);

  const candidate = {
    type: 'decision',
    event_id: a.eventId,
    tenant_id: clip(a.tenant, LIMITS.id),
    occurred_at: occurredAt,
    ...(a.emittedBy !== undefined ? { emitted_by: clip(a.emittedBy, LIMITS.id) } : {}),
    session_id: session,
    chain,
    ...(token !== undefined ? { token } : {}),
    ...(Object.keys(intent).length > 0 ? { intent } : {}),
    request,
    decision: compact({
      effect,
      policy_id: policyId,
      policy_version: d.policyVersion,
      rule_id: d.ruleId,
      reasons,
      trust_version: trustVersion,
      pdp_id: d.pdpId,
      latency_us: d.latencyUs,
    }),
    ...(Object.keys(provenance).length > 0 ? { provenance } : {}),
  };
  // Built to satisfy the contract; the parse also normalises timestamps. A
  // failure here is a bug in this file, reported rather than thrown.
  const parsed = decisionEventSchema.safeParse(candidate);
  if (!parsed.success) return err(zodIssues(parsed.error).map((e) => `${e.path}: ${e.message}`).join('; '));
  return ok({ event: parsed.data, missing });
};

/** Drops undefined members, so `exactOptionalPropertyTypes` and the strict schema both hold. */
const compact = <T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
