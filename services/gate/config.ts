// The gateway's config file (JSON): which upstream MCP servers to proxy, how
// agents reach it, how tokens map to the chain, and the built-in rules.
// Parsed once, with every problem named by its path; unknown keys are errors
// (a typo must not silently drop a rule).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SEVERITIES, tierSchema } from '../../schemas/events.ts';
import { err, formatPath, ok, type FieldError, type Result } from '../../schemas/result.ts';
import type { ToolPolicy } from './catalog.ts';
import { DEFAULT_CLAIMS, type ClaimNames } from './claims.ts';
import { DESTRUCTIVE_ACTIONS, type Rules } from './rules.ts';

const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only (it prefixes tool names)');
const timeoutMs = z.number().int().min(100).max(3_600_000).default(60_000);

const stdioUpstream = z.strictObject({
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().min(1).optional(),
  timeout_ms: timeoutMs,
});
const httpUpstream = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  headers: z.record(z.string(), z.string()).optional(),
  timeout_ms: timeoutMs,
});
const upstreamSchema = z.union([stdioUpstream, httpUpstream], { error: 'an upstream is either {command, args?, env?, cwd?} (stdio) or {url, headers?} (Streamable HTTP)' });

const toolSchema = z.strictObject({
  action: z.string().min(1).max(256).optional(),
  destructive: z.boolean().optional(),
  resource: z.string().min(1).max(4096).optional(),
  requires_scopes: z.array(z.string().min(1)).optional(),
  /** Roles the tool exercises: a call is denied once the delegator had one of them revoked. */
  requires_roles: z.array(z.string().min(1).max(256)).max(64).optional(),
  hidden: z.boolean().optional(),
});

export const gateFileSchema = z.strictObject({
  upstreams: z.record(name, upstreamSchema).refine((u) => Object.keys(u).length > 0, 'at least one upstream'),
  listen: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8090),
      path: z.string().startsWith('/').default('/mcp'),
    })
    .prefault({}),
  namespace_separator: z.string().regex(/^[_.\-/]{1,3}$/, '1 to 3 of _ . - /').default('__'),
  claims: z
    .strictObject({
      session: z.string().min(1).default(DEFAULT_CLAIMS.session),
      consent: z.string().min(1).default(DEFAULT_CLAIMS.consent),
      intent: z.string().min(1).default(DEFAULT_CLAIMS.intent),
    })
    .prefault({}),
  /** `_meta` key naming the session when the token names none; null: only the token may. */
  session_meta_key: z.string().min(1).nullable().default('trustfold/session'),
  rules: z
    .strictObject({
      destructive_actions: z.array(z.string().min(1)).default([...DESTRUCTIVE_ACTIONS]),
      restrict_destructive_at: tierSchema.default('restricted'),
      unknown_trust: z.enum(['deny_destructive', 'deny']).default('deny_destructive'),
      /** Destructive calls need step-up approval from this tier up; null: never. */
      step_up_destructive_at: tierSchema.nullable().default(null),
    })
    .prefault({}),
  /** Who decides: the built-in `rules`, or a Cerbos PDP asked with the live trust as attributes (services/gate/README.md). */
  policy: z
    .discriminatedUnion('engine', [
      z.strictObject({ engine: z.literal('builtin') }),
      z.strictObject({
        engine: z.literal('cerbos'),
        /** Cerbos's HTTP listen address. */
        url: z.url({ protocol: /^https?$/ }),
        timeout_ms: z.number().int().min(1).max(60_000).default(500),
        resource_kind: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/).default('mcp_tool'),
        principal_roles: z.array(z.string().min(1).max(128)).min(1).max(16).default(['agent']),
        policy_version: z.string().min(1).max(128).optional(),
      }),
    ], { error: 'policy is {"engine": "builtin"} or {"engine": "cerbos", "url": …}' })
    .default({ engine: 'builtin' }),
  tools: z.record(z.string().min(1), toolSchema).default({}),
  audit: z
    .strictObject({
      /** Ingest's base URL (decisions go through POST /v1/events). */
      url: z.url().default('http://127.0.0.1:8080'),
      /** Which allowed calls wait for their decision to be stored before they are forwarded. */
      durable: z.enum(['destructive', 'all', 'none']).default('destructive'),
      pdp_id: z.string().min(1).max(256).default('trustfold-gate'),
      policy_id: z.string().min(1).max(256).default('P-trustfold-gate'),
      policy_version: z.string().min(1).max(256).default('1'),
    })
    .prefault({}),
  /** The signal raised against the sessions that used a tool whose description or schema changed. */
  tool_change: z.strictObject({ severity: z.enum(SEVERITIES).default('low') }).prefault({}),
  /** How long an approval request can be redeemed by a retry after it was issued (a grant is used once). */
  step_up: z.strictObject({ ttl_seconds: z.number().int().min(1).max(86_400).default(600) }).prefault({}),
});
export type GateFile = z.infer<typeof gateFileSchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;

export type GateConfig = {
  upstreams: Record<string, UpstreamConfig>;
  listen: GateFile['listen'];
  separator: string;
  namespaced: boolean;
  claims: ClaimNames;
  sessionMetaKey: string | null;
  rules: Rules;
  policy: GateFile['policy'];
  tools: Record<string, ToolPolicy>;
  audit: GateFile['audit'];
  toolChangeSeverity: GateFile['tool_change']['severity'];
  stepUpTtlMs: number;
};

export const isStdio = (u: UpstreamConfig): u is z.infer<typeof stdioUpstream> => 'command' in u;

export const gateConfigFrom = (f: GateFile): GateConfig => ({
  upstreams: f.upstreams,
  listen: f.listen,
  separator: f.namespace_separator,
  namespaced: Object.keys(f.upstreams).length > 1,
  claims: f.claims,
  sessionMetaKey: f.session_meta_key,
  rules: {
    destructiveActions: new Set(f.rules.destructive_actions),
    restrictDestructiveAt: f.rules.restrict_destructive_at,
    unknownTrust: f.rules.unknown_trust,
    stepUpDestructiveAt: f.rules.step_up_destructive_at,
  },
  policy: f.policy,
  tools: Object.fromEntries(
    Object.entries(f.tools).map(([k, t]) => [
      k,
      { action: t.action, destructive: t.destructive, resource: t.resource, requiresScopes: t.requires_scopes, requiresRoles: t.requires_roles, hidden: t.hidden } satisfies ToolPolicy,
    ]),
  ),
  audit: f.audit,
  toolChangeSeverity: f.tool_change.severity,
  stepUpTtlMs: f.step_up.ttl_seconds * 1000,
});

/** The config as a value; JSON syntax errors and every schema problem come back as field errors. */
export const parseGateConfig = (input: unknown): Result<GateConfig, FieldError[]> => {
  const r = gateFileSchema.safeParse(input);
  if (!r.success) {
    return err(
      r.error.issues.map((i) => ({
        path: formatPath(i.path),
        // A bad record key says why the key is bad, not just that it is.
        message: i.code === 'invalid_key' ? `invalid name: ${i.issues.map((x) => x.message).join('; ')}` : i.message,
      })),
    );
  }
  return ok(gateConfigFrom(r.data));
};

export const parseGateConfigText = (text: string): Result<GateConfig, FieldError[]> => {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return err([{ path: '(root)', message: `not JSON: ${(e as Error).message}` }]);
  }
  return parseGateConfig(json);
};

export const loadGateConfig = (file: string): Result<GateConfig, FieldError[]> => {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return err([{ path: file, message: `cannot read: ${(e as Error).message}` }]);
  }
  return parseGateConfigText(text);
};
