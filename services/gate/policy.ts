// The policy engine a gateway asks for each tools/call: the built-in rules
// (rules.ts) or a Cerbos PDP. Either way the gateway's own floor comes first:
// with the session's trust unknown a destructive call is denied (fail closed)
// whatever the engine would say, and so is every call with
// `unknown_trust: "deny"`.
//
// Cerbos is asked over its HTTP CheckResources API with the live trust as
// attributes, so a team writes its agent policy in Cerbos and gets live trust
// in it:
//
//   principal  id = the acting agent (else the delegator), roles = `principal_roles`
//     attr     delegator, chain (ids), tenant, session, scopes, trust_known,
//              trust_tier ("unknown" when not known), trust_version, causes
//              [{kind, ref, tier}], cause_kinds, revoked_roles, consent_revoked
//   resource   kind = `resource_kind`, id = the call's resource
//     attr     tool, upstream, action, destructive, required_roles,
//              freezes: the session's freezes matching this call [{freeze_id, reason}],
//              trust_tier (again, for resource-side conditions)
//   action     the call's action
//
// The answer: EFFECT_ALLOW → allow, EFFECT_DENY → deny; a DENY whose rule
// output carries `step_up: true` → step_up. The rule id is the rule named in
// the output's `src` (`resource.mcp_tool.vdefault#rule`), else the matched
// policy, else `cerbos-no-matching-policy`; reasons from the output's
// `reason`. Any failure — unreachable, timeout, non-200, an answer without
// this action — denies (rule `deny-pdp-unavailable`): fail closed.
import { Pool } from 'undici';
import { z } from 'zod';
import type { Tier } from '../../schemas/events.ts';
import { matchingFreezes } from '../pdp-client/freeze-match.ts';
import type { TrustLookup } from '../pdp-client/trust-view.ts';
import type { CallerIdentity } from './claims.ts';
import { isDestructive, judgeCall, type CallFacts, type Rules, type Verdict } from './rules.ts';

export type PolicyInput = {
  lookup: TrustLookup;
  call: CallFacts & { tool: string; upstream: string };
  caller: CallerIdentity;
  session: string;
  /** Correlates the engine's own log with the decision (Cerbos requestId). */
  requestId: string;
};

export type PolicyEngine = {
  readonly kind: 'builtin' | 'cerbos';
  /** Synchronous for the built-in rules (no await on the hot path), a promise for a remote PDP. Never rejects. */
  decide(input: PolicyInput): Verdict | Promise<Verdict>;
  close(): Promise<void>;
};

export const builtinPolicy = (rules: Rules): PolicyEngine => ({
  kind: 'builtin',
  decide: (i) => judgeCall(i.lookup, i.call, rules),
  close: () => Promise.resolve(),
});

export type CerbosPolicyOptions = {
  /** Cerbos's HTTP address, e.g. http://127.0.0.1:3592. */
  url: string;
  timeoutMs: number;
  resourceKind: string;
  principalRoles: readonly string[];
  /** Cerbos `policyVersion` for principal and resource; unset: Cerbos's default. */
  policyVersion?: string | undefined;
  /** The built-in rules: their destructive action list and unknown-trust setting make the floor. */
  rules: Rules;
};

type Attr = Record<string, unknown>;
export type CerbosCheck = {
  requestId: string;
  includeMeta: true;
  principal: { id: string; roles: string[]; policyVersion?: string; attr: Attr };
  resources: { actions: string[]; resource: { kind: string; id: string; policyVersion?: string; attr: Attr } }[];
};

/** The CheckResources request for one call. Pure. */
export const cerbosCheck = (i: PolicyInput, o: Pick<CerbosPolicyOptions, 'resourceKind' | 'principalRoles' | 'policyVersion' | 'rules'>): CerbosCheck => {
  const { lookup, call, caller } = i;
  const agent = caller.chain.findLast((l) => l.kind === 'agent');
  const delegator = caller.chain.find((l) => l.kind === 'human');
  const state = lookup.known ? lookup.state : undefined;
  const tier: Tier | 'unknown' = state?.tier ?? 'unknown';
  const freezes = state !== undefined ? matchingFreezes(state, call).map((f) => ({ freeze_id: f.freeze_id, reason: f.reason })) : [];
  const version = o.policyVersion !== undefined ? { policyVersion: o.policyVersion } : {};
  return {
    requestId: i.requestId,
    includeMeta: true,
    principal: {
      id: agent?.id ?? delegator?.id ?? 'unknown',
      roles: [...o.principalRoles],
      ...version,
      attr: {
        delegator: delegator?.id ?? '',
        chain: caller.chain.map((l) => l.id),
        tenant: caller.tenant,
        session: i.session,
        scopes: [...caller.scopes].sort(),
        trust_known: lookup.known,
        trust_tier: tier,
        trust_version: lookup.known ? lookup.version : -1,
        causes: (state?.causes ?? []).map((c) => ({ kind: c.kind, ref: c.ref, tier: c.tier })),
        cause_kinds: [...new Set((state?.causes ?? []).map((c) => c.kind))].sort(),
        revoked_roles: state?.revoked_roles ?? [],
        consent_revoked: state?.consent_revoked ?? false,
      },
    },
    resources: [
      {
        actions: [call.action],
        resource: {
          kind: o.resourceKind,
          id: call.resource,
          ...version,
          attr: {
            tool: call.tool,
            upstream: call.upstream,
            action: call.action,
            destructive: isDestructive(call, o.rules),
            required_roles: [...(call.requiresRoles ?? [])],
            freezes,
            trust_tier: tier,
          },
        },
      },
    ],
  };
};

