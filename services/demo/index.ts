// `npm run demo`: the docs/design.md incident, played against a running
// trustfold through the real MCP gateway: an MCP SDK client (the agent, with a
// delegated token) → `trustfold gate` (in this process, Streamable HTTP) → the
// demo ledger server (a real MCP server over stdio, on a temporary directory,
// whose delete_file really deletes). A detector and the SOC post over HTTP;
// trust transitions come from the SSE stream, which also feeds the gateway's
// view (pushed, no polling); the gateway posts its decisions to ingest; the
// story comes from the audit API.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { SignJWT } from 'jose';
import type { SessionTrust, TrustfoldEventInput } from '../../schemas/events.ts';
import { uuidv7 } from '../../schemas/ids.ts';
import { parseGateConfig } from '../gate/config.ts';
import { startGate, type GateView, type RunningGate } from '../gate/main.ts';
import { mintToken, setUpAuth } from '../lib/auth.ts';
import { configFrom, parseConfig } from '../lib/config.ts';
import { createLogger } from '../lib/log.ts';
import type { TrustLookup } from '../pdp-client/trust-view.ts';

const LEDGER_SERVER = fileURLToPath(new URL('./ledger-server.ts', import.meta.url));

const TENANT = 'acme';
const chain = [
  { kind: 'human', id: 'U-442' },
  { kind: 'agent', id: 'A-17', version: '3.2', owner: 'team-payments' },
] as const;

export type Http = { base: string; token: string };

