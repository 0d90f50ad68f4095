// The one-paragraph account of a decision (docs/design.md, "The incident": "one record that must
// be reconstructable"). Pure: the decision, the trust state it met and that
// state's history in, a sentence out. No clock, no I/O.
import type { ActiveFreeze, DecisionEvent, FreezeScope, SessionTrust, Tier, TrustCause } from '../../schemas/events.ts';
import { actingAgentOf, delegatorOf, TIERS } from '../../schemas/events.ts';

export type TrustStep = { version: number; tier: Tier; updated_at: string };

export type StoryInput = {
  /** The state in force at the decision's time, when it differs from `trust`. */
  inForce?: SessionTrust | undefined;
  /** The decision; `audit.conflicts`, when present, are refused later copies of its id. */
  decision: DecisionEvent & { audit?: { conflicts?: readonly unknown[] } };
  /** The trust state the decision met; undefined when none was recorded. */
  trust?: SessionTrust | undefined;
  /** Transitions of the session up to that state, oldest first (to say when the tier was reached). */
  history?: readonly TrustStep[];
  /** How the PDP's state compares with the state in force at the decision's time (trustLagOf); absent = not compared. */
  lag?: TrustLag;
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

// ---- what the PDP knew vs what was true ------------------------------------

/**
 * The PDP's trust version against the state in force at the decision's time
 * (the latest stored transition of the session at or before `occurred_at`).
 * - `current`: the same version.
 * - `stale`: older; `versions_behind` and `ms_behind` (how long the first
 *   version the PDP had not seen had been in force when it decided).
 * - `ahead`: newer than the state in force: either no such version is
 *   recorded at all (`recorded: false`: not stored yet, or never published),
 *   or it is recorded only after the call (clocks of projector and gateway disagree).
 * - `unknown`: the decision names no version, or nothing is recorded.
 */
export type TrustLag =
  | { status: 'current'; pdp_version: number; in_force_version: number; versions_behind: 0; ms_behind: 0 }
  | { status: 'stale'; pdp_version: number; in_force_version: number; versions_behind: number; ms_behind: number; stale_since: string }
  | { status: 'ahead'; pdp_version: number; in_force_version: number | null; latest_recorded_version: number | null; recorded: boolean }
  | { status: 'unknown'; pdp_version: number | null; in_force_version: number | null };

/** Pure: the decision's version and time against the session's stored steps (any order). */
export const trustLagOf = (decision: Pick<DecisionEvent, 'occurred_at' | 'decision'>, steps: readonly Pick<TrustStep, 'version' | 'updated_at'>[]): TrustLag => {
  const sorted = [...steps].sort((a, b) => a.version - b.version);
  const inForce = sorted.filter((t) => t.updated_at <= decision.occurred_at).pop();
  const pdp = decision.decision.trust_version;
  const inForceVersion = inForce?.version ?? null;
  if (pdp === undefined) return { status: 'unknown', pdp_version: null, in_force_version: inForceVersion };
  const latest = sorted[sorted.length - 1];
  if (inForce === undefined || pdp > inForce.version) {
    if (latest === undefined && inForce === undefined) return { status: 'ahead', pdp_version: pdp, in_force_version: null, latest_recorded_version: null, recorded: false };
    return { status: 'ahead', pdp_version: pdp, in_force_version: inForceVersion, latest_recorded_version: latest?.version ?? null, recorded: sorted.some((t) => t.version === pdp) };
  }
  if (pdp === inForce.version) return { status: 'current', pdp_version: pdp, in_force_version: pdp, versions_behind: 0, ms_behind: 0 };
  // The first version the PDP had not seen: from then on its view was behind.
  const firstMissed = sorted.find((t) => t.version > pdp) ?? inForce;
  return {
    status: 'stale',
    pdp_version: pdp,
    in_force_version: inForce.version,
    versions_behind: inForce.version - pdp,
    ms_behind: Math.max(0, Date.parse(decision.occurred_at) - Date.parse(firstMissed.updated_at)),
    stale_since: firstMissed.updated_at,
  };
};

const TIER_RANK = Object.fromEntries(TIERS.map((t, i) => [t, i])) as Record<Tier, number>;

const coveringFreezes = (d: DecisionEvent, s: SessionTrust | undefined): ActiveFreeze[] => (s?.freezes ?? []).filter((f) => freezeCovers(f.scope, d));

/** Freezes in force that cover the call and that the PDP's state did not have. */
const unseenFreezes = (d: DecisionEvent, used: SessionTrust | undefined, inForce: SessionTrust): ActiveFreeze[] => {
  const known = new Set(coveringFreezes(d, used).map((f) => f.freeze_id));
  return coveringFreezes(d, inForce).filter((f) => !known.has(f.freeze_id));
};

/** Was the state in force stricter for this call than the one the PDP used (a higher tier, or a freeze covering it)? */
export const inForceWasStricter = (d: DecisionEvent, used: SessionTrust | undefined, inForce: SessionTrust | undefined): boolean =>
  inForce !== undefined && (TIER_RANK[inForce.tier] > TIER_RANK[used?.tier ?? 'trusted'] || unseenFreezes(d, used, inForce).length > 0 || (inForce.consent_revoked && used?.consent_revoked !== true));

/**
 * The finding an incident review needs most: a call allowed on a stale view
 * while the state in force was stricter. Undefined for anything else.
 */
export const staleTrustFinding = (d: DecisionEvent, lag: TrustLag | undefined, used: SessionTrust | undefined, inForce: SessionTrust | undefined): 'allowed_on_stale_trust' | undefined =>
  lag?.status === 'stale' && d.decision.effect === 'allow' && inForceWasStricter(d, used, inForce) ? 'allowed_on_stale_trust' : undefined;

const changeFreezePhrase = (f: ActiveFreeze): string =>
  `change freeze ${f.freeze_id}${f.ticket !== undefined && f.ticket !== f.freeze_id ? ` (incident ${f.ticket})` : ''}`;

/** "trust v1 (trusted)"; the tier only when that very version is recorded. */
const versionPhrase = (s: SessionTrust | undefined, version: number): string => `trust v${version}${s !== undefined && s.version === version ? ` (${s.tier})` : ''}`;

/**
 * One clause when the PDP's view and the state in force differ, undefined when
 * they agree or cannot be compared:
 * "the PDP decided on trust v1 (trusted) although the session had been
 * restricted since 14:01:57 after injection signal SIG-INJ-8821 and change
 * freeze INC-77 was in force".
 */
export const lagClause = (
  d: DecisionEvent,
  lag: TrustLag,
  used: SessionTrust | undefined,
  inForce: SessionTrust | undefined,
  history: readonly TrustStep[],
): string | undefined => {
  switch (lag.status) {
    case 'current':
    case 'unknown':
      return undefined;
    case 'ahead': {
      if (!lag.recorded) {
        return lag.latest_recorded_version === null
          ? `the PDP decided on trust v${lag.pdp_version}, but no trust state is recorded for the session`
          : `the PDP decided on trust v${lag.pdp_version}, newer than any version recorded for the session (latest v${lag.latest_recorded_version})`;
      }
      return `the PDP decided on ${versionPhrase(used, lag.pdp_version)}, recorded only after the call${
        lag.in_force_version !== null ? ` (v${lag.in_force_version} was in force at its time)` : ''
      }`;
    }
    case 'stale': {
      const head = `the PDP decided on ${versionPhrase(used, lag.pdp_version)}`;
      if (inForce === undefined) return `${head}, ${lag.versions_behind} version${lag.versions_behind === 1 ? '' : 's'} behind the state in force`;
      const parts: string[] = [];
      if (used === undefined || inForce.tier !== used.tier) {
        const since = nearTime(tierSince(inForce, history), d.occurred_at);
        const causes = inForce.causes.filter((c) => c.tier === inForce.tier).sort((a, b) => a.since.localeCompare(b.since));
        parts.push(`the session had been ${inForce.tier} since ${since}${causes.length > 0 ? ` after ${list(causes.map(causePhrase))}` : ''}`);
      }
      const freezes = unseenFreezes(d, used, inForce);
      if (freezes.length > 0) parts.push(`${list(freezes.map(changeFreezePhrase))} ${freezes.length === 1 ? 'was' : 'were'} in force`);
      if (parts.length === 0) {
        return `${head}, ${lag.versions_behind} version${lag.versions_behind === 1 ? '' : 's'} behind the state in force (v${lag.in_force_version}, ${inForce.tier}), which did not change this call's tier or freezes`;
      }
      return `${head} although ${list(parts)}`;
    }
    default: {
      const unreachable: never = lag;
      return unreachable;
    }
  }
};

const EFFECT_VERB = { allow: 'allowed', deny: 'denied', step_up: 'required step-up approval for' } as const;

export const storyOf = ({ decision: d, trust, history = [], inForce, lag }: StoryInput): string => {
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
    // On a stale view the lag clause below says which tier the PDP saw and which was true.
    else if (trust !== undefined && lag?.status !== 'stale') s += ` while the session's trust was ${trust.tier}`;
  } else if (reasons.length > 0) {
    s += ` because ${list(reasons)}`;
  } else if (d.decision.reasons.length > 0) {
    s += ` because ${list(d.decision.reasons)}`;
  }
  if (trust === undefined && lag?.status !== 'ahead') s += ' (no trust state was recorded for the session at that point)';
  const gap = lag !== undefined ? lagClause(d, lag, trust, inForce, history) : undefined;
  if (gap !== undefined) s += `; ${gap}`;
  s += '.';
  if (d.outcome !== undefined && d.decision.effect !== 'deny') s += ` Outcome: ${d.outcome.status.replace('_', ' ')}.`;
  if (staleTrustFinding(d, lag, trust, inForce) !== undefined) s += ' Finding: the call was allowed on stale trust.';
  const conflicts = d.audit?.conflicts?.length ?? 0;
  if (conflicts > 0) {
    s += ` Warning: ${conflicts === 1 ? 'a later copy' : `${conflicts} later copies`} of this event id with different content ${conflicts === 1 ? 'was' : 'were'} received and refused; this is the first stored copy (see audit.conflicts).`;
  }
  return s;
};
