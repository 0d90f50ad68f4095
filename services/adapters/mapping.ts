// Pure mapping from what a policy engine logs to trustfold decision events.
// No Kafka, no clock, no I/O: the source entry, the tenant and the
// convention go in, decisions come out (STYLE.md habits 1 and 2).
//
// A convention says, for each trustfold field, which paths of the engine's
// record to try, in order; the first path holding a usable value wins. The
// defaults below are the documented convention (services/adapters/README.md);
// deployments override any field with TRUSTFOLD_ADAPTER_MAPPING_CERBOS / _OPA.
//
// An entry is never dropped for lack of a field. What cannot be found gets a
// visible placeholder, the decision's reasons end with one marker
// `trustfold:unmapped=<field>,<field>`, and `missing` lists the fields so the
// caller can count them in /metrics.
import { createHash } from 'node:crypto';
import {
  decisionEventSchema,
  LIMITS,
  TIERS,
  type ChainLink,
  type DecisionEvent,
  type Effect,
  type Tier,
} from '../../schemas/events.ts';
import { err, ok, type Result } from '../../schemas/result.ts';
import { zodIssues } from '../../schemas/codec.ts';

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

export type Mapped = { event: DecisionEvent; missing: StoryField[] };

// --- value access -----------------------------------------------------------

// Conventions are a few dozen paths read for every decision: split each once.
const splitPaths = new Map<string, readonly string[]>();
const keysOf = (path: string): readonly string[] => {
  let keys = splitPaths.get(path);
  if (keys === undefined) {
    keys = path.split('.');
    if (splitPaths.size < 10_000) splitPaths.set(path, keys);
  }
  return keys;
};

export const valueAt = (root: unknown, path: string): unknown => {
  let cur: unknown = root;
  if (path === '' || path === '.') return cur;
  for (const key of keysOf(path)) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    if (!Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
};

const clip = (s: string, max: number): string => (s.length > max ? s.slice(0, max) : s);

const scalarText = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim();
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
};

const first = <T>(root: unknown, paths: Paths, as: (v: unknown) => T | undefined): T | undefined => {
  for (const p of paths) {
    const v = as(valueAt(root, p));
    if (v !== undefined) return v;
  }
  return undefined;
};

const asId = (v: unknown): string | undefined => {
  const s = scalarText(v);
  return s === undefined ? undefined : clip(s, LIMITS.id);
};
const asText = (v: unknown): string | undefined => {
  const s = scalarText(v);
  return s === undefined ? undefined : clip(s, LIMITS.text);
};
const asList = (v: unknown): string[] | undefined => {
  const items = Array.isArray(v) ? v.map(scalarText) : typeof v === 'string' ? v.split(/[\s,]+/) : undefined;
  if (items === undefined) return undefined;
  const out = items.filter((x): x is string => x !== undefined && x !== '').map((x) => clip(x, LIMITS.id));
  return out.length === 0 ? undefined : out.slice(0, LIMITS.list);
};
/** RFC 3339 text, or a JWT NumericDate (seconds), or epoch milliseconds. */
export const asTime = (v: unknown): string | undefined => {
  let ms: number;
  if (typeof v === 'number' && Number.isFinite(v)) ms = v < 1e11 ? v * 1000 : v;
  else if (typeof v === 'string' && v.trim() !== '') ms = /^\d+(\.\d+)?$/.test(v.trim()) ? asSeconds(Number(v)) : Date.parse(v);
  else return undefined;
  if (!Number.isFinite(ms)) return undefined;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1970 || d.getUTCFullYear() > 9999 ? undefined : d.toISOString();
};
const asSeconds = (n: number): number => (n < 1e11 ? n * 1000 : n);
const asInt = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
};
const asTier = (v: unknown): Tier | undefined => {
  const s = scalarText(v)?.toLowerCase();
  return (TIERS as readonly string[]).includes(s ?? '') ? (s as Tier) : undefined;
};

const ALLOW = new Set(['allow', 'allowed', 'permit', 'true', 'effect_allow']);
const DENY = new Set(['deny', 'denied', 'forbid', 'false', 'effect_deny', 'effect_no_match']);
const STEP_UP = new Set(['step_up', 'stepup', 'step-up', 'challenge']);
export const asEffect = (v: unknown): Effect | undefined => {
  if (typeof v === 'boolean') return v ? 'allow' : 'deny';
  if (typeof v !== 'string') return undefined;
  const s = v.trim().toLowerCase();
  if (ALLOW.has(s)) return 'allow';
  if (DENY.has(s)) return 'deny';
  if (STEP_UP.has(s)) return 'step_up';
  return undefined;
};

const reasonsFrom = (v: unknown): string[] => {
  if (typeof v === 'string') return v.trim() === '' ? [] : [clip(v, LIMITS.text)];
  if (Array.isArray(v)) return v.flatMap((x) => reasonsFrom(typeof x === 'object' && x !== null ? (valueAt(x, 'msg') ?? valueAt(x, 'reason')) : x));
  // OPA sets of messages arrive as arrays; an object map of messages as its values.
  if (v !== null && typeof v === 'object') return Object.values(v).flatMap((x) => (typeof x === 'string' ? reasonsFrom(x) : []));
  return [];
};

