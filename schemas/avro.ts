// Avro schemas: the wire contract on Kafka. One record per event type, all in
// the `trustfold.v1` namespace. They are the source for schemas/avro/*.avsc
// (written by `npm run schemas:export` for consumers in other languages;
// test/unit/avro-files.test.ts fails if the files drift from this module).
//
// Evolution rules (docs/design.md, "Evolution"): add fields only as optional
// (`["null", T]`, default null) or with a default; never rename or remove;
// every enum carries a `default` symbol, and a symbol is only ever added, never
// removed or reordered. Every schema a writer ever used is kept in
// PREVIOUS_SCHEMAS so a reader can resolve old bytes by fingerprint.
//
// Enum defaults: what a reader on this version reads when a newer writer sends
// a symbol it does not know (Avro 1.9+ enum resolution). Each is the symbol that
// fails closed: an unknown tier or severity reads as the most restrictive one,
// an unknown effect as a deny, an unknown chain-link kind as a `service` (never
// taken for the delegating human or the acting agent), an unknown outcome as
// `executed` (a responder over-counts what may have run rather than hiding it).
// Defaults are not part of the Parsing Canonical Form, so adding them did not
// change a fingerprint.
/** A plain Avro schema (JSON); parsed into avsc types by schemas/codec.ts. */
export type Schema = string | Schema[] | { readonly type: string | Schema[]; readonly [attr: string]: unknown };

const NS = 'trustfold.v1';
type Field = { name: string; type: Schema; default?: unknown; doc?: string };

const str = 'string' as const;
const ts = { type: 'long', logicalType: 'timestamp-millis' } as const;
const opt = (name: string, type: Schema, doc?: string): Field =>
  doc === undefined
    ? { name, type: ['null', type], default: null }
    : { name, type: ['null', type], default: null, doc };
const req = (name: string, type: Schema, doc?: string): Field =>
  doc === undefined ? { name, type } : { name, type, doc };
const strings: Schema = { type: 'array', items: 'string' };

const enumType = (name: string, symbols: readonly string[], fallback: string, doc: string): Schema => ({
  type: 'enum',
  name: `${NS}.${name}`,
  doc,
  symbols: [...symbols],
  default: fallback,
});
const recordType = (name: string, fields: readonly Field[], doc?: string): Schema =>
  doc === undefined
    ? { type: 'record', name: `${NS}.${name}`, fields: [...fields] }
    : { type: 'record', name: `${NS}.${name}`, doc, fields: [...fields] };

// Named types are written out in full wherever they are used; `defineOnce`
// keeps the first definition of each name and turns every later one into a
// reference by name — per schema for the codec (each schema self-contained),
// across the folder for the exported files (COMMON_TYPES live in common.avsc).
const isNamedDefinition = (s: Schema): s is { type: string; name: string; [attr: string]: unknown } =>
  typeof s === 'object' &&
  !Array.isArray(s) &&
  typeof s.name === 'string' &&
  (s.type === 'record' || s.type === 'enum' || s.type === 'fixed');

export const defineOnce = (schema: Schema, defined: Set<string>): Schema => {
  if (typeof schema === 'string') return schema;
  if (Array.isArray(schema)) return schema.map((s) => defineOnce(s, defined));
  if (isNamedDefinition(schema)) {
    if (defined.has(schema.name)) return schema.name;
    defined.add(schema.name);
  }
  const out: Record<string, unknown> = { ...schema };
  if (Array.isArray(schema.fields)) {
    out.fields = (schema.fields as Field[]).map((f) => ({ ...f, type: defineOnce(f.type, defined) }));
  }
  if (schema.items !== undefined) out.items = defineOnce(schema.items as Schema, defined);
  if (schema.values !== undefined) out.values = defineOnce(schema.values as Schema, defined);
  if (Array.isArray(schema.type)) out.type = defineOnce(schema.type, defined);
  return out as Schema;
};

const Tier = enumType(
  'Tier',
  ['trusted', 'degraded', 'restricted', 'revoked'],
  'revoked',
  'Lowest risk first. Unknown symbols read as revoked: a newer tier never loosens an older reader.',
);

