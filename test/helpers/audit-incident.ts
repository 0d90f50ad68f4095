// The incident of docs/design.md as the audit store sees it: the events the gateways
// emit and the trust states the projector publishes for session S-9.
import { parseEvent, parseSessionTrust } from '../../schemas/codec.ts';
import type { DecisionEvent, SessionTrust, SignalEvent, TrustfoldEvent } from '../../schemas/events.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const must = (input: unknown): TrustfoldEvent => {
  const r = parseEvent(input);
  if (!r.ok) throw new Error(`invalid incident event: ${JSON.stringify(r.error)}`);
  return r.value;
};
const mustTrust = (input: unknown): SessionTrust => {
  const r = parseSessionTrust(input);
  if (!r.ok) throw new Error(`invalid incident trust state: ${JSON.stringify(r.error)}`);
  return r.value;
};

export type Incident = {
  decisions: DecisionEvent[];
  signals: SignalEvent[];
  trust: SessionTrust[];
  denied: DecisionEvent;
};

/** `tenant` and `suffix` let a test plant the same story in another tenant or session. */
export const incident = (tenant = 'acme'): Incident => {
  const sig = <K extends keyof typeof signalFixtures>(k: K) => must({ ...signalFixtures[k], tenant_id: tenant }) as SignalEvent;
  const started = sig('session_started');
  const issued = sig('token_issued');
  const injection = sig('injection_detected');
  const freeze = sig('change_freeze_raised');
  const allowed = (n: number, at: string, action: string, resource: string): DecisionEvent =>
    must({
      ...decisionFixture,
      tenant_id: tenant,
      event_id: `01976d2a-9e1b-7c3a-8d4e-00000000000${n}`,
      occurred_at: at,
      request: { ...decisionFixture.request, action, resource },
      decision: { effect: 'allow', policy_id: 'P-risk-43', policy_version: '12', rule_id: 'allow-scoped-read', reasons: ['within token scope'], trust_version: 1, pdp_id: 'pdp-1', latency_us: 310 },
      outcome: { status: 'executed' },
    }) as DecisionEvent;
  const denied = must({ ...decisionFixture, tenant_id: tenant }) as DecisionEvent;
  const base = {
    session_id: 'S-9',
    tenant_id: tenant,
    delegator: 'U-442',
    agent: 'A-17',
    agent_version: '3.2',
    consent_ref: 'C-88',
    revoked_roles: [],
    consent_revoked: false,
    ended: false,
  };
  const injectionCause = { kind: 'injection_detected', ref: 'SIG-INJ-8821', event_id: injection.event_id, since: injection.occurred_at, tier: 'restricted', expires_at: '2026-06-09T16:01:57.000Z' };
  const inc77 = {
    freeze_id: 'INC-77',
    scope: { resource_prefix: 'repo:', actions: ['delete_file', 'force_push'] },
    reason: 'incident INC-77: payments ledger corruption',
    raised_by: 'soc-oncall',
    ticket: 'INC-77',
    event_id: freeze.event_id,
    since: freeze.occurred_at,
  };
  const trust = [
    mustTrust({ ...base, version: 1, tier: 'trusted', causes: [], freezes: [], updated_at: started.occurred_at, caused_by: started.event_id }),
    mustTrust({ ...base, version: 2, tier: 'restricted', causes: [injectionCause], freezes: [], updated_at: injection.occurred_at, caused_by: injection.event_id }),
    mustTrust({ ...base, version: 3, tier: 'restricted', causes: [injectionCause], freezes: [inc77], updated_at: freeze.occurred_at, caused_by: freeze.event_id }),
  ];
  return {
    decisions: [
      allowed(1, '2026-06-09T14:00:30.000Z', 'read_file', 'repo:R-payments-ledger/README.md'),
      allowed(2, '2026-06-09T14:01:10.000Z', 'edit_file', 'repo:R-payments-ledger/src/old.ts'),
      denied,
    ],
    signals: [issued, started, injection, freeze],
    trust,
    denied,
  };
};
