// Avro schemas: the wire contract on Kafka. One record per event type, all in
// the `trustfold.v1` namespace. They are the source for schemas/avro/*.avsc
// (written by `npm run schemas:export` for consumers in other languages;
// test/unit/avro-files.test.ts fails if the files drift from this module).
//
// Evolution rules: add fields only as optional (`["null", T]`, default null)
// or with a default; never rename or remove. Every schema a writer ever used is
// kept in PREVIOUS_SCHEMAS so a reader can resolve old bytes by fingerprint.
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

const tierEnum = {
  type: 'enum',
  name: `${NS}.Tier`,
  symbols: ['trusted', 'degraded', 'restricted', 'revoked'],
} as const;

// Named types are defined in full at their first use inside one schema and
// referenced by name afterwards; `inline` tracks that per schema.
type Named = { name: string; schema: Schema };
const named = (name: string, fields: readonly Field[]): Named => ({
  name: `${NS}.${name}`,
  schema: { type: 'record', name: `${NS}.${name}`, fields: [...fields] },
});

class SchemaBuilder {
  private readonly seen = new Set<string>();
  use(n: Named): Schema {
    if (this.seen.has(n.name)) return n.name;
    this.seen.add(n.name);
    return n.schema;
  }
  tier(): Schema {
    return this.use({ name: tierEnum.name, schema: tierEnum });
  }
}

const ChainLink = named('ChainLink', [
  req('kind', { type: 'enum', name: `${NS}.ChainLinkKind`, symbols: ['human', 'agent', 'service'] }),
  req('id', str),
  opt('version', str),
  opt('owner', str),
]);

const tokenNamed = (b: SchemaBuilder): Named =>
  named('Token', [
    req('jti', str),
    req('scopes', strings),
    opt('audience', str),
    opt('issued_at', ts),
    opt('expires_at', ts),
    opt('trust_level', b.tier()),
    opt('consent_ref', str),
    opt('policy_version', str),
  ]);

const Intent = named('Intent', [opt('task_class', str), opt('statement', str)]);

const FreezeScope = named('FreezeScope', [
  opt('resource_prefix', str),
  opt('actions', strings),
  opt('agent_id', str),
]);

const envelope = (type: 'decision' | 'signal', kind?: string): Field[] => [
  req('type', str, `always "${type}"`),
  ...(kind === undefined ? [] : [req('kind', str, `always "${kind}"`)]),
  req('event_id', str, 'UUID, the idempotency key'),
  req('tenant_id', str),
  req('occurred_at', ts),
  opt('emitted_by', str, 'sub of the token that ingested the event'),
];

const record = (name: string, fields: Field[], doc: string): Schema =>
  ({ type: 'record', name: `${NS}.${name}`, doc, fields });

const decision = (): Schema => {
  const b = new SchemaBuilder();
  return record(
    'Decision',
    [
      ...envelope('decision'),
      req('session_id', str),
      req('chain', { type: 'array', items: b.use(ChainLink) }),
      opt('token', b.use(tokenNamed(b))),
      opt('intent', b.use(Intent)),
      req(
        'request',
        b.use(
          named('Request', [req('tool', str), req('action', str), req('resource', str), opt('args_digest', str)]),
        ),
      ),
      req(
        'decision',
        b.use(
          named('DecisionBody', [
            req('effect', { type: 'enum', name: `${NS}.Effect`, symbols: ['allow', 'deny', 'step_up'] }),
            req('policy_id', str),
            opt('policy_version', str),
            opt('rule_id', str),
            req('reasons', strings),
            opt('trust_version', 'long'),
            opt('pdp_id', str),
            opt('latency_us', 'long'),
          ]),
        ),
      ),
      opt(
        'outcome',
        b.use(
          named('Outcome', [
            req('status', {
              type: 'enum',
              name: `${NS}.OutcomeStatus`,
              symbols: ['executed', 'blocked', 'failed', 'pending_approval'],
            }),
            opt('detail', str),
          ]),
        ),
      ),
      opt(
        'provenance',
        b.use(
          named('Provenance', [
            opt('model', str),
            opt('prompt_digest', str),
            opt('output_digest', str),
            opt('tool_schema_digest', str),
          ]),
        ),
      ),
    ],
    'One policy decision on one tool call, with its delegation chain.',
  );
};

const signal = (name: string, kind: string, doc: string, fields: (b: SchemaBuilder) => Field[]): Schema => {
  const b = new SchemaBuilder();
  return record(name, [...envelope('signal', kind), ...fields(b)], doc);
};

