// `trustfold freeze raise|lift|list` and `trustfold token`: the SOC's and a
// developer's hands on a running trustfold. Talks HTTP to ingest like any
// other client; mints tokens from the same secret the server verifies with.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';
import { ALL_TENANTS_SCOPE, loadOrCreateLocalSecret, localSecretFile, mintToken, OPERATOR_TENANT, SCOPES } from '../lib/auth.ts';
import { zodIssues } from '../../schemas/codec.ts';
import { fieldErrorReport, formatFieldErrors, parseConfig, type Config } from '../lib/config.ts';

export type CliIo = {
  env: Record<string, string | undefined>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  fetch: typeof fetch;
};

const USAGE = `usage:
  trustfold token --tenant ID|* --scope S [--scope S]... [--sub NAME] [--ttl 1h]
      mint a dev token from TRUSTFOLD_JWT_SECRET or the local secret; prints the token only.
      No default tenant or scopes: name them. --tenant '*' also needs --scope tenants:all.
      --ttl is at most TRUSTFOLD_JWT_MAX_TTL_S (24 h) unless TRUSTFOLD_JWT_ALLOW_LONG_LIVED is set.
  trustfold freeze raise --reason TEXT [--prefix RESOURCE_PREFIX] [--action A]... [--agent ID]
                         [--ticket ID] [--expires 2h|ISO-8601] [--id FREEZE_ID] [--tenant ID]
  trustfold freeze lift FREEZE_ID [--reason TEXT] [--tenant ID]
  trustfold freeze list [--tenant ID] [--json]
  trustfold audit verify [--tenant T] [--log L] | verify --bundle DIR [--key K] | export --session S --bundle DIR
      the tamper-evident audit log: verify the store, export or verify an evidence bundle offline
  trustfold gate --config FILE [--stdio] [--port N]
      an MCP gateway judging every tools/call on live session trust (trustfold gate --help)
common: --url URL (TRUSTFOLD_URL, default http://127.0.0.1:$PORT)  --token JWT (TRUSTFOLD_TOKEN;
        default: a 5-minute token minted from the local secret)`;

const cliEnv = z.object({
  TRUSTFOLD_URL: z.url().optional(),
  TRUSTFOLD_TOKEN: z.string().min(1).optional(),
});

class UsageError extends Error {}

