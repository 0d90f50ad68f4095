// The one-paragraph account of a decision (docs/design.md, "The incident": "one record that must
// be reconstructable"). Pure: the decision, the trust state it met and that
// state's history in, a sentence out. No clock, no I/O.
import type { ActiveFreeze, DecisionEvent, FreezeScope, SessionTrust, Tier, TrustCause } from '../../schemas/events.ts';
import { actingAgentOf, delegatorOf } from '../../schemas/events.ts';

export type TrustStep = { version: number; tier: Tier; updated_at: string };

export type StoryInput = {
  /** The decision; `audit.conflicts`, when present, are refused later copies of its id. */
  decision: DecisionEvent & { audit?: { conflicts?: readonly unknown[] } };
  /** The trust state the decision met; undefined when none was recorded. */
  trust?: SessionTrust | undefined;
  /** Transitions of the session up to that state, oldest first (to say when the tier was reached). */
  history?: readonly TrustStep[];
};

/** 2026-06-09T14:03:11Z (milliseconds only when there are any). */
export const instant = (iso: string): string => iso.replace(/\.000Z$/, 'Z');

/** A time near the decision: HH:MM:SS on the same UTC day (HH:MM when on the minute), else the full instant. */
export const nearTime = (iso: string, reference: string, precision: 'minute' | 'second' = 'second'): string => {
  if (iso.slice(0, 10) !== reference.slice(0, 10)) return instant(iso);
  const hms = iso.slice(11, 19);
  return precision === 'minute' && hms.endsWith(':00') ? hms.slice(0, 5) : hms;
};

/** `repo:R-payments-ledger` reads as "repo R-payments-ledger"; anything else stays as it is. */
export const resourcePhrase = (resource: string): string => {
  if (resource === '') return 'no resource';
  const m = /^([a-z][a-z0-9_-]*):([^:/\s][^\s]*)$/i.exec(resource);
  return m ? `${m[1]} ${m[2]}` : resource;
};

const list = (items: readonly string[]): string => {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
};

/** Does a freeze's scope cover this call? A freeze on the session that does not is no reason for this decision. */
export const freezeCovers = (scope: FreezeScope, d: DecisionEvent): boolean => {
  if (scope.resource_prefix !== undefined && !d.request.resource.startsWith(scope.resource_prefix)) return false;
  if (scope.actions !== undefined && !scope.actions.includes(d.request.action)) return false;
  if (scope.agent_id !== undefined && actingAgentOf(d.chain)?.id !== scope.agent_id) return false;
  return true;
};

const causePhrase = (c: TrustCause): string => {
  switch (c.kind) {
    case 'injection_detected':
      return `injection signal ${c.ref}`;
    case 'role_revoked':
      return `revocation of role ${c.ref}`;
    case 'consent_revoked':
      return `revocation of consent ${c.ref}`;
    case 'trust_set':
      return `a SOC override (${c.ref})`;
    case 'session_ended':
      return 'the end of the session';
    default:
      return `${c.kind.replace(/_/g, ' ')} ${c.ref}`;
  }
};

const freezePhrase = (f: ActiveFreeze): string => (f.ticket !== undefined ? `incident ${f.ticket}` : `freeze ${f.freeze_id}`);

/** When the session reached the tier it still had at `trust`: the first of the trailing run of equal tiers. */
export const tierSince = (trust: SessionTrust, history: readonly TrustStep[]): string => {
  const steps = [...history].filter((h) => h.version <= trust.version).sort((a, b) => a.version - b.version);
  let since = trust.updated_at;
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i];
    if (s === undefined || s.tier !== trust.tier) break;
    since = s.updated_at;
  }
  return since;
};

const TIER_VERB: Record<Tier, string> = {
  trusted: 'trusted',
  degraded: 'downgraded',
  restricted: 'downgraded',
  revoked: 'revoked',
};