const ChainLink = recordType('ChainLink', [
  req(
    'kind',
    enumType(
      'ChainLinkKind',
      ['human', 'agent', 'service'],
      'service',
      'Unknown symbols read as service: never taken for the delegator (first human) or the acting agent (last agent).',
    ),
  ),
  req('id', str),
  opt('version', str),
  opt('owner', str),
]);

const Token = recordType('Token', [
  req('jti', str),
  req('scopes', strings),
  opt('audience', str),
  opt('issued_at', ts),
  opt('expires_at', ts),
  opt('trust_level', Tier),
  opt('consent_ref', str),
  opt('policy_version', str),
]);

const Intent = recordType('Intent', [opt('task_class', str), opt('statement', str)]);

const FreezeScope = recordType('FreezeScope', [
  opt('resource_prefix', str),
  opt('actions', strings),
  opt('agent_id', str),
]);

/**
 * Named types used by more than one schema, in dependency order (each refers
 * only to types before it). Exported once, as schemas/avro/common.avsc.
 */
export const COMMON_TYPES: readonly Schema[] = [Tier, ChainLink, Token, Intent, FreezeScope];

const envelope = (type: 'decision' | 'signal', kind?: string): Field[] => [
  req('type', str, `always "${type}"`),
  ...(kind === undefined ? [] : [req('kind', str, `always "${kind}"`)]),
  req('event_id', str, 'UUID, the idempotency key'),
  req('tenant_id', str),
  req('occurred_at', ts),
  opt('emitted_by', str, 'sub of the token that ingested the event'),
];

/** A top-level schema: self-contained, each named type defined at its first use. */
const record = (name: string, fields: Field[], doc: string): Schema =>
  defineOnce({ type: 'record', name: `${NS}.${name}`, doc, fields }, new Set());

const decision = (): Schema =>
  record(
    'Decision',
    [
      ...envelope('decision'),
      req('session_id', str),
      req('chain', { type: 'array', items: ChainLink }),
      opt('token', Token),
      opt('intent', Intent),
      req('request', recordType('Request', [req('tool', str), req('action', str), req('resource', str), opt('args_digest', str)])),
      req(
        'decision',
        recordType('DecisionBody', [
          req(
            'effect',
            enumType('Effect', ['allow', 'deny', 'step_up'], 'deny', 'Unknown symbols read as deny: never as a permission.'),
          ),
          req('policy_id', str),
          opt('policy_version', str),
          opt('rule_id', str),
          req('reasons', strings),
          opt('trust_version', 'long'),
          opt('pdp_id', str),
          opt('latency_us', 'long'),
        ]),
      ),
      opt(
        'outcome',
        recordType('Outcome', [
          req(
            'status',
            enumType(
              'OutcomeStatus',
              ['executed', 'blocked', 'failed', 'pending_approval'],
              'executed',
              'Unknown symbols read as executed: a call that may have run is never hidden as blocked.',
            ),
          ),
          opt('detail', str),
        ]),
      ),
      opt(
        'provenance',
        recordType('Provenance', [
          opt('model', str),
          opt('prompt_digest', str),
          opt('output_digest', str),
          opt('tool_schema_digest', str),
        ]),
      ),
    ],
    'One policy decision on one tool call, with its delegation chain.',
  );

const signal = (name: string, kind: string, doc: string, fields: Field[]): Schema =>
  record(name, [...envelope('signal', kind), ...fields], doc);