/** "90", "90s", "15m", "2h", "7d" → seconds. */
export const parseDuration = (s: string): number => {
  const m = /^(\d+)\s*([smhd]?)$/.exec(s.trim());
  if (!m) throw new UsageError(`not a duration: "${s}" (use e.g. 90s, 15m, 2h, 7d)`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
};

type Parsed = { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
const parse = (args: string[], options: ParseArgsConfig['options']): Parsed => {
  try {
    return parseArgs({ args, options: { url: { type: 'string' }, token: { type: 'string' }, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
};

type Ctx = { io: CliIo; config: Config; env: z.infer<typeof cliEnv> };

const secretOf = (ctx: Ctx): string => ctx.config.auth.secret ?? loadOrCreateLocalSecret(localSecretFile(ctx.config)).secret;

const tokenCommand = async (ctx: Ctx, args: string[]): Promise<number> => {
  const { values } = parse(args, {
    sub: { type: 'string', default: 'dev' },
    tenant: { type: 'string' },
    scope: { type: 'string', multiple: true },
    ttl: { type: 'string', default: '1h' },
  });
  if (ctx.config.auth.jwksUrl !== undefined && ctx.config.auth.secret === undefined) {
    throw new UsageError('this deployment verifies tokens with a JWKS URL; get a token from its identity provider');
  }
  if (values.tenant === undefined) throw new UsageError(`token needs --tenant (a tenant id, or ${OPERATOR_TENANT} with --scope ${ALL_TENANTS_SCOPE})`);
  const scopes = values.scope as string[] | undefined;
  if (scopes === undefined) throw new UsageError(`token needs at least one --scope (known: ${SCOPES.join(' ')})`);
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new UsageError(`unknown scope ${unknown.join(', ')} (known: ${SCOPES.join(' ')})`);
  if (values.tenant === OPERATOR_TENANT && !scopes.includes(ALL_TENANTS_SCOPE)) {
    throw new UsageError(`--tenant ${OPERATOR_TENANT} needs --scope ${ALL_TENANTS_SCOPE}: cross-tenant reach is asked for explicitly`);
  }
  const ttlSeconds = parseDuration(String(values.ttl));
  const { maxTtlSeconds, allowLongLived } = ctx.config.auth;
  if (ttlSeconds <= 0) throw new UsageError('--ttl must be positive');
  if (ttlSeconds > maxTtlSeconds && !allowLongLived) {
    throw new UsageError(`--ttl ${ttlSeconds}s is over the ${maxTtlSeconds}s the server accepts (TRUSTFOLD_JWT_MAX_TTL_S; long-lived tokens need TRUSTFOLD_JWT_ALLOW_LONG_LIVED=true)`);
  }
  const token = await mintToken(
    {
      sub: String(values.sub),
      tenant: String(values.tenant),
      scopes,
      ttlSeconds,
      ...(ctx.config.auth.issuer !== undefined ? { issuer: ctx.config.auth.issuer } : {}),
      ...(ctx.config.auth.audience !== undefined ? { audience: ctx.config.auth.audience } : {}),
    },
    secretOf(ctx),
  );
  ctx.io.stderr(`token for sub=${String(values.sub)} tenant=${String(values.tenant)} scopes="${scopes.join(' ')}" valid ${ttlSeconds}s\n`);
  ctx.io.stdout(`${token}\n`);
  return 0;
};

type ApiResult = { status: number; body: unknown };

// What the CLI reads of the server's answers, parsed rather than cast (loose:
// `--json` prints the answer whole, fields this client does not know included).
const errorReply = z.object({
  error: z.object({ code: z.string(), message: z.string(), errors: z.array(z.object({ path: z.string(), message: z.string() })).optional() }),
});
const freezeEventReply = z.looseObject({ freeze_id: z.string(), event_id: z.string() });
const freezeRow = z.looseObject({
  freeze_id: z.string(),
  scope: z.looseObject({ resource_prefix: z.string().optional(), actions: z.array(z.string()).optional(), agent_id: z.string().optional() }),
  reason: z.string(),
  raised_by: z.string().optional(),
  since: z.string().optional(),
  expires_at: z.string().optional(),
  ticket: z.string().optional(),
});
const freezeListReply = z.looseObject({ tenant_id: z.string(), freezes: z.array(freezeRow) });

/** The body of a successful answer in the shape `schema` says, or a UsageError naming what differs. */
const replyOf = <T>(schema: z.ZodType<T>, r: ApiResult): T => {
  const p = schema.safeParse(r.body);
  if (p.success) return p.data;
  throw new UsageError(`unexpected answer from trustfold (${r.status}): ${formatFieldErrors(zodIssues(p.error))}`);
};

const api = async (ctx: Ctx, values: Record<string, unknown>, method: string, path: string, tenant: string | undefined, body?: unknown): Promise<ApiResult> => {
  const base = (values['url'] as string | undefined) ?? ctx.env.TRUSTFOLD_URL ?? `http://127.0.0.1:${ctx.config.http.port}`;
  const token =
    (values['token'] as string | undefined) ??
    ctx.env.TRUSTFOLD_TOKEN ??
    (await mintToken(
      { sub: 'trustfold-cli', tenant: tenant ?? OPERATOR_TENANT, scopes: ['freeze:write', 'freeze:read', ...(tenant === undefined ? [ALL_TENANTS_SCOPE] : [])], ttlSeconds: 300 },
      secretOf(ctx),
    ));
  let res: Response;
  try {
    res = await ctx.io.fetch(new URL(path, base), {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new UsageError(`cannot reach trustfold at ${base}: ${(e as Error).message}`);
  }
  return { status: res.status, body: await res.json().catch(() => undefined) };
};

const failure = (ctx: Ctx, r: ApiResult): number => {
  const parsed = errorReply.safeParse(r.body);
  const e = parsed.success ? parsed.data.error : undefined;
  ctx.io.stderr(`error ${r.status}${e ? ` ${e.code}: ${e.message}` : ''}\n`);
  for (const x of e?.errors ?? []) ctx.io.stderr(`  ${x.path}: ${x.message}\n`);
  if (r.status === 503) ctx.io.stderr('  Kafka is unavailable; nothing was stored. Try again shortly.\n');
  return r.status === 401 || r.status === 403 ? 3 : 1;
};

const expiresAt = (s: string, now: Date): string => {
  if (/^\d+\s*[smhd]?$/.test(s.trim())) return new Date(now.getTime() + parseDuration(s) * 1000).toISOString();
  if (Number.isNaN(Date.parse(s))) throw new UsageError(`--expires: "${s}" is neither a duration (2h) nor an RFC 3339 time`);
  return s;
};

const freezeCommand = async (ctx: Ctx, args: string[]): Promise<number> => {
  const [sub, ...rest] = args;
  if (sub === 'raise') {
    const { values } = parse(rest, {
      reason: { type: 'string' },
      prefix: { type: 'string' },
      action: { type: 'string', multiple: true },
      agent: { type: 'string' },
      ticket: { type: 'string' },
      expires: { type: 'string' },
      id: { type: 'string' },
      tenant: { type: 'string' },
    });
    if (values.reason === undefined) throw new UsageError('freeze raise needs --reason');
    const scope = {
      ...(values.prefix !== undefined ? { resource_prefix: String(values.prefix) } : {}),
      ...(values.action !== undefined ? { actions: values.action as string[] } : {}),
      ...(values.agent !== undefined ? { agent_id: String(values.agent) } : {}),
    };
    const tenant = values.tenant as string | undefined;
    const body = {
      scope,
      reason: String(values.reason),
      ...(values.ticket !== undefined ? { ticket: String(values.ticket) } : {}),
      ...(values.expires !== undefined ? { expires_at: expiresAt(String(values.expires), new Date()) } : {}),
      ...(values.id !== undefined ? { freeze_id: String(values.id) } : {}),
      ...(tenant !== undefined ? { tenant_id: tenant } : {}),
    };
    const r = await api(ctx, values, 'POST', '/v1/freezes', tenant, body);
    if (r.status !== 201) return failure(ctx, r);
    const { freeze_id, event_id } = replyOf(freezeEventReply, r);
    const what = Object.keys(scope).length === 0 ? 'everything' : describeScope(scope);
    ctx.io.stdout(`raised freeze ${freeze_id} on ${what}${body.expires_at ? ` until ${body.expires_at}` : ''}\n  event ${event_id}\n`);
    return 0;
  }
  if (sub === 'lift') {
    const { values, positionals } = parse(rest, { reason: { type: 'string' }, tenant: { type: 'string' } });
    const id = positionals[0];
    if (id === undefined) throw new UsageError('freeze lift needs the FREEZE_ID');
    const tenant = values.tenant as string | undefined;
    const q = new URLSearchParams();
    if (tenant !== undefined) q.set('tenant', tenant);
    if (values.reason !== undefined) q.set('reason', String(values.reason));
    const r = await api(ctx, values, 'DELETE', `/v1/freezes/${encodeURIComponent(id)}${q.size > 0 ? `?${q}` : ''}`, tenant);
    if (r.status !== 200) return failure(ctx, r);
    ctx.io.stdout(`lifted freeze ${id}\n  event ${replyOf(freezeEventReply, r).event_id}\n`);
    return 0;
  }
  if (sub === 'list') {
    const { values } = parse(rest, { tenant: { type: 'string' }, json: { type: 'boolean', default: false } });
    const tenant = values.tenant as string | undefined;
    const r = await api(ctx, values, 'GET', `/v1/freezes${tenant !== undefined ? `?tenant=${encodeURIComponent(tenant)}` : ''}`, tenant);
    if (r.status !== 200) return failure(ctx, r);
    const { tenant_id, freezes } = replyOf(freezeListReply, r);
    if (values.json === true) {
      ctx.io.stdout(`${JSON.stringify(r.body, null, 2)}\n`);
      return 0;
    }
    ctx.io.stdout(formatFreezes(tenant_id, freezes));
    return 0;
  }
  throw new UsageError(`unknown freeze command "${sub ?? ''}" (raise, lift, list)`);
};

type FreezeRow = z.infer<typeof freezeRow>;

const describeScope = (s: FreezeRow['scope']): string =>
  [
    s.resource_prefix !== undefined ? `resources ${s.resource_prefix}*` : undefined,
    s.actions !== undefined ? `actions ${s.actions.join(',')}` : undefined,
    s.agent_id !== undefined ? `agent ${s.agent_id}` : undefined,
  ]
    .filter((x) => x !== undefined)
    .join(', ') || 'everything';

/** A plain table a responder can read at 3 a.m. */
export const formatFreezes = (tenant: string, freezes: readonly FreezeRow[]): string => {
  if (freezes.length === 0) return `no active freezes in tenant ${tenant}\n`;
  const rows = freezes.map((f) => [f.freeze_id, describeScope(f.scope), f.since ?? '', f.expires_at ?? '', f.raised_by ?? '', f.ticket ?? '', f.reason]);
  const head = ['FREEZE', 'SCOPE', 'SINCE', 'EXPIRES', 'BY', 'TICKET', 'REASON'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return `${freezes.length} active freeze${freezes.length === 1 ? '' : 's'} in tenant ${tenant}\n${[line(head), ...rows.map(line)].join('\n')}\n`;
};

/** `audit verify|export`: the tamper-evident log's commands (services/audit-log/cli.ts); a local token reads every tenant. */
const auditLogCommand = async (ctx: Ctx, args: string[]): Promise<number> => {
  const { runAuditLogCli } = await import('../audit-log/cli.ts');
  const token = async (): Promise<string> =>
    ctx.env.TRUSTFOLD_TOKEN ?? mintToken({ sub: 'trustfold-cli', tenant: OPERATOR_TENANT, scopes: ['audit:read', ALL_TENANTS_SCOPE], ttlSeconds: 300 }, secretOf(ctx));
  return runAuditLogCli(args, { baseUrl: ctx.env.TRUSTFOLD_URL ?? `http://127.0.0.1:${ctx.config.http.port}`, token, fetch: ctx.io.fetch, stdout: ctx.io.stdout, stderr: ctx.io.stderr });
};

/** Runs one command; returns the exit code (0 ok, 1 failed, 2 usage, 3 auth). */
export const runCli = async (argv: string[], partial: Partial<CliIo> = {}): Promise<number> => {
  const io: CliIo = {
    env: partial.env ?? process.env,
    stdout: partial.stdout ?? ((s) => void process.stdout.write(s)),
    stderr: partial.stderr ?? ((s) => void process.stderr.write(s)),
    fetch: partial.fetch ?? fetch,
  };
  const cfg = parseConfig(io.env);
  if (!cfg.ok) {
    io.stderr(fieldErrorReport('trustfold: invalid configuration', cfg.error));
    return 2;
  }
  const env = cliEnv.safeParse(Object.fromEntries(Object.entries(io.env).filter(([, v]) => v !== undefined && v !== '')));
  if (!env.success) {
    io.stderr(`trustfold: invalid environment: ${formatFieldErrors(zodIssues(env.error))}\n`);
    return 2;
  }
  const ctx: Ctx = { io, config: cfg.value, env: env.data };
  const [command, ...rest] = argv;
  try {
    if (command === 'token') return await tokenCommand(ctx, rest);
    if (command === 'freeze') return await freezeCommand(ctx, rest);
    if (command === 'gate') return await (await import('../gate/main.ts')).runGate(rest, io.env);
    if (command === 'audit' && (rest[0] === 'verify' || rest[0] === 'export')) return await auditLogCommand(ctx, rest);
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      io.stdout(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    }
    throw new UsageError(`unknown command "${command}"`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`trustfold: ${e.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
};
