// The detect role's settings, parsed once from the environment it is given.
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';
import { SEVERITIES } from '../../schemas/events.ts';
import { err, ok, type FieldError, type Result } from '../../schemas/result.ts';
import { RULES, type RuleName, type RulesConfig } from './rules.ts';
import type { Severity } from './signal.ts';

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);
const severity = (def: Severity) => z.enum(SEVERITIES).default(def);

const envSchema = z.object({
  TRUSTFOLD_DETECT_GROUP: z.string().min(1).default('trustfold-detect'),
  TRUSTFOLD_DETECT_RULES: z.string().default('deny-storm,token-replay'),
  TRUSTFOLD_DETECT_LOOKBACK_MS: int(600_000, 0, 7 * 86_400_000),
  TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: int(10, 1, 10_000),
  TRUSTFOLD_DETECT_DENY_STORM_WINDOW_MS: int(60_000, 1, 86_400_000),
  TRUSTFOLD_DETECT_DENY_STORM_SEVERITY: severity('medium'),
  TRUSTFOLD_DETECT_TOKEN_REPLAY_SEVERITY: severity('high'),
  TRUSTFOLD_DETECT_OUT_OF_TASK_SEVERITY: severity('medium'),
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
    },
    severities: {
      'deny-storm': e.TRUSTFOLD_DETECT_DENY_STORM_SEVERITY,
      'token-replay': e.TRUSTFOLD_DETECT_TOKEN_REPLAY_SEVERITY,
      'out-of-task': e.TRUSTFOLD_DETECT_OUT_OF_TASK_SEVERITY,
    },
  });
};
