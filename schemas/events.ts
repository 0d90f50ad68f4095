// The JSON edge of the wire contract (docs/design.md#the-contract).
// The Avro schemas in ./avro/ carry the same fields on Kafka; test/unit/codec
// round-trips every event type so the two cannot drift apart.
import { z } from 'zod';

/** Limits that keep one hostile event from costing more than a normal one. */
export const LIMITS = {
  id: 256,
  text: 4096,
  chain: 16,
  list: 64,
} as const;

const id = z.string().min(1).max(LIMITS.id);
const text = z.string().max(LIMITS.text);
const digest = z.string().max(LIMITS.id);

/**
 * A UUID in either letter case, normalised to lower case (RFC 9562: the hex
 * digits are case-insensitive on input and written in lower case), so that
 * `0190A8C2-…` and `0190a8c2-…` are one id wherever an event is parsed — the
 * write-once index, the projector's duplicate check, ingest's — as the
 * ClickHouse UUID column already made them one row key. Without it a copy of
 * an event under its id in upper case was a second event to every one of them.
 */
export const uuid = z.uuid().transform((s) => s.toLowerCase());

/**
 * A string that passed z.iso.datetime and already has the normal form
 * (`YYYY-MM-DDTHH:MM:SS.mmmZ`, 24 characters) is its own normalisation: the
 * ISO check has proven the date and time fields valid (leap days included,
 * no leap seconds), so `new Date(s).toISOString()` would return `s`. Skipping
 * the Date round trip saves about a microsecond per timestamp.
 */
const normaliseTimestamp = (s: string): string =>
  s.length === 24 && s.charCodeAt(19) === 0x2e && s.charCodeAt(23) === 0x5a ? s : new Date(s).toISOString();

/**
 * RFC 3339 timestamps with any offset, normalised to UTC ISO with ms, so that
 * equal instants compare equal and Avro's timestamp-millis round-trips exactly.
 */
export const timestamp = z.iso.datetime({ offset: true }).transform(normaliseTimestamp);
/**
 * A time window's bounds in order: compared as instants, not as text — a
 * normalised time past the year 9999 is written `+010000-…`, which sorts
 * before `9999-…` as a string.
 */
export const windowInOrder = (q: { from?: string | undefined; to?: string | undefined }): boolean =>
  q.from === undefined || q.to === undefined || Date.parse(q.from) < Date.parse(q.to);

export const TIERS = ['trusted', 'degraded', 'restricted', 'revoked'] as const;
export const tierSchema = z.enum(TIERS);
export type Tier = z.infer<typeof tierSchema>;

export const chainLinkSchema = z.strictObject({
  kind: z.enum(['human', 'agent', 'service']),
  id,
  version: id.optional(),
  owner: id.optional(),
});
export type ChainLink = z.infer<typeof chainLinkSchema>;

export const chainSchema = z.array(chainLinkSchema).min(1).max(LIMITS.chain);

export const tokenSchema = z.strictObject({
  jti: id,
  scopes: z.array(id).max(LIMITS.list),
  audience: id.optional(),
  issued_at: timestamp.optional(),
  expires_at: timestamp.optional(),
  trust_level: tierSchema.optional(),
  consent_ref: id.optional(),
  policy_version: id.optional(),
});
export type Token = z.infer<typeof tokenSchema>;

export const intentSchema = z.strictObject({
  task_class: id.optional(),
  statement: text.optional(),
});

export const requestSchema = z.strictObject({
  tool: id,
  action: id,
  resource: z.string().max(LIMITS.text),
  args_digest: digest.optional(),
});

export const EFFECTS = ['allow', 'deny', 'step_up'] as const;
export const effectSchema = z.enum(EFFECTS);
export type Effect = z.infer<typeof effectSchema>;

export const decisionBodySchema = z.strictObject({
  effect: effectSchema,
  policy_id: id,
  policy_version: id.optional(),
  rule_id: id.optional(),
  reasons: z.array(text).max(LIMITS.list).default([]),
  trust_version: z.number().int().min(0).optional(),
  pdp_id: id.optional(),
  latency_us: z.number().int().min(0).optional(),
});

export const OUTCOMES = ['executed', 'blocked', 'failed', 'pending_approval'] as const;
export const outcomeSchema = z.strictObject({
  status: z.enum(OUTCOMES),
  detail: text.optional(),
});

export const provenanceSchema = z.strictObject({
  model: id.optional(),
  prompt_digest: digest.optional(),
  output_digest: digest.optional(),
  tool_schema_digest: digest.optional(),
});

/** Fields every event carries. `emitted_by` is stamped by ingest from the caller's token. */
const envelope = {
  event_id: uuid,
  tenant_id: id,
  occurred_at: timestamp,
  emitted_by: id.optional(),
};

export const decisionEventSchema = z.strictObject({
  type: z.literal('decision'),
  ...envelope,
  session_id: id,
  chain: chainSchema,
  token: tokenSchema.optional(),
  intent: intentSchema.optional(),
  request: requestSchema,
  decision: decisionBodySchema,
  outcome: outcomeSchema.optional(),
  provenance: provenanceSchema.optional(),
});
export type DecisionEvent = z.infer<typeof decisionEventSchema>;

const signal = <K extends string, S extends z.ZodRawShape>(kind: K, shape: S) =>
  z.strictObject({ type: z.literal('signal'), kind: z.literal(kind), ...envelope, ...shape });

