// The built-in rules: a tool call judged on the session's live trust. Pure:
// the trust lookup, the call's facts and the rules in, a verdict out.
//
// In order; the first that fires decides:
//   1. trust unknown (view not loaded, or session never seen) → deny
//      destructive calls (fail closed), or every call with `unknownTrust: 'deny'`;
//   2. tier revoked → deny;
//   3. destructive call and tier ≥ `restrictDestructiveAt` → deny;
//   4. the call needs a role (a tool's `requires_roles`) the session's
//      delegator had revoked → deny;
//   5. destructive call under a freeze matching this call → deny;
//   6. destructive call and tier ≥ `stepUpDestructiveAt` → step_up (a human
//      approves it out of band; the gateway answers with the request id);
//   7. allow.
import { TIERS, type Effect, type Tier } from '../../schemas/events.ts';
import { matchingFreezes } from '../pdp-client/freeze-match.ts';
import type { TrustLookup } from '../pdp-client/trust-view.ts';

export const DESTRUCTIVE_ACTIONS: ReadonlySet<string> = new Set([
  'delete_file',
  'drop_table',
  'force_push',
  'delete_branch',
  'truncate_table',
  'transfer_funds',
  'deploy',
]);

export type Rules = {
  /** Actions treated as destructive unless a tool's own setting says otherwise. */
  destructiveActions: ReadonlySet<string>;
  /** Destructive calls are denied from this tier up. */
  restrictDestructiveAt: Tier;
  /** With trust unknown: deny only destructive calls, or every call. */
  unknownTrust: 'deny_destructive' | 'deny';
  /** Destructive calls need step-up approval from this tier up (below `restrictDestructiveAt`); null: never. */
  stepUpDestructiveAt: Tier | null;
};

export const DEFAULT_RULES: Rules = { destructiveActions: DESTRUCTIVE_ACTIONS, restrictDestructiveAt: 'restricted', unknownTrust: 'deny_destructive', stepUpDestructiveAt: null };

export type CallFacts = {
  action: string;
  resource: string;
  /** Overrides `rules.destructiveActions` for this call (a tool's configured setting). */
  destructive?: boolean | undefined;
  /** Roles the call exercises (a tool's `requires_roles`): revoked for the delegator → deny. */
  requiresRoles?: readonly string[] | undefined;
};

export type Verdict = {
  effect: Effect;
  rule_id: string;
  reasons: string[];
  trust_version?: number;
  /** The policy that decided, when the engine names one (Cerbos: the matched policy); else the configured policy id. */
  policy_id?: string;
  policy_version?: string;
};

export const isDestructive = (call: CallFacts, rules: Rules): boolean => call.destructive ?? rules.destructiveActions.has(call.action);

export const judgeCall = (lookup: TrustLookup, call: CallFacts, rules: Rules = DEFAULT_RULES): Verdict => {
  const destructive = isDestructive(call, rules);
  if (!lookup.known) {
    const why = [`session trust ${lookup.reason === 'not_ready' ? 'not loaded yet' : 'unknown'}`];
    if (destructive) return { effect: 'deny', rule_id: 'deny-destructive-when-trust-unknown', reasons: why };
    return rules.unknownTrust === 'deny'
      ? { effect: 'deny', rule_id: 'deny-all-when-trust-unknown', reasons: why }
      : { effect: 'allow', rule_id: 'allow-read-when-trust-unknown', reasons: [] };
  }
  const s = lookup.state;
  const v = { trust_version: lookup.version };
  const causes = s.causes.map((c) => c.ref).join(', ');
  if (s.tier === 'revoked') return { effect: 'deny', rule_id: 'deny-all-when-revoked', reasons: [`session trust revoked (${causes})`], ...v };
  if (destructive && TIERS.indexOf(s.tier) >= TIERS.indexOf(rules.restrictDestructiveAt)) {
    return { effect: 'deny', rule_id: 'deny-destructive-when-restricted', reasons: [`session trust ${s.tier} (${causes})`], ...v };
  }
  const revoked = (call.requiresRoles ?? []).filter((r) => s.revoked_roles.includes(r));
  if (revoked.length > 0) return { effect: 'deny', rule_id: 'deny-role-revoked', reasons: revoked.map((r) => `role ${r} revoked for ${s.delegator ?? 'the delegator'}`), ...v };
  const freezes = destructive ? matchingFreezes(s, call) : [];
  if (freezes.length > 0) {
    return { effect: 'deny', rule_id: 'deny-destructive-under-freeze', reasons: freezes.map((f) => `change freeze ${f.freeze_id} in force: ${f.reason}`), ...v };
  }
  if (destructive && rules.stepUpDestructiveAt !== null && TIERS.indexOf(s.tier) >= TIERS.indexOf(rules.stepUpDestructiveAt)) {
    return { effect: 'step_up', rule_id: 'step-up-destructive-when-degraded', reasons: [`session trust ${s.tier} (${causes}): a destructive call needs approval`], ...v };
  }
  return { effect: 'allow', rule_id: 'allow', reasons: [], ...v };
};
