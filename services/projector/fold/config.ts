// The fold's settings: what each signal does to a tier, and the bounds of its
// duplicate memory. Parsed from the environment by ../config.ts.
import type { SignalOf, Tier } from '../../../schemas/events.ts';

export type Severity = SignalOf<'injection_detected'>['severity'];

/** What each signal does to a tier; the defaults are the signal table of docs/design.md#events. */
export type TierMapping = {
  injection: Record<Severity, Tier>;
  roleRevoked: Tier;
  consentRevoked: Tier;
  sessionEnded: Tier;
};

export type FoldConfig = {
  tiers: TierMapping;
  /** Event ids remembered per session / per user / per freeze for duplicate detection. */
  appliedPerSession: number;
  appliedPerUser: number;
  appliedPerFreeze: number;
  /**
   * Once a wall-clock `tick(now)` was given, an event's time advances the
   * fold's clock at most to `now + maxEventSkewMs`, so one producer with a
   * clock in the future cannot expire everyone's causes early.
   */
  maxEventSkewMs: number;
};

export const DEFAULT_TIER_MAPPING: TierMapping = {
  injection: { low: 'degraded', medium: 'degraded', high: 'restricted', critical: 'restricted' },
  roleRevoked: 'degraded',
  consentRevoked: 'revoked',
  sessionEnded: 'revoked',
};

export const DEFAULT_FOLD_CONFIG: FoldConfig = {
  tiers: DEFAULT_TIER_MAPPING,
  appliedPerSession: 32,
  appliedPerUser: 32,
  // A freeze sees few events (its raises and lifts), so a short memory covers them.
  appliedPerFreeze: 8,
  maxEventSkewMs: 60_000,
};
