// The wire types the page reads, from the contract itself (type-only imports:
// nothing of the server is bundled into the page).
export type { ActiveFreeze, SessionTrust, TrustCause } from '../../../../schemas/events.ts';
import type { EFFECTS, TIERS } from '../../../../schemas/events.ts';

export type Tier = (typeof TIERS)[number];
export type Effect = (typeof EFFECTS)[number];

/** The tiers from best to worst (the contract's order). */
export const TIER_ORDER: readonly Tier[] = ['trusted', 'degraded', 'restricted', 'revoked'];
export const EFFECT_ORDER: readonly Effect[] = ['allow', 'deny', 'step_up'];
