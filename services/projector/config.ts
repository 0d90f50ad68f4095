// The projector's own settings, parsed once from the environment (the shared
// config covers brokers and topics). Tier mapping defaults: docs/design.md#the-fold.
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';
import { tierSchema } from '../../schemas/events.ts';
import { err, ok, type FieldError, type Result } from '../../schemas/result.ts';
import { DEFAULT_FOLD_CONFIG, DEFAULT_TIER_MAPPING, type FoldConfig } from './evolve.ts';

/** How output and consumed offsets advance together (README, "Delivery modes"). */
export type Delivery = 'transactional' | 'idempotent';
// Idempotent: its PDP-facing step is one Produce instead of a transaction (README, "Delivery modes", bench figures).
export const DEFAULT_DELIVERY: Delivery = 'idempotent';

const tierMappingSchema = z.strictObject({
  injection: z.strictObject({ low: tierSchema, medium: tierSchema, high: tierSchema, critical: tierSchema }).partial().optional(),
  roleRevoked: tierSchema.optional(),
  consentRevoked: tierSchema.optional(),
  sessionEnded: tierSchema.optional(),
});

const json = z.string().transform((s, ctx) => {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
    return z.NEVER;
  }
});

const envSchema = z.object({
  TRUSTFOLD_PROJECTOR_GROUP: z.string().min(1).default('trustfold-projector'),
  TRUSTFOLD_PROJECTOR_TICK_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
  TRUSTFOLD_PROJECTOR_MAX_EVENT_SKEW_MS: z.coerce.number().int().min(0).default(DEFAULT_FOLD_CONFIG.maxEventSkewMs),
  /** e.g. {"injection":{"low":"restricted"},"roleRevoked":"restricted"}; unset keys keep their defaults. */
  TRUSTFOLD_TIER_MAPPING: json.pipe(tierMappingSchema).optional(),
  /**
   * How output and consumed offsets advance together: `transactional` (one Kafka
   * transaction per group) or `idempotent` (states, then changelog, then offsets;
   * a replay republishes identical states — README, "Delivery modes").
   */
  TRUSTFOLD_PROJECTOR_DELIVERY: z.enum(['transactional', 'idempotent']).optional(),
  /**
   * Several instances in one group (README, "Scaling out"): partition tasks,
   * the global table, per-partition transactional ids; `transactional`
   * delivery by default then, `idempotent` fenced by the epoch rule.
   */
  TRUSTFOLD_PROJECTOR_SCALE_OUT: z.enum(['true', 'false']).default('false'),
  /** Scale-out: warm standby of every changelog partition on every instance (memory: all partitions' records), for a fast takeover. */
  TRUSTFOLD_PROJECTOR_STANDBY: z.enum(['true', 'folded', 'bytes', 'false']).default('true'),
  /** Consumer session timeout: how long a killed instance holds its partitions (the broker's group.min.session.timeout.ms bounds it from below). */
  TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(10_000),
  /** Log the output transactions' step timings every this many ms (0: never). */
  TRUSTFOLD_PROJECTOR_TIMING_LOG_MS: z.coerce.number().int().min(0).default(0),
});

export type ProjectorConfig = { groupId: string; tickIntervalMs: number; fold: FoldConfig; timingLogMs: number; delivery: Delivery; scaleOut: boolean; standby: false | 'folded' | 'bytes'; sessionTimeoutMs: number };

export const parseProjectorConfig = (env: Record<string, string | undefined>): Result<ProjectorConfig, FieldError[]> => {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) return err(zodIssues(r.error));
  const scaleOut = r.data.TRUSTFOLD_PROJECTOR_SCALE_OUT === 'true';
  // Scale-out keeps transactional as its default: switching a running deployment's mode needs a clean stop (README, "Delivery modes").
  const delivery: Delivery = r.data.TRUSTFOLD_PROJECTOR_DELIVERY ?? (scaleOut ? 'transactional' : DEFAULT_DELIVERY);
  const m = r.data.TRUSTFOLD_TIER_MAPPING ?? {};
  const fold: FoldConfig = {
    ...DEFAULT_FOLD_CONFIG,
    maxEventSkewMs: r.data.TRUSTFOLD_PROJECTOR_MAX_EVENT_SKEW_MS,
    tiers: {
      injection: { ...DEFAULT_TIER_MAPPING.injection, ...Object.fromEntries(Object.entries(m.injection ?? {}).filter(([, v]) => v !== undefined)) },
      roleRevoked: m.roleRevoked ?? DEFAULT_TIER_MAPPING.roleRevoked,
      consentRevoked: m.consentRevoked ?? DEFAULT_TIER_MAPPING.consentRevoked,
      sessionEnded: m.sessionEnded ?? DEFAULT_TIER_MAPPING.sessionEnded,
    },
  };
  return ok({ groupId: r.data.TRUSTFOLD_PROJECTOR_GROUP, tickIntervalMs: r.data.TRUSTFOLD_PROJECTOR_TICK_MS, fold, timingLogMs: r.data.TRUSTFOLD_PROJECTOR_TIMING_LOG_MS, delivery, scaleOut, standby: r.data.TRUSTFOLD_PROJECTOR_STANDBY === 'false' ? false : r.data.TRUSTFOLD_PROJECTOR_STANDBY === 'bytes' ? 'bytes' : 'folded', sessionTimeoutMs: r.data.TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS });
};
