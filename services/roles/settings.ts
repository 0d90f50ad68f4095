// Every setting a `trustfold serve` process reads, parsed once from the
// environment (services/main.ts) before anything connects: the common
// configuration (services/lib/config.ts) and the settings of the roles the
// process runs. A role's settings are parsed only where it runs, so a
// sink-only process does not fail on projector settings; every bad variable of
// every parser is reported together.
import type { FieldError, Result } from '../../schemas/result.ts';
import { err, ok } from '../../schemas/result.ts';
import { parseAdapterConfig, type AdapterConfig } from '../adapters/config.ts';
import { parseAuditLogConfig, type AuditLogConfig } from '../audit-log/config.ts';
import { parseDetectConfig, type DetectConfig } from '../detect/config.ts';
import { parseConfig, type Config } from '../lib/config.ts';
import { parseProjectorConfig, type ProjectorConfig } from '../projector/config.ts';
import { parseSsfConfig, type SsfConfig } from '../ssf/config.ts';

export const ROLES = ['ingest', 'projector', 'audit-sink', 'audit-log', 'query', 'cerbos-adapter', 'ssf', 'detect'] as const;
export type Role = (typeof ROLES)[number];
/** `all` is every role but the Cerbos adapter, which needs a Cerbos audit topic to read, `ssf` (OpenID Shared Signals) and `detect` (detections as signals; a consumer of every decision, opt-in while its rules are tuned), asked for by name: `--role all,ssf,detect`. */
export const ALL_ROLES: readonly Role[] = ['ingest', 'projector', 'audit-sink', 'audit-log', 'query'];

/** `all`, one role, or a comma-separated list (`ingest,query`). */
export const parseRoles = (spec: string): Result<ReadonlySet<Role>, string> => {
  const out = new Set<Role>();
  for (const part of spec.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (part === 'all') ALL_ROLES.forEach((r) => out.add(r));
    else if ((ROLES as readonly string[]).includes(part)) out.add(part as Role);
    else return err(`unknown role "${part}" (roles: all, ${ROLES.join(', ')})`);
  }
  return out.size === 0 ? err('no role given') : ok(out);
};

export type Settings = {
  config: Config;
  /** The engines' adapters: OPA's upload route (with ingest) and the Cerbos consumer. Always parsed. */
  adapters: AdapterConfig;
  /**
   * Where a projector runs, or a reader of its output (ingest's freeze list,
   * SSF's TrustView): the delivery mode decides how those read — with
   * transactional output they skip aborted records; with idempotent output
   * every record is final, so reading uncommitted costs nothing.
   */
  projector?: ProjectorConfig;
  /** Where the audit-log writer or the query role (its proofs) runs. */
  auditLog?: AuditLogConfig;
  ssf?: SsfConfig;
  detect?: DetectConfig;
};

/** The settings of a process running `roles`; `base` when the common configuration was parsed already. */
export const parseSettings = (env: Record<string, string | undefined>, roles: ReadonlySet<Role>, base?: Config): Result<Settings, FieldError[]> => {
  const has = (r: Role): boolean => roles.has(r);
  const errors: FieldError[] = [];
  const take = <T>(r: Result<T, FieldError[]>): T | undefined => {
    if (r.ok) return r.value;
    errors.push(...r.error);
    return undefined;
  };
  const config = base ?? take(parseConfig(env));
  const adapters = take(parseAdapterConfig(env));
  const projector = has('projector') || has('ingest') || has('ssf') ? take(parseProjectorConfig(env)) : undefined;
  const auditLog = has('audit-log') || has('query') ? take(parseAuditLogConfig(env)) : undefined;
  const ssf = has('ssf') ? take(parseSsfConfig(env)) : undefined;
  const detect = has('detect') ? take(parseDetectConfig(env)) : undefined;
  if (errors.length > 0 || config === undefined || adapters === undefined) return err(errors);
  return ok({
    config,
    adapters,
    ...(projector !== undefined ? { projector } : {}),
    ...(auditLog !== undefined ? { auditLog } : {}),
    ...(ssf !== undefined ? { ssf } : {}),
    ...(detect !== undefined ? { detect } : {}),
  });
};
