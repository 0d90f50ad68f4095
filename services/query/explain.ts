// One decision with the trust state it met, the signals behind that state and
// the story. The choice of state is pure (pickTrust) and unit-tested.
import type { AuditedDecision } from '../../schemas/clickhouse/rows.ts';
import type { SessionTrust, SignalEvent } from '../../schemas/events.ts';
import type { AuditRepository, TrustTransition } from './repository.ts';
import { storyOf } from './story.ts';
import type { TenantScope } from './sql.ts';

export type TrustBasis = 'trust_version' | 'time' | 'none';

export type Explanation = {
  decision: AuditedDecision;
  trust: {
    /** The state the PDP judged against: the latest version ≤ the decision's trust_version, else the latest at or before its time. */
    met: SessionTrust | null;
    basis: TrustBasis;
    /** The state in force at the decision's time, when it differs from the one the PDP used (a stale PDP view). */
    at_decision_time?: SessionTrust;
  };
  signals: SignalEvent[];
  story: string;
};

export const pickTrust = (
  decision: Pick<AuditedDecision, 'occurred_at' | 'decision'>,
  history: readonly TrustTransition[],
): { met: TrustTransition | undefined; basis: TrustBasis; atTime: TrustTransition | undefined } => {
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

export const explainDecision = async (repo: AuditRepository, tenant: TenantScope, eventId: string): Promise<Explanation | undefined> => {
  const decision = await repo.decisionById(tenant, eventId);
  if (decision === undefined) return undefined;
  const history = await repo.trustHistory(decision.tenant_id, decision.session_id);
  const { met, basis, atTime } = pickTrust(decision, history);
  const signals = met === undefined ? [] : await repo.signalsById(decision.tenant_id, signalIdsOf(met.state));
  const story = storyOf({ decision, trust: met?.state, history: history.map((h) => ({ version: h.version, tier: h.tier, updated_at: h.updated_at })) });
  return {
    decision,
    trust: {
      met: met?.state ?? null,
      basis,
      ...(atTime !== undefined && met !== undefined && atTime.version !== met.version ? { at_decision_time: atTime.state } : {}),
    },
    signals,
    story,
  };
};