/** Avro schema per event type, keyed by `decision` or the signal kind. */
export const EVENT_SCHEMAS = {
  decision: decision(),
  session_started: signal('SessionStarted', 'session_started', 'A session began.', [
    req('session_id', str),
    req('chain', { type: 'array', items: ChainLink }),
    opt('token', Token),
    opt('intent', Intent),
  ]),
  session_ended: signal('SessionEnded', 'session_ended', 'A session ended.', [
    req('session_id', str),
    opt('reason', str),
  ]),
  injection_detected: signal('InjectionDetected', 'injection_detected', 'A detector flagged prompt injection.', [
    req('session_id', str),
    req('signal_id', str),
    req(
      'severity',
      enumType(
        'Severity',
        ['low', 'medium', 'high', 'critical'],
        'critical',
        'Unknown symbols read as critical: a newer severity never loosens an older reader.',
      ),
    ),
    req('detector', str),
    opt('expires_at', ts),
    opt('detail', str),
  ]),
  trust_set: signal('TrustSet', 'trust_set', 'SOC override of a session tier.', [
    req('session_id', str),
    req('tier', Tier),
    req('reason', str),
    req('set_by', str),
    opt('expires_at', ts),
  ]),
  role_revoked: signal('RoleRevoked', 'role_revoked', 'A user lost a role.', [
    req('user_id', str),
    req('role', str),
    opt('reason', str),
  ]),
  role_granted: signal('RoleGranted', 'role_granted', 'A user (re)gained a role.', [
    req('user_id', str),
    req('role', str),
  ]),
  consent_revoked: signal('ConsentRevoked', 'consent_revoked', 'A user revoked consent.', [
    req('user_id', str),
    opt('consent_ref', str),
  ]),
  consent_granted: signal('ConsentGranted', 'consent_granted', 'A user restored consent.', [
    req('user_id', str),
    opt('consent_ref', str),
  ]),
  change_freeze_raised: signal('ChangeFreezeRaised', 'change_freeze_raised', 'The SOC raised a change freeze.', [
    req('freeze_id', str),
    req('scope', FreezeScope),
    req('reason', str),
    req('raised_by', str),
    opt('ticket', str),
    opt('expires_at', ts),
  ]),
  change_freeze_lifted: signal('ChangeFreezeLifted', 'change_freeze_lifted', 'The SOC lifted a change freeze.', [
    req('freeze_id', str),
    req('lifted_by', str),
    opt('reason', str),
  ]),
  step_up_requested: signal('StepUpRequested', 'step_up_requested', 'A PDP asked for step-up approval.', [
    req('session_id', str),
    req('request_id', str),
    req('scope', str),
    opt('approver', str),
  ]),
  step_up_resolved: signal('StepUpResolved', 'step_up_resolved', 'A step-up request was answered.', [
    req('session_id', str),
    req('request_id', str),
    opt('scope', str),
    opt('approver', str),
    req('granted', 'boolean'),
  ]),
  token_issued: signal('TokenIssued', 'token_issued', 'A token was issued for a delegation.', [
    req('jti', str),
    req('user_id', str),
    req('agent_id', str),
    req('scopes', strings),
    req('expires_at', ts),
    opt('session_id', str),
    opt('audience', str),
    opt('consent_ref', str),
  ]),
} as const satisfies Record<string, Schema>;

export type EventSchemaKey = keyof typeof EVENT_SCHEMAS;

/** The per-session trust state published on the compacted session-trust topic. */
export const SESSION_TRUST_SCHEMA: Schema = record(
  'SessionTrust',
  [
    req('session_id', str),
    req('tenant_id', str),
    req('version', 'long'),
    req('tier', Tier),
    opt('delegator', str),
    opt('agent', str),
    opt('agent_version', str),
    opt('consent_ref', str),
    req('causes', {
      type: 'array',
      items: recordType('TrustCause', [
        req('kind', str),
        req('ref', str),
        req('event_id', str),
        req('since', ts),
        req('tier', Tier),
        opt('expires_at', ts),
      ]),
    }),
    req('revoked_roles', strings),
    req('consent_revoked', 'boolean'),
    req('freezes', {
      type: 'array',
      items: recordType('ActiveFreeze', [
        req('freeze_id', str),
        req('scope', FreezeScope),
        req('reason', str),
        opt('raised_by', str),
        opt('ticket', str),
        opt('event_id', str),
        opt('since', ts),
        opt('expires_at', ts),
      ]),
    }),
    req('ended', 'boolean'),
    req('updated_at', ts),
    req('caused_by', str, 'event_id of the event that produced this version'),
  ],
  'Trust state of one session, as PDPs see it.',
);

/**
 * Writer schemas of earlier versions, by the key of the current one. Empty
 * while v1 is the only version; a reader resolves any of these by fingerprint.
 */
export const PREVIOUS_SCHEMAS: Partial<Record<EventSchemaKey | 'session_trust', readonly Schema[]>> = {};
