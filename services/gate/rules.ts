// The built-in rules: a tool call judged on the session's live trust. Pure:
// the trust lookup, the call's facts and the rules in, a verdict out.
//
// In order; the first that fires decides:
//   1. trust unknown (view not loaded, or session never seen) → deny
//      destructive calls (fail closed), or every call with `unknownTrust: 'deny'`;
//   2. tier revoked → deny;
//   3. destructive call and tier ≥ `restrictDestructiveAt` → deny;
//   4. destructive call under a freeze matching this call → deny;
//   5. allow.
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
};

export const DEFAULT_RULES: Rules = { destructiveActions: DESTRUCTIVE_ACTIONS, restrictDestructiveAt: 'restricted', unknownTrust: 'deny_destructive' };

export type CallFacts = {
  action: string;
  resource: string;
  /** Overrides `rules.destructiveActions` for this call (a tool's configured setting). */
  destructive?: boolean | undefined;
};

export type Verdict = { effect: Effect; rule_id: string; reasons: string[]; trust_version?: number };

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
  const freezes = destructive ? matchingFreezes(s, call) : [];
  if (freezes.length > 0) {
    return { effect: 'deny', rule_id: 'deny-destructive-under-freeze', reasons: freezes.map((f) => `change freeze ${f.freeze_id} in force: ${f.reason}`), ...v };
  }
  return { effect: 'allow', rule_id: 'allow', reasons: [], ...v };
};
