// OPA's mapping: one decision-log event (as OPA uploads them) → one decision.
// OPA's result is whatever the policy returns, so the decision's own fields are
// convention paths too.
import { LIMITS } from '../../../schemas/events.ts';
import type { Result } from '../../../schemas/result.ts';
import { assemble, type Mapped } from './assemble.ts';
import type { OpaConvention } from './conventions.ts';
import { canonicalJson, deterministicId } from './digests.ts';
import { asEffect, asId, asInt, asList, asTime, clip, first, reasonsFrom, valueAt } from './values.ts';

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
