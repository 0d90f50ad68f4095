// One decision with the trust state it met, the state in force at its time,
// the signals behind both and the story. The choices are pure (pickTrust,
// trustLagOf in story.ts) and unit-tested; this module only looks things up.
import type { AuditedDecision } from '../../schemas/clickhouse/rows-read.ts';
import type { ActiveFreeze, SessionTrust, SignalEvent, Tier, TrustCause } from '../../schemas/events.ts';
import type { AuditRepository } from './repository.ts';
import { staleTrustFinding, storyOf, trustLagOf, type TrustLag } from './story.ts';
import type { TenantScope } from './sql.ts';

export type TrustBasis = 'trust_version' | 'time' | 'none';

/** The parts of a trust state a responder compares: which version, which tier, why, under which freezes. */
export type TrustSummary = { version: number; tier: Tier; updated_at: string; causes: TrustCause[]; freezes: ActiveFreeze[] };

export type Explanation = {
  decision: AuditedDecision;
  trust: {
    /** The state the PDP judged against: the latest version ≤ the decision's trust_version, else the latest at or before its time. */
    met: SessionTrust | null;
    basis: TrustBasis;
    /** The state in force at the decision's time, when it differs from the one the PDP used (a stale PDP view). */
    at_decision_time?: SessionTrust;
    /** What the PDP knew: the stored transition it decided on (null when none is recorded). */
    pdp_used: TrustSummary | null;
    /** What was true: the latest stored transition at or before `occurred_at` (null when none). */
    in_force: TrustSummary | null;
    /** The PDP's version against the state in force, computed at query time from the stored transitions. */
    lag: TrustLag;
    /** Set when the call was allowed on a stale view while the state in force was stricter. */
    finding?: 'allowed_on_stale_trust';
  };
  signals: SignalEvent[];
  story: string;
};

type Step = { version: number; updated_at: string };

export const pickTrust = <T extends Step>(
  decision: Pick<AuditedDecision, 'occurred_at' | 'decision'>,
  history: readonly T[],
): { met: T | undefined; basis: TrustBasis; atTime: T | undefined } => {
  const sorted = [...history].sort((a, b) => a.version - b.version);
  const atTime = sorted.filter((t) => t.updated_at <= decision.occurred_at).pop();
  const tv = decision.decision.trust_version;
  if (tv !== undefined) {
    const byVersion = sorted.filter((t) => t.version <= tv).pop();
    if (byVersion !== undefined) return { met: byVersion, basis: 'trust_version', atTime };
  }
  return { met: atTime, basis: atTime !== undefined ? 'time' : 'none', atTime };
};

/** Event ids of the signals a trust state rests on: what caused it, its causes and its freezes. */
export const signalIdsOf = (s: SessionTrust): string[] => [
  ...new Set([s.caused_by, ...s.causes.map((c) => c.event_id), ...s.freezes.flatMap((f) => (f.event_id !== undefined ? [f.event_id] : []))]),
];

export const summaryOf = (s: SessionTrust): TrustSummary => ({ version: s.version, tier: s.tier, updated_at: s.updated_at, causes: s.causes, freezes: s.freezes });

export const explainDecision = async (repo: AuditRepository, tenant: TenantScope, eventId: string): Promise<Explanation | undefined> => {
  const decision = await repo.decisionById(tenant, eventId);
  if (decision === undefined) return undefined;
  // Steps only (no states) for the whole session, then the one or two states that matter.
  const steps = await repo.trustSteps(decision.tenant_id, decision.session_id);
  const picked = pickTrust(decision, steps);
  const wanted = [picked.met, picked.atTime].flatMap((t) => (t !== undefined ? [t.version] : []));
  const states = new Map((await repo.trustByVersions(decision.tenant_id, decision.session_id, wanted)).map((t) => [t.version, t.state]));
  const met = picked.met !== undefined ? states.get(picked.met.version) : undefined;
  const inForce = picked.atTime !== undefined ? states.get(picked.atTime.version) : undefined;
  const lag = trustLagOf(decision, steps);
  const ids = [...new Set([...(met !== undefined ? signalIdsOf(met) : []), ...(inForce !== undefined ? signalIdsOf(inForce) : [])])];
  const signals = await repo.signalsById(decision.tenant_id, ids);
  const differs = inForce !== undefined && met !== undefined && inForce.version !== met.version;
  const story = storyOf({ decision, trust: met, history: steps, inForce: differs ? inForce : undefined, lag });
  const finding = staleTrustFinding(decision, lag, met, inForce);
  return {
    decision,
    trust: {
      met: met ?? null,
      basis: met !== undefined ? picked.basis : 'none',
      ...(differs ? { at_decision_time: inForce } : {}),
      // Only the very version the PDP named: a neighbour, or a guess by time, is not what it knew.
      pdp_used: met !== undefined && met.version === decision.decision.trust_version ? summaryOf(met) : null,
      in_force: inForce !== undefined ? summaryOf(inForce) : null,
      lag,
      ...(finding !== undefined ? { finding } : {}),
    },
    signals,
    story,
  };
};