export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;

export const freezeScopeSchema = z.strictObject({
  resource_prefix: z.string().min(1).max(LIMITS.text).optional(),
  actions: z.array(id).min(1).max(LIMITS.list).optional(),
  agent_id: id.optional(),
});
export type FreezeScope = z.infer<typeof freezeScopeSchema>;

export const signalSchemas = {
  session_started: signal('session_started', {
    session_id: id,
    chain: chainSchema,
    token: tokenSchema.optional(),
    intent: intentSchema.optional(),
  }),
  session_ended: signal('session_ended', { session_id: id, reason: text.optional() }),
  injection_detected: signal('injection_detected', {
    session_id: id,
    signal_id: id,
    severity: z.enum(SEVERITIES),
    detector: id,
    expires_at: timestamp.optional(),
    detail: text.optional(),
  }),
  trust_set: signal('trust_set', {
    session_id: id,
    tier: tierSchema,
    reason: text,
    set_by: id,
    expires_at: timestamp.optional(),
  }),
  role_revoked: signal('role_revoked', { user_id: id, role: id, reason: text.optional() }),
  role_granted: signal('role_granted', { user_id: id, role: id }),
  consent_revoked: signal('consent_revoked', { user_id: id, consent_ref: id.optional() }),
  consent_granted: signal('consent_granted', { user_id: id, consent_ref: id.optional() }),
  change_freeze_raised: signal('change_freeze_raised', {
    freeze_id: id,
    scope: freezeScopeSchema,
    reason: text,
    raised_by: id,
    ticket: id.optional(),
    expires_at: timestamp.optional(),
  }),
  change_freeze_lifted: signal('change_freeze_lifted', {
    freeze_id: id,
    lifted_by: id,
    reason: text.optional(),
  }),
  step_up_requested: signal('step_up_requested', {
    session_id: id,
    request_id: id,
    scope: text,
    approver: id.optional(),
  }),
  step_up_resolved: signal('step_up_resolved', {
    session_id: id,
    request_id: id,
    scope: text.optional(),
    approver: id.optional(),
    granted: z.boolean(),
  }),
  token_issued: signal('token_issued', {
    jti: id,
    user_id: id,
    agent_id: id,
    scopes: z.array(id).max(LIMITS.list),
    expires_at: timestamp,
    session_id: id.optional(),
    audience: id.optional(),
    consent_ref: id.optional(),
  }),
} as const;

export type SignalKind = keyof typeof signalSchemas;
export const SIGNAL_KINDS = Object.keys(signalSchemas) as SignalKind[];

export const signalEventSchema = z.discriminatedUnion('kind', [
  signalSchemas.session_started,
  signalSchemas.session_ended,
  signalSchemas.injection_detected,
  signalSchemas.trust_set,
  signalSchemas.role_revoked,
  signalSchemas.role_granted,
  signalSchemas.consent_revoked,
  signalSchemas.consent_granted,
  signalSchemas.change_freeze_raised,
  signalSchemas.change_freeze_lifted,
  signalSchemas.step_up_requested,
  signalSchemas.step_up_resolved,
  signalSchemas.token_issued,
]);
export type SignalEvent = z.infer<typeof signalEventSchema>;
export type SignalOf<K extends SignalKind> = Extract<SignalEvent, { kind: K }>;

export const eventSchema = z.discriminatedUnion('type', [decisionEventSchema, signalEventSchema]);
export type TrustfoldEvent = z.infer<typeof eventSchema>;
/** What a producer writes before normalisation (timestamps in any RFC 3339 offset, defaults unset). */
export type TrustfoldEventInput = z.input<typeof eventSchema>;

/** The trust state PDPs receive (docs/design.md#trust-state). */
export const trustCauseSchema = z.strictObject({
  kind: z.string().max(LIMITS.id),
  ref: id,
  event_id: uuid,
  since: timestamp,
  tier: tierSchema,
  expires_at: timestamp.optional(),
});
export type TrustCause = z.infer<typeof trustCauseSchema>;

export const activeFreezeSchema = z.strictObject({
  freeze_id: id,
  scope: freezeScopeSchema,
  reason: text,
  raised_by: id.optional(),
  ticket: id.optional(),
  event_id: uuid.optional(),
  since: timestamp.optional(),
  expires_at: timestamp.optional(),
});
export type ActiveFreeze = z.infer<typeof activeFreezeSchema>;

export const sessionTrustSchema = z.strictObject({
  session_id: id,
  tenant_id: id,
  version: z.number().int().min(0),
  tier: tierSchema,
  delegator: id.optional(),
  agent: id.optional(),
  agent_version: id.optional(),
  consent_ref: id.optional(),
  causes: z.array(trustCauseSchema),
  revoked_roles: z.array(id),
  consent_revoked: z.boolean(),
  freezes: z.array(activeFreezeSchema),
  ended: z.boolean(),
  updated_at: timestamp,
  caused_by: uuid,
});
export type SessionTrust = z.infer<typeof sessionTrustSchema>;

/** The first human in the chain is the delegator; the last agent the acting agent. */
export const delegatorOf = (chain: readonly ChainLink[]): ChainLink | undefined =>
  chain.find((l) => l.kind === 'human');
export const actingAgentOf = (chain: readonly ChainLink[]): ChainLink | undefined =>
  chain.findLast((l) => l.kind === 'agent');
