// The PDP client library: a live local view of session trust, and the per-call freeze match.
export { createTrustView, type TrustChangeListener, type TrustLookup, type TrustView, type TrustViewOptions } from './trust-view.ts';
export { freezeMatchesCall, matchingFreezes, type CallFacts } from './freeze-match.ts';
export { createEpochGate, EPOCH_HEADER, type EpochGate, type EpochRefusal, type EpochVerdict } from './epoch.ts';
