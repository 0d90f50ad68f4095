// The conventions: for each trustfold field, which paths of an engine's record
// to try, in order; the first path holding a usable value wins. The defaults
// are the documented convention (services/adapters/README.md); deployments
// override any field with TRUSTFOLD_ADAPTER_MAPPING_CERBOS / _OPA (../config.ts).

export type Engine = 'cerbos' | 'opa';

/** Dot-separated paths into the engine's record, tried in order. */
export type Paths = readonly string[];

/** Where the delegation chain, token, intent, request and provenance live. */
export type CommonConvention = {
  tenant: Paths;
  session: Paths;
  delegator: Paths;
  agent: Paths;
  agentVersion: Paths;
  agentOwner: Paths;
  tokenJti: Paths;
  tokenScopes: Paths;
  tokenAudience: Paths;
  tokenIssuedAt: Paths;
  tokenExpiresAt: Paths;
  tokenTrustLevel: Paths;
  tokenPolicyVersion: Paths;
  consentRef: Paths;
  taskClass: Paths;
  intentStatement: Paths;
  tool: Paths;
  resource: Paths;
  argsDigest: Paths;
  /** Raw arguments: hashed (sha256 of canonical JSON) when no digest is given; never stored in clear. */
  args: Paths;
  trustVersion: Paths;
  model: Paths;
  promptDigest: Paths;
  outputDigest: Paths;
  toolSchemaDigest: Paths;
};

/** Cerbos says effect, policy and rule itself; the rest comes from the principal, resource, JWT and annotations. */
export type CerbosConvention = CommonConvention;

/** OPA's result is whatever the policy returns, so the decision's fields are paths too. */
export type OpaConvention = CommonConvention & {
  action: Paths;
  effect: Paths;
  policyId: Paths;
  policyVersion: Paths;
  ruleId: Paths;
  reasons: Paths;
};

/**
 * Cerbos paths resolve against `{principal, resource, action, auxData, annotations, metadata, peer}`:
 * the principal and resource of the CheckResources input, the JWT claims Cerbos
 * decoded from auxData (`auxData.jwt.*`), the request context annotations, and
 * the gRPC metadata (first value of each key).
 */
export const DEFAULT_CERBOS_CONVENTION: CerbosConvention = {
  tenant: ['principal.attr.tenant_id', 'auxData.jwt.tenant', 'annotations.tenant_id'],
  session: ['principal.attr.session_id', 'auxData.jwt.sid', 'annotations.session_id'],
  delegator: ['principal.attr.delegator', 'auxData.jwt.sub'],
  agent: ['principal.attr.agent_id', 'auxData.jwt.act.sub', 'principal.id'],
  agentVersion: ['principal.attr.agent_version'],
  agentOwner: ['principal.attr.agent_owner'],
  tokenJti: ['principal.attr.token_jti', 'auxData.jwt.jti'],
  tokenScopes: ['principal.attr.token_scopes', 'auxData.jwt.scope', 'auxData.jwt.scp'],
  tokenAudience: ['principal.attr.token_audience', 'auxData.jwt.aud'],
  tokenIssuedAt: ['principal.attr.token_issued_at', 'auxData.jwt.iat'],
  tokenExpiresAt: ['principal.attr.token_expires_at', 'auxData.jwt.exp'],
  tokenTrustLevel: ['principal.attr.token_trust_level', 'auxData.jwt.trust_level'],
  tokenPolicyVersion: ['principal.attr.token_policy_version', 'auxData.jwt.policy_version'],
  consentRef: ['principal.attr.consent_ref', 'auxData.jwt.consent_ref'],
  taskClass: ['principal.attr.task_class', 'annotations.task_class'],
  intentStatement: ['principal.attr.intent', 'annotations.intent'],
  tool: ['resource.attr.tool', 'resource.kind'],
  resource: ['resource.attr.target', 'resource.id'],
  argsDigest: ['resource.attr.args_digest'],
  args: ['resource.attr.args'],
  trustVersion: ['principal.attr.trust_version'],
  model: ['principal.attr.model', 'annotations.model'],
  promptDigest: ['resource.attr.prompt_digest', 'annotations.prompt_digest'],
  outputDigest: ['resource.attr.output_digest', 'annotations.output_digest'],
  toolSchemaDigest: ['resource.attr.tool_schema_digest', 'annotations.tool_schema_digest'],
};

/** OPA paths resolve against the decision-log event itself: `input.*`, `result.*`, `labels.*`, `path`, ... */
export const DEFAULT_OPA_CONVENTION: OpaConvention = {
  tenant: ['input.tenant_id', 'labels.tenant_id'],
  session: ['input.session_id', 'input.token.sid'],
  delegator: ['input.delegator', 'input.token.sub'],
  agent: ['input.agent.id', 'input.agent_id', 'input.token.act.sub'],
  agentVersion: ['input.agent.version', 'input.agent_version'],
  agentOwner: ['input.agent.owner', 'input.agent_owner'],
  tokenJti: ['input.token.jti'],
  tokenScopes: ['input.token.scopes', 'input.token.scope', 'input.token.scp'],
  tokenAudience: ['input.token.aud', 'input.token.audience'],
  tokenIssuedAt: ['input.token.iat', 'input.token.issued_at'],
  tokenExpiresAt: ['input.token.exp', 'input.token.expires_at'],
  tokenTrustLevel: ['input.token.trust_level'],
  tokenPolicyVersion: ['input.token.policy_version'],
  consentRef: ['input.token.consent_ref', 'input.consent_ref'],
  taskClass: ['input.intent.task_class', 'input.task_class'],
  intentStatement: ['input.intent.statement'],
  tool: ['input.tool', 'input.request.tool'],
  resource: ['input.resource', 'input.request.resource'],
  argsDigest: ['input.args_digest', 'input.request.args_digest'],
  args: ['input.args', 'input.request.args'],
  trustVersion: ['input.trust.version', 'input.trust_version'],
  model: ['input.provenance.model'],
  promptDigest: ['input.provenance.prompt_digest'],
  outputDigest: ['input.provenance.output_digest'],
  toolSchemaDigest: ['input.provenance.tool_schema_digest'],
  action: ['input.action', 'input.request.action'],
  effect: ['result.effect', 'result.decision', 'result.allow', 'result'],
  policyId: ['result.policy_id', 'path'],
  policyVersion: ['result.policy_version'],
  ruleId: ['result.rule_id', 'result.rule'],
  reasons: ['result.reasons', 'result.reason', 'result.deny'],
};

/** The fields a responder's story needs; when one is not found it is listed as missing. */
export const STORY_FIELDS = ['session_id', 'delegator', 'agent', 'tool', 'action', 'resource', 'effect', 'policy_id', 'occurred_at'] as const;
export type StoryField = (typeof STORY_FIELDS)[number];

export const UNMAPPED_MARKER = 'trustfold:unmapped=';
export const UNMAPPED = 'unmapped';
