// Cerbos's mapping: one decision per resource × action of a CheckResources
// decision log entry (the Kafka audit backend's JSON records).
import { LIMITS } from '../../../schemas/events.ts';
import { assemble, type Mapped } from './assemble.ts';
import type { CerbosConvention } from './conventions.ts';
import { deterministicId } from './digests.ts';
import { asEffect, asId, asTime, clip, first, reasonsFrom, valueAt } from './values.ts';

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