const call = async (h: Http, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
  const res = await fetch(`${h.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${h.token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON; keep the text
  }
  return { status: res.status, json };
};

const must = async (h: Http, method: string, path: string, body: unknown, expect: number[]): Promise<unknown> => {
  const r = await call(h, method, path, body);
  if (!expect.includes(r.status)) throw new Error(`${method} ${path} → ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json;
};

const describeState = (s: SessionTrust): string => {
  const causes = s.causes.map((c) => `${c.kind} ${c.ref}`).join(', ');
  const freezes = s.freezes.map((f) => f.freeze_id).join(', ');
  return `trust v${s.version} ${s.tier.padEnd(10)}${causes ? ` causes: ${causes}` : ''}${freezes ? `  freezes: ${freezes}` : ''}${s.revoked_roles.length ? `  revoked roles: ${s.revoked_roles.join(', ')}` : ''}`;
};

/** Follows the SSE stream of one session and prints every transition as it arrives. */
const followTrust = (h: Http, sessionId: string, print: (s: string) => void) => {
  const seen: SessionTrust[] = [];
  const waiters: { pred: (s: SessionTrust) => boolean; resolve: (s: SessionTrust) => void }[] = [];
  const abort = new AbortController();
  const done = (async () => {
    const res = await fetch(`${h.base}/v1/trust/stream?session=${encodeURIComponent(sessionId)}&tenant=${TENANT}`, {
      headers: { authorization: `Bearer ${h.token}`, accept: 'text/event-stream' },
      signal: abort.signal,
    });
    if (!res.ok || res.body === null) throw new Error(`trust stream → ${res.status}`);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk as Uint8Array, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (data === undefined) continue;
        const s = JSON.parse(data.slice(6)) as SessionTrust;
        if (seen.some((x) => x.version >= s.version)) continue;
        seen.push(s);
        print(`      ↳ pushed to PDPs: ${describeState(s)}`);
        for (const w of waiters.splice(0)) if (w.pred(s)) w.resolve(s);
        else waiters.push(w);
      }
    }
  })().catch((e: unknown) => {
    if (!abort.signal.aborted) print(`      (trust stream ended: ${e instanceof Error ? e.message : String(e)})`);
  });
  return {
    until: (pred: (s: SessionTrust) => boolean, what: string, ms = 15_000): Promise<SessionTrust> => {
      const hit = seen.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no trust update "${what}" within ${ms / 1000} s`)), ms);
        waiters.push({ pred, resolve: (s) => (clearTimeout(timer), resolve(s)) });
      });
    },
    seen: (): SessionTrust[] => [...seen],
    /** The newest state pushed: what the gateway judges on. */
    lookup: (session: string, tenant: string): TrustLookup => {
      const s = seen.at(-1);
      return s !== undefined && s.session_id === session && s.tenant_id === tenant
        ? { known: true, state: s, version: s.version, stalenessMs: 0, receivedAt: Date.now() }
        : { known: false, reason: 'unknown_session', stalenessMs: 0 };
    },
    close: async () => {
      abort.abort();
      await done;
    },
  };
};

/** The ledger repository the agent works on: a temporary directory the demo MCP server serves. */
const LEDGER_FILES: Record<string, string> = {
  'README.md': '# R-payments-ledger\nThe payments ledger.\n',
  'migrations/001_init.sql': 'create table ledger (id bigint, amount_cents bigint);\n',
  'obsolete/old-report.csv': 'id,amount\n1,100\n',
  'ledger/2026-q3.csv': 'id,amount\n1,100\n2,250\n',
};

const gateConfig = (base: string, ledgerDir: string) =>
  parseGateConfig({
    upstreams: { ledger: { command: process.execPath, args: ['--import', import.meta.resolve('tsx'), LEDGER_SERVER, '--root', ledgerDir] } },
    listen: { host: '127.0.0.1', port: 0, path: '/mcp' },
    tools: {
      read_file: { resource: 'repo:R-payments-ledger/{path}' },
      list_files: { resource: 'repo:R-payments-ledger' },
      write_file: { resource: 'repo:R-payments-ledger/{path}', destructive: true },
      delete_file: { resource: 'repo:R-payments-ledger/{path}' },
    },
    audit: { url: base, pdp_id: 'pdp-1', policy_id: 'P-risk-43', policy_version: '12' },
  });

export type IncidentResult = { sessionId: string; deniedEventId: string; story: string; transitions: SessionTrust[] };

/** `npm run demo`: connects to a running server and plays the incident. */
export const runDemo = async (_args: string[], env: Record<string, string | undefined>, print: (s: string) => void = (s) => void process.stdout.write(`${s}\n`)): Promise<number> => {
  const cfg = parseConfig(env);
  if (!cfg.ok) throw new Error(`invalid configuration: ${cfg.error.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
  const config = cfg.value;
  const base = env['TRUSTFOLD_URL'] ?? `http://127.0.0.1:${config.http.port}`;
  let token = env['TRUSTFOLD_TOKEN'];
  if (token === undefined) {
    const secret = config.auth.secret ?? setUpAuth(config).localSecret;
    if (secret === undefined) throw new Error('set TRUSTFOLD_TOKEN: no local secret to mint a demo token from');
    token = await mintToken({ sub: 'demo', tenant: TENANT, scopes: ['events:write', 'freeze:write', 'freeze:read', 'trust:read', 'audit:read'], ttlSeconds: 600 }, secret);
  }
  const health = await fetch(`${base}/readyz`).catch(() => undefined);
  if (health === undefined) throw new Error(`no trustfold at ${base}: start it first with \`npm start\` (or set TRUSTFOLD_URL)`);
  const r = await playIncident({ base, token }, print);
  print(`\nmore: trustfold audit session ${r.sessionId} --tenant ${TENANT}   ·   trustfold audit explain ${r.deniedEventId}`);
  return 0;
};

/** The incident itself, over HTTP only; returns what the pipeline answered. */
export const playIncident = async (h: Http, print: (s: string) => void): Promise<IncidentResult> => {

  // A rerun must not fold into the first run's session: S-9 once, then S-9-<suffix>.
  let sessionId = 'S-9';
  if ((await call(h, 'GET', `/v1/sessions/${sessionId}/trust?tenant=${TENANT}`)).status === 200) {
    sessionId = `S-9-${randomBytes(2).toString('hex')}`;
  }
  print(`trustfold demo — the docs/design.md incident through an MCP client → trustfold gate → a real MCP server, and the pipeline at ${h.base}`);
  print(`session ${sessionId}, tenant ${TENANT}\n`);
  const trust = followTrust(h, sessionId, print);
  const cleanup: (() => unknown)[] = [];
  const at = () => new Date().toISOString();
  const post = (events: TrustfoldEventInput[]) => must(h, 'POST', '/v1/events', events, [202]);

  try {
    print(`[1] session ${sessionId} starts: agent A-17 v3.2 (team-payments) acting for U-442, token J-1 (repo:write, consent C-88)`);
    const now = Date.now();
    const token1 = {
      jti: 'J-1',
      scopes: ['repo:write'],
      audience: 'git-gateway',
      issued_at: new Date(now).toISOString(),
      expires_at: new Date(now + 5 * 60_000).toISOString(),
      trust_level: 'trusted',
      consent_ref: 'C-88',
      policy_version: '11',
    } as const;
    await post([
      { type: 'signal', kind: 'token_issued', event_id: uuidv7(), tenant_id: TENANT, occurred_at: at(), jti: 'J-1', user_id: 'U-442', agent_id: 'A-17', scopes: ['repo:write'], expires_at: token1.expires_at, session_id: sessionId, audience: 'git-gateway', consent_ref: 'C-88' },
      { type: 'signal', kind: 'session_started', event_id: uuidv7(), tenant_id: TENANT, occurred_at: at(), session_id: sessionId, chain: [...chain], token: { ...token1, scopes: [...token1.scopes] }, intent: { task_class: 'refactor', statement: 'clean up obsolete code' } },
    ]);
    await trust.until(() => true, 'session started');

    // The gateway, in front of the ledger server; its view is this session's SSE stream.
    const ledgerDir = mkdtempSync(join(tmpdir(), 'trustfold-demo-ledger-'));
    cleanup.push(() => rmSync(ledgerDir, { recursive: true, force: true }));
    for (const [path, content] of Object.entries(LEDGER_FILES)) {
      mkdirSync(dirname(join(ledgerDir, path)), { recursive: true });
      writeFileSync(join(ledgerDir, path), content);
    }
    const gateCfg = gateConfig(h.base, ledgerDir);
    if (!gateCfg.ok) throw new Error(`demo gate config: ${JSON.stringify(gateCfg.error)}`);
    // The gateway verifies agent tokens with a key of its own (the demo's IdP); decisions go to ingest with h.token.
    const agentKey = randomBytes(32).toString('hex');
    const view: GateView = { get: (s, t) => trust.lookup(s, t), ready: () => Promise.resolve(), close: () => Promise.resolve() };
    const gate: RunningGate = await startGate({
      gate: gateCfg.value,
      config: configFrom({ TRUSTFOLD_JWT_SECRET: agentKey, LOG_LEVEL: 'silent' }),
      logger: createLogger('trustfold-demo-gate', 'silent'),
      env: { TRUSTFOLD_TOKEN: h.token },
      view,
    });
    cleanup.push(() => gate.close());
    print(`\n    trustfold gate at ${gate.url ?? ''} in front of the ledger MCP server (stdio, ${ledgerDir})`);

    // The agent's delegated token (RFC 8693): U-442 delegated to A-17, session-bound, token J-1.
    const agentToken = await new SignJWT({
      tenant: TENANT,
      scope: `mcp:tools:read mcp:tools:write ${token1.scopes.join(' ')}`,
      act: { sub: 'A-17', agent_version: '3.2', owner: 'team-payments' },
      session_id: sessionId,
      consent_ref: 'C-88',
      intent: { task_class: 'refactor', statement: 'clean up obsolete code' },
    })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('U-442')
      .setJti('J-1')
      .setAudience('git-gateway')
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(now / 1000) + 300)
      .sign(new TextEncoder().encode(agentKey));
    const agent = new Client({ name: 'demo-agent-A-17', version: '3.2' });
    await agent.connect(new StreamableHTTPClientTransport(new URL(gate.url ?? ''), { requestInit: { headers: { authorization: `Bearer ${agentToken}` } } }));
    cleanup.push(() => agent.close());
    const tools = (await agent.listTools()).tools.map((t) => t.name);
    print(`    the agent connects over MCP; tools/list: ${tools.join(', ')}`);

    type Called = { effect: string; rule_id: string; event_id: string; trust_version?: number };
    const tool = async (name: string, args: Record<string, string>): Promise<Called> => {
      const shown = `${name} ${Object.values(args).join(' ')}`.trim();
      try {
        const r = (await agent.callTool({ name, arguments: args })) as CallToolResult;
        const d = r._meta?.['trustfold/decision'] as Called;
        const said = (r.content[0] as { text?: string } | undefined)?.text ?? '';
        print(`    tools/call ${shown} → ${d.effect.toUpperCase()} (rule ${d.rule_id}, trust v${d.trust_version ?? '?'})${d.effect === 'allow' ? `: ${said.split('\n').join(', ').slice(0, 80)}` : ''}`);
        return d;
      } catch (e) {
        if (e instanceof McpError) print(`    tools/call ${shown} → MCP error ${e.code}: ${e.message}`);
        throw e;
      }
    };
    const onDisk = (path: string): string => (existsSync(join(ledgerDir, path)) ? 'still on disk' : 'gone from disk');

    print('\n[2] the agent works: reads, and deletes an obsolete report (allowed: the session is trusted)');
    await tool('read_file', { path: 'README.md' });
    await tool('list_files', {});
    await tool('delete_file', { path: 'obsolete/old-report.csv' });
    print(`      obsolete/old-report.csv: ${onDisk('obsolete/old-report.csv')}`);

    print('\n[3] detector prompt-guard flags prompt injection SIG-INJ-8821 (high) in the session');
    await post([{ type: 'signal', kind: 'injection_detected', event_id: uuidv7(), tenant_id: TENANT, occurred_at: at(), session_id: sessionId, signal_id: 'SIG-INJ-8821', severity: 'high', detector: 'prompt-guard', expires_at: new Date(Date.now() + 2 * 3600_000).toISOString() }]);
    await trust.until((s) => s.causes.some((c) => c.ref === 'SIG-INJ-8821'), 'injection cause');

    print('\n[4] the SOC raises change freeze INC-77 on repo: (delete_file, force_push)');
    await must(h, 'POST', `/v1/freezes?tenant=${TENANT}`, { freeze_id: 'INC-77', scope: { resource_prefix: 'repo:', actions: ['delete_file', 'force_push'] }, reason: 'incident INC-77: payments ledger under investigation', ticket: 'INC-77' }, [201]);
    await trust.until((s) => s.freezes.some((f) => f.freeze_id === 'INC-77'), 'freeze INC-77 listed');

    print('\n[5] the agent attempts to delete a file in the payments ledger repo');
    const denied = await tool('delete_file', { path: 'ledger/2026-q3.csv' });
    if (denied.effect !== 'deny') throw new Error(`expected the gateway to deny, it said ${denied.effect}`);
    print(`      ledger/2026-q3.csv: ${onDisk('ledger/2026-q3.csv')}`);
    await tool('read_file', { path: 'ledger/2026-q3.csv' });

    print(`\n[6] the responder asks the audit: GET /v1/audit/decisions/${denied.event_id}`);
    const t0 = Date.now();
    let explained: { story?: string } | undefined;
    while (Date.now() - t0 < 20_000) {
      const r = await call(h, 'GET', `/v1/audit/decisions/${denied.event_id}?tenant=${TENANT}`);
      if (r.status === 200) {
        const body = r.json as { story?: string; trust?: { lag?: { status?: string; recorded?: boolean } } };
        explained = body;
        // The decision can be stored before the trust transition the PDP used
        // (they arrive on different topics): until it is, the story can only
        // say the PDP's version is newer than anything recorded. Wait for it.
        if (!(body.trust?.lag?.status === 'ahead' && body.trust.lag.recorded === false)) break;
      } else if (r.status !== 404) {
        throw new Error(`audit → ${r.status}: ${JSON.stringify(r.json)}`);
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    if (explained?.story === undefined) throw new Error('the denied decision did not reach the audit within 20 s');
    print(`    queryable after ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    print('story:');
    print(`  ${explained.story}`);
    return { sessionId, deniedEventId: denied.event_id, story: explained.story, transitions: trust.seen() };
  } finally {
    for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => undefined);
    await trust.close();
  }
};
