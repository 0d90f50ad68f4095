// `trustfold audit session|delegator|explain`: a thin client of the forensics
// API. bin/trustfold passes argv (after `audit`), the base URL and a token.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';

export type AuditCliOptions = {
  baseUrl: string;
  token: string;
  fetch?: typeof fetch;
  out?: (s: string) => void;
  err?: (s: string) => void;
  now?: () => Date;
};

const USAGE = `usage:
  trustfold audit session <session-id> [--tenant T] [--json]      timeline of a session
  trustfold audit delegator <user-id> [--since 24h] [--tenant T] [--json]
                                                                  a delegator's sessions
  trustfold audit explain <event-id> [--tenant T] [--json]        one decision and its story
`;

/** `24h`, `7d`, `30m`, `90s` before now, or an RFC 3339 instant. */
export const parseSince = (s: string, now: Date): string | undefined => {
  const m = /^(\d+)([smhd])$/.exec(s.trim());
  if (m?.[1] !== undefined && m[2] !== undefined) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(m[1]) * unit).toISOString();
  }
  const t = Date.parse(s);
  return Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(s) ? undefined : new Date(t).toISOString();
};

/** A plain text table: a header, a rule, then rows; columns as wide as their widest cell. */
export const formatTable = (header: readonly string[], rows: readonly (readonly string[])[]): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
};

// What the CLI reads of the forensics API's answers, parsed rather than cast.
// Loose objects: `--json` prints the answer whole, fields this client does not know included.
const timelineEntry = z.looseObject({
  kind: z.enum(['decision', 'signal', 'trust']),
  at: z.string(),
  event_id: z.string().optional(),
  version: z.number().optional(),
  tier: z.string().optional(),
  decision: z
    .looseObject({
      chain: z.array(z.looseObject({ kind: z.string(), id: z.string() })),
      request: z.looseObject({ tool: z.string(), action: z.string(), resource: z.string() }),
      decision: z.looseObject({ effect: z.string(), policy_id: z.string(), rule_id: z.string().optional() }),
    })
    .optional(),
  signal: z
    .looseObject({ kind: z.string(), signal_id: z.string().optional(), freeze_id: z.string().optional(), severity: z.string().optional(), user_id: z.string().optional(), role: z.string().optional() })
    .optional(),
  trust: z.looseObject({ causes: z.array(z.looseObject({ ref: z.string() })), freezes: z.array(z.looseObject({ freeze_id: z.string() })) }).optional(),
});
type TimelineEntry = z.infer<typeof timelineEntry>;
const timelinePage = z.looseObject({ entries: z.array(timelineEntry), next_cursor: z.string().nullable() });
const delegatorSession = z.looseObject({
  tenant: z.string(),
  session_id: z.string(),
  decisions: z.number(),
  allows: z.number(),
  denies: z.number(),
  step_ups: z.number(),
  last_tier: z.string().nullable(),
  last_at: z.string(),
  agents: z.array(z.string()),
});
const delegatorPage = z.looseObject({ sessions: z.array(delegatorSession), next_cursor: z.string().nullable() });
const explained = z.looseObject({
  story: z.string(),
  decision: z.looseObject({ event_id: z.string(), tenant_id: z.string(), session_id: z.string() }),
  trust: z.looseObject({ met: z.looseObject({ version: z.number(), tier: z.string() }).nullable(), basis: z.string() }),
  signals: z.array(z.looseObject({ kind: z.string(), event_id: z.string() })),
});
const errorReply = z.object({ error: z.object({ message: z.string().optional() }).optional() });

export const timelineRow = (e: TimelineEntry): string[] => {
  const time = e.at.replace('T', ' ').replace(/\.000Z$/, 'Z');
  switch (e.kind) {
    case 'decision': {
      const d = e.decision;
      if (d === undefined) return [time, 'decision', '', e.event_id ?? ''];
      const agent = d.chain.findLast((l) => l.kind === 'agent')?.id ?? '?';
      return [time, 'decision', `${d.decision.effect.toUpperCase()} ${agent} ${d.request.tool}.${d.request.action} ${d.request.resource}`, `${d.decision.policy_id}${d.decision.rule_id !== undefined ? `/${d.decision.rule_id}` : ''}  ${e.event_id ?? ''}`];
    }
    case 'signal': {
      const s = e.signal;
      const ref = s?.signal_id ?? s?.freeze_id ?? (s?.role !== undefined ? `${s.user_id ?? ''} ${s.role}` : (s?.user_id ?? ''));
      return [time, 'signal', `${s?.kind ?? ''}${ref !== '' ? ` ${ref}` : ''}${s?.severity !== undefined ? ` (${s.severity})` : ''}`, e.event_id ?? ''];
    }
    case 'trust': {
      const causes = [...(e.trust?.causes.map((c) => c.ref) ?? []), ...(e.trust?.freezes.map((f) => `freeze ${f.freeze_id}`) ?? [])];
      return [time, 'trust', `v${e.version ?? '?'} ${e.tier ?? ''}`, causes.join(', ')];
    }
    default:
      return [time, String(e.kind satisfies never), '', ''];
  }
};