/** Canonical JSON (sorted keys), so equal arguments hash equal whatever the key order. */
export const canonicalJson = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
};

const digestOf = (v: unknown): string => `sha256:${createHash('sha256').update(canonicalJson(v)).digest('hex')}`;

/**
 * A deterministic event id: a UUID (version 8, RFC 9562 "custom") made of the
 * first 128 bits of SHA-256 over the source's own identity. The same log
 * entry, redelivered or re-uploaded, always yields the same id, so the
 * pipeline sees a duplicate and never a second decision.
 */
export const deterministicId = (...parts: readonly string[]): string => {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x80;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
};

// --- shared assembly ----------------------------------------------------------

type Decided = {
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

const assemble = (a: Assembly): Result<Mapped, string> => {
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

// --- Cerbos -------------------------------------------------------------------

/** The parts of a Cerbos `DecisionLogEntry` (protojson, lowerCamelCase) this mapping reads. */
export type CerbosCheckInput = {
  requestId?: string;
  resource?: { kind?: string; id?: string; policyVersion?: string; scope?: string; attr?: Record<string, unknown> };
  principal?: { id?: string; roles?: string[]; policyVersion?: string; scope?: string; attr?: Record<string, unknown> };
  actions?: string[];
  auxData?: { jwt?: Record<string, unknown> };
};
export type CerbosActionEffect = { effect?: string; policy?: string; scope?: string };
export type CerbosCheckOutput = {
  requestId?: string;
  resourceId?: string;
  actions?: Record<string, CerbosActionEffect>;
  effectiveDerivedRoles?: string[];
  validationErrors?: { path?: string; message?: string; source?: string }[];
  outputs?: { src?: string; val?: unknown; action?: string }[];
};
export type CerbosDecisionLogEntry = {
  callId: string;
  timestamp?: string;
  peer?: Record<string, unknown>;
  checkResources?: { inputs?: CerbosCheckInput[]; outputs?: CerbosCheckOutput[]; error?: string };
  planResources?: unknown;
  /** Deprecated top-level form written by older Cerbos versions. */
  inputs?: CerbosCheckInput[];
  outputs?: CerbosCheckOutput[];
  error?: string;
  metadata?: Record<string, { values?: string[] }>;
  auditTrail?: { effectivePolicies?: Record<string, unknown> };
  policySource?: unknown;
  requestContext?: { annotations?: Record<string, unknown> };
};

export type CerbosMappingOptions = {
  convention: CerbosConvention;
  /** Used when no tenant path matches (single-tenant deployments). */
  defaultTenant: string;
  pdpId: string;
  emittedBy: string;
};

/** `resource.git.vdefault/acme.team` → version `default`; Cerbos names the version in the policy id. */
const cerbosPolicyVersion = (policy: string | undefined): string | undefined => {
  const m = policy === undefined ? null : /\.v([^./]+)(?:\/|$)/.exec(policy);
  return m?.[1];
};

const cerbosRuleOutputs = (out: CerbosCheckOutput | undefined, action: string) =>
  (out?.outputs ?? []).filter((o) => o.action === action);

/**
 * One decision per resource × action of a CheckResources call. Rule outputs
 * carry the rule name (`src: resource.git.vdefault#rule-name`) and, by
 * convention, reasons: a string output is a reason; an object output's
 * `reason` is; `{"effect": "step_up"}` turns the decision into a step-up.
 */
export const mapCerbosEntry = (entry: CerbosDecisionLogEntry, opts: CerbosMappingOptions): { mapped: Mapped[]; failures: string[] } => {
  const check = entry.checkResources ?? { inputs: entry.inputs ?? [], outputs: entry.outputs ?? [], error: entry.error ?? '' };
  const inputs = check.inputs ?? [];
  const outputs = check.outputs ?? [];
  const occurredAt = entry.timestamp === undefined ? undefined : asTime(entry.timestamp);
  const annotations = entry.requestContext?.annotations ?? {};
  const metadata = Object.fromEntries(Object.entries(entry.metadata ?? {}).map(([k, v]) => [k, v.values?.[0]]));
  const mapped: Mapped[] = [];
  const failures: string[] = [];

  inputs.forEach((input, i) => {
    const resourceId = input.resource?.id;
    const out = outputs[i]?.resourceId === resourceId ? outputs[i] : outputs.find((o) => o.resourceId === resourceId);
    const actions = [...new Set([...(input.actions ?? []), ...Object.keys(out?.actions ?? {})])];
    for (const action of actions) {
      const root = { principal: input.principal, resource: input.resource, action, auxData: input.auxData, annotations, metadata, peer: entry.peer };
      const tenant = first(root, opts.convention.tenant, asId) ?? opts.defaultTenant;
      const ae = out?.actions?.[action];
      const ruleOutputs = cerbosRuleOutputs(out, action);
      let effect = asEffect(ae?.effect);
      const reasons: string[] = [];
      if (ae?.effect === 'EFFECT_NO_MATCH') reasons.push('cerbos: no policy matched (EFFECT_NO_MATCH)');
      let ruleId: string | undefined;
      for (const o of ruleOutputs) {
        ruleId ??= asId(o.src?.split('#')[1]);
        const val = o.val;
        if (typeof val === 'string') {
          if (asEffect(val) === 'step_up') effect = 'step_up';
          else reasons.push(clip(val, LIMITS.text));
        } else if (val !== null && typeof val === 'object') {
          if (asEffect(valueAt(val, 'effect')) === 'step_up') effect = 'step_up';
          reasons.push(...reasonsFrom(valueAt(val, 'reason')), ...reasonsFrom(valueAt(val, 'reasons')));
          ruleId = asId(valueAt(val, 'rule_id')) ?? ruleId;
        }
      }
      for (const v of out?.validationErrors ?? []) reasons.push(clip(`cerbos validation: ${v.path ?? ''}: ${v.message ?? ''}`, LIMITS.text));
      const policyId = asId(ae?.policy);
      const r = assemble({
        engine: 'cerbos',
        eventId: deterministicId('cerbos', entry.callId, String(i), input.resource?.kind ?? '', resourceId ?? '', action),
        tenant,
        emittedBy: opts.emittedBy,
        sourceRef: entry.callId,
        root,
        convention: opts.convention,
        decided: {
          action: asId(action),
          effect,
          policyId,
          policyVersion: asId(input.resource?.policyVersion) ?? cerbosPolicyVersion(policyId),
          ruleId,
          reasons,
          pdpId: opts.pdpId,
          latencyUs: undefined,
          occurredAt,
        },
        // The entry's time is the only clock a replay agrees with; without one, the epoch says "unknown".
        fallbackTime: new Date(0).toISOString(),
      });
      if (r.ok) mapped.push(r.value);
      else failures.push(`input ${i} action ${action}: ${r.error}`);
    }
  });
  return { mapped, failures };
};

// --- OPA ----------------------------------------------------------------------

export type OpaMappingOptions = {
  convention: OpaConvention;
  /** The uploading caller's tenant; `*` (an operator token) means: read it from the event. */
  callerTenant: string;
  defaultTenant: string;
  emittedBy: string;
  /** When the upload was received: used only if the event has no timestamp. */
  receivedAt: string;
};

const bundleVersion = (bundles: unknown): string | undefined => {
  if (bundles === null || typeof bundles !== 'object') return undefined;
  const revs = Object.entries(bundles as Record<string, unknown>)
    .map(([name, b]) => [name, asId(valueAt(b, 'revision'))] as const)
    .filter((x): x is readonly [string, string] => x[1] !== undefined)
    .sort(([a], [b]) => a.localeCompare(b));
  if (revs.length === 0) return undefined;
  if (revs.length === 1) return revs[0]?.[1];
  return clip(revs.map(([n, r]) => `${n}@${r}`).join(','), LIMITS.id);
};

/** One OPA decision-log event → one decision. The id hashes the tenant and OPA's `decision_id`. */
export const mapOpaEvent = (ev: Record<string, unknown>, opts: OpaMappingOptions): Result<Mapped, string> => {
  const c = opts.convention;
  const tenant =
    opts.callerTenant === '*' ? (first(ev, c.tenant, asId) ?? opts.defaultTenant) : opts.callerTenant;
  const decisionId = asId(ev['decision_id']);
  const reasons = c.reasons.flatMap((p) => reasonsFrom(valueAt(ev, p))).slice(0, LIMITS.list - 8);
  const error = ev['error'];
  if (error !== undefined && error !== null) {
    reasons.push(clip(`opa error: ${typeof error === 'string' ? error : canonicalJson(error)}`, LIMITS.text));
  }
  for (const [field, label] of [['erased', 'erased'], ['masked', 'masked']] as const) {
    const list = asList(ev[field]);
    if (list !== undefined) reasons.push(clip(`opa ${label}: ${list.join(' ')}`, LIMITS.text));
  }
  const serverNs = asInt(valueAt(ev, 'metrics.timer_server_handler_ns')) ?? asInt(valueAt(ev, 'metrics.timer_rego_query_eval_ns'));
  const policyId = first(ev, c.policyId, asId);
  return assemble({
    engine: 'opa',
    eventId: deterministicId('opa', tenant, decisionId ?? canonicalJson(ev)),
    tenant,
    emittedBy: opts.emittedBy,
    sourceRef: decisionId ?? deterministicId('opa-ref', canonicalJson(ev)),
    root: ev,
    convention: c,
    decided: {
      action: first(ev, c.action, asId),
      effect: first(ev, c.effect, asEffect),
      policyId,
      policyVersion: first(ev, c.policyVersion, asId) ?? bundleVersion(ev['bundles']),
      ruleId: first(ev, c.ruleId, asId),
      reasons,
      pdpId: asId(valueAt(ev, 'labels.id')),
      latencyUs: serverNs === undefined ? undefined : Math.round(serverNs / 1000),
      occurredAt: asTime(ev['timestamp']),
    },
    fallbackTime: opts.receivedAt,
  });
};
