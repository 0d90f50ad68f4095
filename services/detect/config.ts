// The detect role's settings, parsed once from the environment it is given.
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';
import { SEVERITIES } from '../../schemas/events.ts';
import { err, ok, type FieldError, type Result } from '../../schemas/result.ts';
import { RULES, type RuleName, type RulesConfig } from './rules.ts';
import type { Severity } from './signal.ts';

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);
const severity = (def: Severity) => z.enum(SEVERITIES).default(def);
const bool = (def: boolean) => z.enum(['true', 'false']).default(def ? 'true' : 'false').transform((v) => v === 'true');

/** The rules on when TRUSTFOLD_DETECT_RULES is unset (out-of-task needs its tool lists). */
export const DEFAULT_RULES: readonly RuleName[] = ['deny-storm', 'token-replay', 'stale-pdp', 'tool-description-changed'];

const envSchema = z.object({
  TRUSTFOLD_DETECT_GROUP: z.string().min(1).default('trustfold-detect'),
  TRUSTFOLD_DETECT_RULES: z.string().default(DEFAULT_RULES.join(',')),
  TRUSTFOLD_DETECT_LOOKBACK_MS: int(600_000, 0, 7 * 86_400_000),
  TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: int(10, 1, 10_000),
  TRUSTFOLD_DETECT_DENY_STORM_WINDOW_MS: int(60_000, 1, 86_400_000),
  TRUSTFOLD_DETECT_DENY_STORM_SEVERITY: severity('medium'),
  TRUSTFOLD_DETECT_TOKEN_REPLAY_SEVERITY: severity('high'),
  TRUSTFOLD_DETECT_OUT_OF_TASK_SEVERITY: severity('medium'),
  TRUSTFOLD_DETECT_STALE_PDP_SEVERITY: severity('low'),
  TRUSTFOLD_DETECT_STALE_PDP_GRACE_VERSIONS: int(0, 0, 1_000_000),
  TRUSTFOLD_DETECT_STALE_PDP_GRACE_MS: int(1_000, 0, 86_400_000),
  TRUSTFOLD_DETECT_STALE_PDP_SIGNAL: bool(true),
  TRUSTFOLD_DETECT_TOOL_CHANGED_SEVERITY: severity('medium'),
  TRUSTFOLD_DETECT_SETTLE_MS: int(2_000, 0, 60_000),
  TRUSTFOLD_DETECT_CONTEXT_TIMEOUT_MS: int(5_000, 100, 600_000),
  TRUSTFOLD_DETECT_TOKEN_LOOKBACK_MS: int(86_400_000, 0, 30 * 86_400_000),
  TRUSTFOLD_DETECT_MAX_PDPS: int(1_000, 1, 100_000),
  TRUSTFOLD_DETECT_MAX_TRUST_STEPS: int(32, 1, 1_000),
  TRUSTFOLD_DETECT_TASK_TOOLS: z.string().optional(),
  TRUSTFOLD_DETECT_MAX_SESSIONS: int(100_000, 1, 10_000_000),
  TRUSTFOLD_DETECT_MAX_TOKENS: int(100_000, 1, 10_000_000),
});

export type DetectConfig = {
  groupId: string;
  rules: RulesConfig;
  severities: Record<RuleName, Severity>;
  /** How far back (wall time) the rule state is rebuilt from the decisions topic at start; also where a new group starts. */
  lookbackMs: number;
  /** The trust steps and issued tokens the rules look up (stale-pdp, token-replay), and how they are read. */
  context: {
    /** A decision is judged once the session-trust and signals topics were read to ends fetched at least this long after its occurred_at (wall clock). */
    settleMs: number;
    /** Longest wait for the readers to reach those ends; then the batch is judged with what was read (counted). */
    timeoutMs: number;
    /** How far back the signals topic is read at start for token_issued. */
    tokenLookbackMs: number;
    /** Trust steps kept per session (newest), for at most maxSessions sessions. */
    maxSteps: number;
    maxSessions: number;
    maxTokens: number;
  };
};

const taskToolsSchema = z.record(z.string().min(1), z.array(z.string().regex(/^[^:]+:[^:]+$/, 'tool:action or tool:*')).max(1000));

