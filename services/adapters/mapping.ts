// Pure mapping from what a policy engine logs to trustfold decision events.
// No Kafka, no clock, no I/O: the source entry, the tenant and the convention
// go in, decisions come out. One file per concern, in mapping/:
//   conventions.ts  which paths of an engine's record each field is read from (the defaults)
//   values.ts       reading a path and turning its value into a field (id, text, list, time, effect)
//   digests.ts      canonical JSON, argument digests, ids derived from the source entry
//   assemble.ts     one decision event from what was found; placeholders and the unmapped marker
//   cerbos.ts       Cerbos decision log entries → decisions
//   opa.ts          OPA decision-log events → decisions
// This file is the mapping's public surface.
export {
  DEFAULT_CERBOS_CONVENTION,
  DEFAULT_OPA_CONVENTION,
  STORY_FIELDS,
  UNMAPPED,
  UNMAPPED_MARKER,
  type CerbosConvention,
  type CommonConvention,
  type Engine,
  type OpaConvention,
  type Paths,
  type StoryField,
} from './mapping/conventions.ts';
export { asEffect, asTime, valueAt } from './mapping/values.ts';
export { canonicalJson, deterministicId } from './mapping/digests.ts';
export type { Mapped } from './mapping/assemble.ts';
export {
  mapCerbosEntry,
  type CerbosActionEffect,
  type CerbosCheckInput,
  type CerbosCheckOutput,
  type CerbosDecisionLogEntry,
  type CerbosMappingOptions,
} from './mapping/cerbos.ts';
export { mapOpaEvent, type OpaMappingOptions } from './mapping/opa.ts';