const cerbosAnswer = z.looseObject({
  cerbosCallId: z.string().optional(),
  results: z
    .array(
      z.looseObject({
        actions: z.record(z.string(), z.string()),
        meta: z.looseObject({ actions: z.record(z.string(), z.looseObject({ matchedPolicy: z.string().optional() })).optional() }).optional(),
        outputs: z.array(z.looseObject({ src: z.string(), val: z.unknown() })).optional(),
      }),
    )
    .min(1),
});

const unavailable = (why: string, lookup: TrustLookup): Verdict => ({
  effect: 'deny',
  rule_id: 'deny-pdp-unavailable',
  reasons: [`policy engine unavailable, failing closed: ${why}`.slice(0, 1000)],
  ...(lookup.known && { trust_version: lookup.version }),
});

/** Cerbos's answer for one action → the verdict. Pure; anything unexpected fails closed. */
export const verdictFromCerbos = (body: unknown, action: string, lookup: TrustLookup): Verdict => {
  const parsed = cerbosAnswer.safeParse(body);
  if (!parsed.success) return unavailable(`unexpected CheckResources answer: ${parsed.error.issues[0]?.message ?? ''}`, lookup);
  const r = parsed.data.results[0];
  const effect = r?.actions[action];
  if (r === undefined || (effect !== 'EFFECT_ALLOW' && effect !== 'EFFECT_DENY')) return unavailable(`no effect for action ${action}`, lookup);
  const matched = r.meta?.actions?.[action]?.matchedPolicy;
  const outputs = (r.outputs ?? []).map((o) => ({ rule: o.src.includes('#') ? o.src.slice(o.src.indexOf('#') + 1) : undefined, val: o.val }));
  const first = outputs.find((o) => o.rule !== undefined);
  const reasons = outputs.flatMap((o) => {
    if (typeof o.val === 'string') return [o.val];
    if (typeof o.val === 'object' && o.val !== null && typeof (o.val as Attr)['reason'] === 'string') return [(o.val as Attr)['reason'] as string];
    return [];
  });
  const stepUp = effect === 'EFFECT_DENY' && outputs.some((o) => typeof o.val === 'object' && o.val !== null && (o.val as Attr)['step_up'] === true);
  const rule = first?.rule ?? (matched !== undefined && matched !== '' ? matched : 'cerbos-no-matching-policy');
  return {
    effect: stepUp ? 'step_up' : effect === 'EFFECT_ALLOW' ? 'allow' : 'deny',
    rule_id: rule.slice(0, 256),
    reasons: reasons.map((x) => x.slice(0, 1000)).slice(0, 16),
    ...(lookup.known && { trust_version: lookup.version }),
    ...(matched !== undefined && matched !== '' && { policy_id: matched.slice(0, 256) }),
  };
};

export const cerbosPolicy = (o: CerbosPolicyOptions): PolicyEngine => {
  const origin = new URL(o.url).origin;
  const pool = new Pool(origin, { connections: 16, pipelining: 1, keepAliveTimeout: 30_000 });
  const decide = async (i: PolicyInput): Promise<Verdict> => {
    if (!i.lookup.known) {
      // The floor: trust unknown never lets a destructive call through, whatever the policy says.
      const floor = judgeCall(i.lookup, i.call, o.rules);
      if (floor.effect !== 'allow') return floor;
    }
    try {
      const res = await pool.request({
        path: '/api/check/resources',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(cerbosCheck(i, o)),
        headersTimeout: o.timeoutMs,
        bodyTimeout: o.timeoutMs,
        signal: AbortSignal.timeout(o.timeoutMs),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) return unavailable(`cerbos ${origin} answered ${res.statusCode}: ${text.slice(0, 300)}`, i.lookup);
      return verdictFromCerbos(JSON.parse(text), i.call.action, i.lookup);
    } catch (e) {
      return unavailable(`cerbos ${origin}: ${e instanceof Error ? e.message : String(e)}`, i.lookup);
    }
  };
  return { kind: 'cerbos', decide, close: () => pool.close() };
};