export const parseDetectConfig = (env: Record<string, string | undefined>): Result<DetectConfig, FieldError[]> => {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) return err(zodIssues(r.error));
  const e = r.data;
  const names = e.TRUSTFOLD_DETECT_RULES.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.find((n) => !(RULES as readonly string[]).includes(n));
  if (unknown !== undefined) return err([{ path: 'TRUSTFOLD_DETECT_RULES', message: `unknown rule "${unknown}" (rules: ${RULES.join(', ')})` }]);
  const on = (n: RuleName): boolean => names.includes(n);
  let allowed: Record<string, string[]> | undefined;
  if (e.TRUSTFOLD_DETECT_TASK_TOOLS !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(e.TRUSTFOLD_DETECT_TASK_TOOLS);
    } catch (x) {
      return err([{ path: 'TRUSTFOLD_DETECT_TASK_TOOLS', message: `not JSON: ${(x as Error).message}` }]);
    }
    const t = taskToolsSchema.safeParse(raw);
    if (!t.success) return err(zodIssues(t.error).map((i) => ({ path: `TRUSTFOLD_DETECT_TASK_TOOLS${i.path === '' ? '' : `.${i.path}`}`, message: i.message })));
    allowed = t.data;
  }
  if (on('out-of-task') && allowed === undefined) return err([{ path: 'TRUSTFOLD_DETECT_TASK_TOOLS', message: 'out-of-task needs the allowed tools per task class (JSON: {"refactor": ["git:*"]})' }]);
  if (e.TRUSTFOLD_DETECT_LOOKBACK_MS < e.TRUSTFOLD_DETECT_DENY_STORM_WINDOW_MS && on('deny-storm')) {
    return err([{ path: 'TRUSTFOLD_DETECT_LOOKBACK_MS', message: 'must be at least TRUSTFOLD_DETECT_DENY_STORM_WINDOW_MS, or a restart forgets a burst in progress' }]);
  }
  const maxSessions = e.TRUSTFOLD_DETECT_MAX_SESSIONS;
  return ok({
    groupId: e.TRUSTFOLD_DETECT_GROUP,
    lookbackMs: e.TRUSTFOLD_DETECT_LOOKBACK_MS,
    rules: {
      ...(on('deny-storm') && { denyStorm: { threshold: e.TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD, windowMs: e.TRUSTFOLD_DETECT_DENY_STORM_WINDOW_MS, maxSessions } }),
      ...(on('token-replay') && { tokenReplay: { maxTokens: e.TRUSTFOLD_DETECT_MAX_TOKENS } }),
      ...(on('out-of-task') && allowed !== undefined && { outOfTask: { allowed, maxSessions } }),
      ...(on('stale-pdp') && {
        stalePdp: { graceVersions: e.TRUSTFOLD_DETECT_STALE_PDP_GRACE_VERSIONS, graceMs: e.TRUSTFOLD_DETECT_STALE_PDP_GRACE_MS, signal: e.TRUSTFOLD_DETECT_STALE_PDP_SIGNAL, maxPdps: e.TRUSTFOLD_DETECT_MAX_PDPS, maxSessions },
      }),
      ...(on('tool-description-changed') && { toolChanged: { maxSessions, maxToolsPerSession: 256 } }),
    },
    severities: {
      'deny-storm': e.TRUSTFOLD_DETECT_DENY_STORM_SEVERITY,
      'token-replay': e.TRUSTFOLD_DETECT_TOKEN_REPLAY_SEVERITY,
      'out-of-task': e.TRUSTFOLD_DETECT_OUT_OF_TASK_SEVERITY,
      'stale-pdp': e.TRUSTFOLD_DETECT_STALE_PDP_SEVERITY,
      'tool-description-changed': e.TRUSTFOLD_DETECT_TOOL_CHANGED_SEVERITY,
    },
    context: {
      settleMs: e.TRUSTFOLD_DETECT_SETTLE_MS,
      timeoutMs: e.TRUSTFOLD_DETECT_CONTEXT_TIMEOUT_MS,
      tokenLookbackMs: e.TRUSTFOLD_DETECT_TOKEN_LOOKBACK_MS,
      maxSteps: e.TRUSTFOLD_DETECT_MAX_TRUST_STEPS,
      maxSessions,
      maxTokens: e.TRUSTFOLD_DETECT_MAX_TOKENS,
    },
  });
};