/** "the session's trust was downgraded at 14:01:57 after injection signal SIG-INJ-8821", or undefined when trusted. */
const trustClause = (d: DecisionEvent, trust: SessionTrust, history: readonly TrustStep[]): string | undefined => {
  if (trust.tier === 'trusted') return undefined;
  const at = nearTime(tierSince(trust, history), d.occurred_at);
  // The causes that hold the tier where it is, in the order they arrived.
  const causes = trust.causes.filter((c) => c.tier === trust.tier).sort((a, b) => a.since.localeCompare(b.since));
  const after = causes.length > 0 ? ` after ${list(causes.map(causePhrase))}` : '';
  const extra = [
    ...(trust.revoked_roles.length > 0 && !causes.some((c) => c.kind === 'role_revoked') ? [`role ${list(trust.revoked_roles)} revoked`] : []),
    ...(trust.consent_revoked && !causes.some((c) => c.kind === 'consent_revoked') ? ['consent revoked'] : []),
  ];
  const tail = extra.length > 0 ? ` (${extra.join(', ')})` : '';
  return `the session's trust was ${TIER_VERB[trust.tier]} to ${trust.tier} at ${at}${after}${tail}`;
};

const freezeClause = (d: DecisionEvent, trust: SessionTrust | undefined): string | undefined => {
  const freezes = (trust?.freezes ?? []).filter((f) => freezeCovers(f.scope, d));
  if (freezes.length === 0) return undefined;
  return freezes.length === 1
    ? `a change freeze (${freezePhrase(freezes[0] as ActiveFreeze)}) was in force`
    : `change freezes (${list(freezes.map(freezePhrase))}) were in force`;
};

const EFFECT_VERB = { allow: 'allowed', deny: 'denied', step_up: 'required step-up approval for' } as const;

export const storyOf = ({ decision: d, trust, history = [] }: StoryInput): string => {
  const agent = actingAgentOf(d.chain);
  const agents = d.chain.filter((l) => l.kind === 'agent');
  const delegator = delegatorOf(d.chain);

  const who =
    agent === undefined
      ? `an unidentified caller (${d.chain.map((l) => `${l.kind} ${l.id}`).join(' → ')})`
      : `agent ${agent.id}${agent.version !== undefined ? ` v${agent.version}` : ''}` +
        (agents.length > 1 ? ` (via ${agents.slice(0, -1).map((a) => a.id).join(' → ')})` : '');
  const forWhom = delegator !== undefined ? ` acting for user ${delegator.id}` : '';
  let s = `At ${instant(d.occurred_at)} ${who}${forWhom} in session ${d.session_id} attempted \`${d.request.action}\` on ${resourcePhrase(d.request.resource)}`;

  if (d.token !== undefined) {
    const t = d.token;
    const scope = t.scopes.length === 0 ? 'no scope' : `scope ${t.scopes.map((x) => `\`${x}\``).join(', ')}`;
    const expires = t.expires_at !== undefined ? `, expires ${nearTime(t.expires_at, d.occurred_at, 'minute')}` : '';
    s += `; the token (jti ${t.jti}, ${scope}${expires}) allowed it`;
  } else {
    s += '; no token was recorded';
  }

  const policy = `policy ${d.decision.policy_id}${d.decision.policy_version !== undefined ? ` (version ${d.decision.policy_version})` : ''}`;
  const rule = d.decision.rule_id !== undefined ? ` by rule ${d.decision.rule_id}` : '';
  s += `; ${policy} ${EFFECT_VERB[d.decision.effect]} it${rule}`;

  const reasons = [trust !== undefined ? trustClause(d, trust, history) : undefined, freezeClause(d, trust)].filter(
    (x): x is string => x !== undefined,
  );
  if (d.decision.effect === 'allow') {
    if (reasons.length > 0) s += ` although ${list(reasons)}`;
    else if (trust !== undefined) s += ` while the session's trust was ${trust.tier}`;
  } else if (reasons.length > 0) {
    s += ` because ${list(reasons)}`;
  } else if (d.decision.reasons.length > 0) {
    s += ` because ${list(d.decision.reasons)}`;
  }
  if (trust === undefined) s += ' (no trust state was recorded for the session at that point)';
  s += '.';
  if (d.outcome !== undefined && d.decision.effect !== 'deny') s += ` Outcome: ${d.outcome.status.replace('_', ' ')}.`;
  const conflicts = d.audit?.conflicts?.length ?? 0;
  if (conflicts > 0) {
    s += ` Warning: ${conflicts === 1 ? 'a later copy' : `${conflicts} later copies`} of this event id with different content ${conflicts === 1 ? 'was' : 'were'} received and refused; this is the first stored copy (see audit.conflicts).`;
  }
  return s;
};
