// The event types trustfold sends and understands, and the pure mapping from
// a trust transition to CAEP events (transmitter side). No I/O, no clock:
// everything comes from the two trust states.
//
// Mapping (the default; `TransmitMapping` changes it):
//   - the session ended, or its tier became `revoked`   → CAEP session-revoked
//   - any other tier change                             → CAEP risk-level-change
//     (principal SESSION, current/previous level from the tier table, the
//     newest cause as risk_reason)
//   - a change freeze newly matching the session        → trustfold's own
//     change-freeze-raised type (SSF allows event types beyond CAEP)
// A version that changes none of these (a role revoked at the same tier, a
// cause expiring without a tier change) sends nothing.
import type { SessionTrust, Tier, TrustCause } from '../../schemas/events.ts';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type';
const SSF = 'https://schemas.openid.net/secevent/ssf/event-type';

export const EVENT_TYPES = {
  sessionRevoked: `${CAEP}/session-revoked`,
  riskLevelChange: `${CAEP}/risk-level-change`,
  assuranceLevelChange: `${CAEP}/assurance-level-change`,
  credentialChange: `${CAEP}/credential-change`,
  tokenClaimsChange: `${CAEP}/token-claims-change`,
  deviceComplianceChange: `${CAEP}/device-compliance-change`,
  verification: `${SSF}/verification`,
  streamUpdated: `${SSF}/stream-updated`,
  changeFreezeRaised: 'urn:trustfold:secevent:event-type:change-freeze-raised',
} as const;

/** What a stream can ask for in `events_requested` (verification and stream-updated are always delivered). */
export const TRANSMITTED_EVENT_TYPES: readonly string[] = [EVENT_TYPES.sessionRevoked, EVENT_TYPES.riskLevelChange, EVENT_TYPES.changeFreezeRaised];

export const RISK_LEVELS = ['LOW', 'MEDIUM', 'HIGH'] as const;
export type RiskLevel = (typeof RISK_LEVELS)[number];
export type InitiatingEntity = 'admin' | 'user' | 'policy' | 'system';

export type TransmitMapping = {
  /** The CAEP level each tier is reported as. */
  levels: Record<Tier, RiskLevel>;
  /** Report tier `revoked` as session-revoked (default) or as risk-level-change. */
  revokedAsSessionRevoked: boolean;
  /** Who the cause is said to come from (CAEP initiating_entity), by cause kind. */
  initiators: Record<string, InitiatingEntity>;
};

export const DEFAULT_TRANSMIT_MAPPING: TransmitMapping = {
  levels: { trusted: 'LOW', degraded: 'MEDIUM', restricted: 'HIGH', revoked: 'HIGH' },
  revokedAsSessionRevoked: true,
  initiators: {
    trust_set: 'admin',
    role_revoked: 'admin',
    consent_revoked: 'user',
    change_freeze: 'admin',
    session_ended: 'system',
    injection_detected: 'policy',
  },
};

/** An SSF complex subject (SSF 1.0 §3, RFC 9493 opaque members). */
export type ComplexSubject = {
  format: 'complex';
  session: { format: 'opaque'; id: string };
  tenant: { format: 'opaque'; id: string };
  user?: { format: 'opaque'; id: string };
};

/** One event to send: its type, its payload (the member of `events`), and its subject. */
export type OutgoingEvent = { type: string; payload: Record<string, unknown>; subject: ComplexSubject };

export const subjectOf = (s: SessionTrust): ComplexSubject => ({
  format: 'complex',
  session: { format: 'opaque', id: s.session_id },
  tenant: { format: 'opaque', id: s.tenant_id },
  ...(s.delegator !== undefined ? { user: { format: 'opaque', id: s.delegator } } : {}),
});

/** The cause that made this version: the one carrying the event that caused it, else the newest. */
const causeOf = (s: SessionTrust): TrustCause | undefined =>
  s.causes.find((c) => c.event_id === s.caused_by) ?? s.causes.reduce<TrustCause | undefined>((a, c) => (a === undefined || c.since > a.since ? c : a), undefined);

const reasonOf = (c: TrustCause | undefined): string => (c === undefined ? 'no active cause' : `${c.kind} ${c.ref}`);

const common = (s: SessionTrust, cause: TrustCause | undefined, m: TransmitMapping): Record<string, unknown> => ({
  event_timestamp: Math.floor(Date.parse(s.updated_at) / 1000),
  initiating_entity: (cause !== undefined ? m.initiators[cause.kind] : undefined) ?? 'system',
  reason_admin: { en: `trustfold: ${reasonOf(cause)} (trust version ${s.version}, tier ${s.tier})` },
});

/**
 * The events one trust transition produces. `prev` is undefined when the
 * transmitter has not seen the session before (a new session, or after a
 * restart): then previous_level is left out rather than guessed.
 */
export const eventsForTransition = (prev: SessionTrust | undefined, next: SessionTrust, m: TransmitMapping = DEFAULT_TRANSMIT_MAPPING): OutgoingEvent[] => {
  const subject = subjectOf(next);
  const cause = causeOf(next);
  const out: OutgoingEvent[] = [];
  const revokedNow = (next.ended && prev?.ended !== true) || (next.tier === 'revoked' && prev?.tier !== 'revoked');
  if (revokedNow && (m.revokedAsSessionRevoked || next.ended)) {
    out.push({ type: EVENT_TYPES.sessionRevoked, payload: common(next, cause, m), subject });
  } else if (prev === undefined ? next.tier !== 'trusted' : prev.tier !== next.tier) {
    out.push({
      type: EVENT_TYPES.riskLevelChange,
      payload: {
        ...common(next, cause, m),
        principal: 'SESSION',
        current_level: m.levels[next.tier],
        ...(prev !== undefined ? { previous_level: m.levels[prev.tier] } : {}),
        risk_reason: reasonOf(cause),
      },
      subject,
    });
  }
  const before = new Set((prev?.freezes ?? []).map((f) => f.freeze_id));
  for (const f of next.freezes) {
    if (before.has(f.freeze_id) || prev === undefined) continue;
    out.push({
      type: EVENT_TYPES.changeFreezeRaised,
      payload: {
        event_timestamp: Math.floor(Date.parse(f.since ?? next.updated_at) / 1000),
        initiating_entity: 'admin',
        freeze_id: f.freeze_id,
        scope: f.scope,
        reason_admin: { en: f.reason },
        ...(f.ticket !== undefined ? { ticket: f.ticket } : {}),
      },
      subject,
    });
  }
  return out;
};