export const runAuditCli = async (argv: readonly string[], opts: AuditCliOptions): Promise<number> => {
  const out = opts.out ?? ((s: string) => void process.stdout.write(s));
  const errOut = opts.err ?? ((s: string) => void process.stderr.write(s));
  const doFetch = opts.fetch ?? fetch;
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { tenant: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    });
  } catch (e) {
    errOut(`${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  const [command, subject] = parsed.positionals;
  if (parsed.values.help === true || command === undefined) {
    out(USAGE);
    return command === undefined && parsed.values.help !== true ? 2 : 0;
  }
  if (subject === undefined || !['session', 'delegator', 'explain'].includes(command)) {
    errOut(USAGE);
    return 2;
  }

  const call = async <T>(schema: z.ZodType<T>, path: string, query: Record<string, string | undefined> = {}): Promise<T | undefined> => {
    const url = new URL(path, opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`);
    for (const [k, v] of Object.entries({ ...query, tenant: parsed.values.tenant })) if (v !== undefined) url.searchParams.set(k, v);
    const res = await doFetch(url, { headers: { authorization: `Bearer ${opts.token}`, accept: 'application/json' } });
    const body: unknown = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = errorReply.safeParse(body);
      errOut(`trustfold audit: ${res.status} ${(e.success ? e.data.error?.message : undefined) ?? res.statusText}\n`);
      return undefined;
    }
    const p = schema.safeParse(body);
    if (!p.success) {
      errOut(`trustfold audit: unexpected answer from ${url.pathname}: ${zodIssues(p.error).map((i) => `${i.path}: ${i.message}`).join('; ')}\n`);
      return undefined;
    }
    return p.data;
  };
  const enc = encodeURIComponent;

  if (command === 'session') {
    const entries: TimelineEntry[] = [];
    let cursor: string | undefined;
    do {
      const page = await call(timelinePage, `v1/audit/sessions/${enc(subject)}/timeline`, { limit: '1000', cursor });
      if (page === undefined) return 1;
      entries.push(...page.entries);
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
    if (parsed.values.json === true) out(`${JSON.stringify(entries, null, 2)}\n`);
    else if (entries.length === 0) out(`no audit records for session ${subject}\n`);
    else out(formatTable(['TIME', 'KIND', 'WHAT', 'DETAIL'], entries.map(timelineRow)));
    return 0;
  }

  if (command === 'delegator') {
    const since = parsed.values.since !== undefined ? parseSince(parsed.values.since, (opts.now ?? (() => new Date()))()) : undefined;
    if (parsed.values.since !== undefined && since === undefined) {
      errOut(`trustfold audit: --since must be like 24h, 7d, 30m or an RFC 3339 time, got ${parsed.values.since}\n`);
      return 2;
    }
    const sessions: z.infer<typeof delegatorSession>[] = [];
    let cursor: string | undefined;
    do {
      const page = await call(delegatorPage, `v1/audit/delegators/${enc(subject)}/sessions`, { from: since, limit: '1000', cursor });
      if (page === undefined) return 1;
      sessions.push(...page.sessions);
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
    if (parsed.values.json === true) out(`${JSON.stringify(sessions, null, 2)}\n`);
    else if (sessions.length === 0) out(`no sessions of ${subject}${since !== undefined ? ` since ${since}` : ''}\n`);
    else
      out(
        formatTable(
          ['SESSION', 'TENANT', 'AGENTS', 'DECISIONS', 'ALLOW', 'DENY', 'STEP-UP', 'LAST TIER', 'LAST ACTIVITY'],
          sessions.map((s) => [s.session_id, s.tenant, s.agents.join(','), String(s.decisions), String(s.allows), String(s.denies), String(s.step_ups), s.last_tier ?? '-', s.last_at]),
        ),
      );
    return 0;
  }

  const x = await call(explained, `v1/audit/decisions/${enc(subject)}`);
  if (x === undefined) return 1;
  if (parsed.values.json === true) {
    out(`${JSON.stringify(x, null, 2)}\n`);
    return 0;
  }
  out(`${x.story}\n\n`);
  out(
    formatTable(
      ['FIELD', 'VALUE'],
      [
        ['decision', x.decision.event_id],
        ['tenant', x.decision.tenant_id],
        ['session', x.decision.session_id],
        ['trust met', x.trust.met !== null ? `v${x.trust.met.version} ${x.trust.met.tier} (by ${x.trust.basis.replace('_', ' ')})` : 'none recorded'],
        ...x.signals.map((s) => ['signal', `${s.kind} ${s.event_id}`]),
      ],
    ),
  );
  return 0;
};