/** Avro schema per event type, keyed by `decision` or the signal kind. */
export const EVENT_SCHEMAS = {
  decision: decision(),
  session_started: signal('SessionStarted', 'session_started', 'A session began.', (b) => [
    req('session_id', str),
    req('chain', { type: 'array', items: b.use(ChainLink) }),
    opt('token', b.use(tokenNamed(b))),
    opt('intent', b.use(Intent)),
  ]),
  session_ended: signal('SessionEnded', 'session_ended', 'A session ended.', () => [
    req('session_id', str),
    opt('reason', str),
  ]),
  injection_detected: signal('InjectionDetected', 'injection_detected', 'A detector flagged prompt injection.', () => [
    req('session_id', str),
    req('signal_id', str),
    req('severity', { type: 'enum', name: `${NS}.Severity`, symbols: ['low', 'medium', 'high', 'critical'] }),
    req('detector', str),
    opt('expires_at', ts),
    opt('detail', str),
  ]),
  trust_set: signal('TrustSet', 'trust_set', 'SOC override of a session tier.', (b) => [
    req('session_id', str),
    req('tier', b.tier()),
    req('reason', str),
    req('set_by', str),
    opt('expires_at', ts),
  ]),
  role_revoked: signal('RoleRevoked', 'role_revoked', 'A user lost a role.', () => [
    req('user_id', str),
    req('role', str),
    opt('reason', str),
  ]),
  role_granted: signal('RoleGranted', 'role_granted', 'A user (re)gained a role.', () => [
    req('user_id', str),
    req('role', str),
  ]),
  consent_revoked: signal('ConsentRevoked', 'consent_revoked', 'A user revoked consent.', () => [
    req('user_id', str),
    opt('consent_ref', str),
  ]),
  consent_granted: signal('ConsentGranted', 'consent_granted', 'A user restored consent.', () => [
    req('user_id', str),
    opt('consent_ref', str),
  ]),
  change_freeze_raised: signal('ChangeFreezeRaised', 'change_freeze_raised', 'The SOC raised a change freeze.', (b) => [
    req('freeze_id', str),
    req('scope', b.use(FreezeScope)),
    req('reason', str),
    req('raised_by', str),
    opt('ticket', str),
    opt('expires_at', ts),
  ]),
  change_freeze_lifted: signal('ChangeFreezeLifted', 'change_freeze_lifted', 'The SOC lifted a change freeze.', () => [
    req('freeze_id', str),
    req('lifted_by', str),
    opt('reason', str),
  ]),
  step_up_requested: signal('StepUpRequested', 'step_up_requested', 'A PDP asked for step-up approval.', () => [
    req('session_id', str),
    req('request_id', str),
    req('scope', str),
    opt('approver', str),
  ]),
  step_up_resolved: signal('StepUpResolved', 'step_up_resolved', 'A step-up request was answered.', () => [
    req('session_id', str),
    req('request_id', str),
    opt('scope', str),
    opt('approver', str),
    req('granted', 'boolean'),
  ]),
  token_issued: signal('TokenIssued', 'token_issued', 'A token was issued for a delegation.', () => [
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
export const SESSION_TRUST_SCHEMA: Schema = (() => {
  const b = new SchemaBuilder();
  return record(
    'SessionTrust',
    [
      req('session_id', str),
      req('tenant_id', str),
      req('version', 'long'),
      req('tier', b.tier()),
      opt('delegator', str),
      opt('agent', str),
      opt('agent_version', str),
      opt('consent_ref', str),
      req('causes', {
        type: 'array',
        items: b.use(
          named('TrustCause', [
            req('kind', str),
            req('ref', str),
            req('event_id', str),
            req('since', ts),
            req('tier', b.tier()),
            opt('expires_at', ts),
          ]),
        ),
      }),
      req('revoked_roles', strings),
      req('consent_revoked', 'boolean'),
      req('freezes', {
        type: 'array',
        items: b.use(
          named('ActiveFreeze', [
            req('freeze_id', str),
            req('scope', b.use(FreezeScope)),
            req('reason', str),
            opt('raised_by', str),
            opt('ticket', str),
            opt('event_id', str),
            opt('since', ts),
            opt('expires_at', ts),
          ]),
        ),
      }),
      req('ended', 'boolean'),
      req('updated_at', ts),
      req('caused_by', str, 'event_id of the event that produced this version'),
    ],
    'Trust state of one session, as PDPs see it.',
  );
})();

/**
 * Writer schemas of earlier versions, by the key of the current one. Empty
 * while v1 is the only version; a reader resolves any of these by fingerprint.
 */
export const PREVIOUS_SCHEMAS: Partial<Record<EventSchemaKey | 'session_trust', readonly Schema[]>> = {};
