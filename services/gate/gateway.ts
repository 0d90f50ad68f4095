// The MCP gateway: an SDK server per agent connection in front of shared
// upstream clients. tools/list is the union of the upstreams' tools (names
// namespaced when there are several), filtered to what the caller may call;
// tools/call is judged on the session's live trust, audited with one
// decision event, and only then forwarded — progress, cancellation and the
// upstream's result or error pass through as they are.
//
// When is a decision durable? Allowed calls that `durable` covers
// (destructive ones by default) are forwarded only after ingest acknowledged
// their decision (Kafka acks=all; the decision is sent at once, not after the
// emitter's batching interval); if that fails the call is refused, so no
// such call runs unaudited. Their decision carries no outcome: the contract
// has no way to amend a stored decision. Every other call is forwarded at
// once and its decision, with the outcome, is emitted when the upstream
// answered: a gateway crash loses the decisions of calls still running
// upstream and of those in the emitter's buffer (≤ its flush interval, 50 ms
// by default, plus one ingest round trip).
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, LoggingLevelSchema, McpError, SetLevelRequestSchema, type CallToolResult, type LoggingLevel, type LoggingMessageNotification, type ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import type { ChainLink, Effect } from '../../schemas/events.ts';
import type { DecisionToEmit, SignalToEmit } from '../emitter/emitter.ts';
import type { Logger } from '../lib/log.ts';
import type { TrustLookup } from '../pdp-client/trust-view.ts';
import { argsDigest, buildCatalog, changedTools, mayCall, resourceOf, type Catalog, type CatalogEntry, type ToolChange } from './catalog.ts';
import { GATE_SCOPES, intentOf, type CallerIdentity } from './claims.ts';
import type { GateConfig } from './config.ts';
import { builtinPolicy, type PolicyEngine } from './policy.ts';
import { isDestructive, type Verdict } from './rules.ts';
import type { StepUps, Unredeemable } from './step-up.ts';
import { GATE_INFO, type CallResult, type Upstream } from './upstream.ts';

/**
 * The reason a decision carries when it is the session's first on a tool whose description or schema change
 * this gateway already reported to that session (then the signal id). The detector's tool-description-changed
 * rule (services/detect/rules.ts, same string) does not fire on such a decision.
 */
export const TOOL_CHANGE_REPORTED = 'tool-schema-change-reported: ';

/** Where a retry names the approval request it was granted: `_meta["trustfold/step_up"]`. */
export const STEP_UP_META = 'trustfold/step_up';

const UNREDEEMABLE: Record<Exclude<Unredeemable, 'pending'>, string> = {
  unknown: 'names no approval request this gateway issued',
  refused: 'was refused',
  expired: 'has expired',
  used: 'was already used',
  other_call: 'was issued for another call (session, tool or arguments differ)',
};

/** JSON-RPC error codes the gateway answers with itself (the server-defined range). */
export const GATE_ERRORS = {
  unauthorized: -32010,
  forbidden: -32011,
  no_session: -32012,
  audit_unavailable: -32013,
  /** The call needs a human's approval first; `data.trustfold.request_id` names the approval request. */
  step_up_required: -32014,
} as const;

/** An error answered with exactly this code, message and data (an upstream's, or the gateway's own). */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

const gateError = (code: keyof typeof GATE_ERRORS, message: string, retriable = false, more: Record<string, unknown> = {}): RpcError =>
  new RpcError(GATE_ERRORS[code], message, { trustfold: { code, retriable, ...more } });

/** The upstream's error as the upstream sent it (the client SDK prefixes the message). */
const passThrough = (e: unknown): RpcError => {
  if (e instanceof McpError) {
    const prefix = `MCP error ${e.code}: `;
    return new RpcError(e.code, e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message, e.data);
  }
  return new RpcError(ErrorCode.InternalError, e instanceof Error ? e.message : String(e));
};

export type AuditOutcome = { ok: true } | { ok: false; message: string };
/** Where decisions and signals go; `createEmitter` (ingest) in production. Never rejects. */
export type Audit = {
  /** `immediate`: the call waits on this outcome, so the event is sent at once, not after a batching interval. */
  decision(d: DecisionToEmit & { event_id: string }, o?: { immediate?: boolean }): Promise<AuditOutcome>;
  signal(s: SignalToEmit, o?: { immediate?: boolean }): Promise<AuditOutcome>;
};

export type GatewayDeps = {
  config: Pick<GateConfig, 'separator' | 'namespaced' | 'sessionMetaKey' | 'rules' | 'tools' | 'audit' | 'toolChangeSeverity'>;
  /** Approval requests this gateway issued and their resolutions; without it a retry naming one is judged afresh. */
  stepUps?: StepUps;
  upstreams: readonly Upstream[];
  view: { get(sessionId: string, tenantId: string): TrustLookup };
  audit: Audit;
  /** Who decides; default the built-in rules of `config.rules`. */
  policy?: PolicyEngine;
  logger?: Logger;
  now?: () => Date;
  newId?: () => string;
};

export type Gateway = {
  /** Serves one agent connection; `identity` for transports without per-request auth (stdio). */
  connect(transport: Transport, identity?: CallerIdentity): Promise<Server>;
  /** Lists every upstream again; returns the tools whose description or schema changed. */
  refresh(): Promise<ToolChange[]>;
  catalog(): Catalog;
  /**
   * An upstream's log message: relayed to the agent whose tools/call is the
   * only one in flight on that upstream, on that request's stream, if the
   * agent's logging/setLevel lets it through. With no call or several in
   * flight the message cannot be attributed to one agent and is dropped (an
   * upstream is shared across agents and tenants; a log line must not reach
   * an agent it was not about).
   */
  relayLog(upstream: string, params: LoggingMessageNotification['params']): void;
  /** Closes the agent connections (not the upstreams, which the caller opened). */
  close(): Promise<void>;
};

/** The verified caller of an HTTP request, handed to the SDK as its AuthInfo. */
const identities = new WeakMap<AuthInfo, CallerIdentity>();
export const authInfoFor = (token: string, identity: CallerIdentity, clientId: string): AuthInfo => {
  const info: AuthInfo = { token, clientId, scopes: [...identity.scopes] };
  identities.set(info, identity);
  return info;
};

type Meta = Record<string, unknown>;
const metaOf = (params: { _meta?: unknown }): Meta => (typeof params._meta === 'object' && params._meta !== null ? (params._meta as Meta) : {});

const text = (t: string): CallToolResult['content'] => [{ type: 'text', text: t }];

export const createGateway = async (deps: GatewayDeps): Promise<Gateway> => {
  const { config, audit } = deps;
  const now = deps.now ?? (() => new Date());
  const newId = deps.newId ?? randomUUID;
  const policy = deps.policy ?? builtinPolicy(config.rules);
  const upstreams = new Map(deps.upstreams.map((u) => [u.name, u]));
  const servers = new Set<Server>();
  type InFlight = { send: (n: ServerNotification) => Promise<void>; level: () => LoggingLevel | undefined };
  const inFlight = new Map<string, Set<InFlight>>();
  const LEVELS = LoggingLevelSchema.options;
  /**
   * exposed tool name → the sessions that called it (allowed), for the tool-change signal: the digest the
   * session last called it under, and the change this gateway reported to it (stored signal), if any.
   */
  type Usage = { tenant: string; session: string; digest: string; reported?: { digest: string; signalId: string } };
  const usedBy = new Map<string, Map<string, Usage>>();

  const list = async (): Promise<Catalog> =>
    buildCatalog(await Promise.all(deps.upstreams.map(async (u) => ({ upstream: u.name, tools: await u.listTools() }))), config.tools, config);

  let catalog = await list();
  let refreshing: Promise<ToolChange[]> = Promise.resolve([]);

  const signalChange = async (c: ToolChange): Promise<void> => {
    const sessions = [...(usedBy.get(c.name)?.values() ?? [])];
    deps.logger?.warn({ tool: c.name, before: c.before, after: c.after, sessions: sessions.length }, 'upstream changed a tool description or schema');
    const signalId = `tool-changed:${c.name}:${c.after.slice('sha256:'.length, 'sha256:'.length + 16)}`;
    await Promise.all(
      sessions.map(async (usage) => {
        const { tenant, session } = usage;
        const r = await audit.signal({
          kind: 'injection_detected',
          tenant_id: tenant,
          session_id: session,
          signal_id: signalId,
          severity: config.toolChangeSeverity,
          detector: 'trustfold-gate/tool-schema-changed',
          detail: `upstream ${c.upstream} changed tool ${c.tool} (description or input schema) after this session used it: ${c.before} → ${c.after}`,
        }, { immediate: true });
        if (!r.ok) deps.logger?.error({ tool: c.name, session, err: r.message }, 'tool-change signal not stored');
        // Only a stored signal counts as reported: otherwise the detector's rule is left to raise it.
        else usage.reported = { digest: c.after, signalId };
      }),
    );
  };

  const refresh = (): Promise<ToolChange[]> => {
    refreshing = refreshing.catch(() => []).then(async () => {
      const next = await list();
      const changes = changedTools(catalog, next);
      const membership = [...next.entries.keys()].join('\n') !== [...catalog.entries.keys()].join('\n');
      catalog = next;
      await Promise.all(changes.map(signalChange));
      if (changes.length > 0 || membership) await Promise.all([...servers].map((s) => s.sendToolListChanged().catch(() => undefined)));
      return changes;
    });
    return refreshing;
  };

  const identityOf = (fixed: CallerIdentity | undefined, authInfo: AuthInfo | undefined): CallerIdentity => {
    const id = (authInfo !== undefined ? identities.get(authInfo) : undefined) ?? fixed;
    if (id === undefined) throw gateError('unauthorized', 'no verified token for this request');
    return id;
  };

  const sessionOf = (id: CallerIdentity, meta: Meta): string | undefined => {
    if (id.session !== undefined) return id.session;
    if (config.sessionMetaKey === null) return undefined;
    const s = meta[config.sessionMetaKey];
    return typeof s === 'string' && s !== '' && s.length <= 256 ? s : undefined;
  };

  /** `notes`: reasons the audit gets beside the verdict's (the tool-change marker). */
  type Judged = { entry: CatalogEntry; session: string; verdict: Verdict; started: bigint; args: Record<string, unknown>; meta: Meta; action: string; resource: string; notes?: string[] };

  const decisionOf = (id: CallerIdentity, j: Judged, eventId: string, outcome?: { status: 'executed' | 'blocked' | 'failed' | 'pending_approval'; detail?: string }): DecisionToEmit & { event_id: string } => {
    const intent = intentOf(j.meta['trustfold/intent']) ?? id.intent;
    return {
      event_id: eventId,
      tenant_id: id.tenant,
      occurred_at: now().toISOString(),
      session_id: j.session,
      chain: id.chain satisfies ChainLink[],
      ...(id.token !== undefined && { token: id.token }),
      ...(intent !== undefined && { intent }),
      request: { tool: j.entry.name, action: j.action, resource: j.resource, args_digest: argsDigest(j.args) },
      decision: {
        effect: j.verdict.effect,
        policy_id: j.verdict.policy_id ?? config.audit.policy_id,
        policy_version: j.verdict.policy_version ?? config.audit.policy_version,
        rule_id: j.verdict.rule_id,
        reasons: j.notes !== undefined ? [...j.verdict.reasons, ...j.notes] : j.verdict.reasons,
        ...(j.verdict.trust_version !== undefined && { trust_version: j.verdict.trust_version }),
        pdp_id: config.audit.pdp_id,
        latency_us: Number((process.hrtime.bigint() - j.started) / 1000n),
      },
      ...(outcome !== undefined && { outcome: outcome.detail !== undefined ? { status: outcome.status, detail: outcome.detail.slice(0, 4096) } : { status: outcome.status } }),
      provenance: { tool_schema_digest: j.entry.digest },
    };
  };

  const emitLater = (d: DecisionToEmit & { event_id: string }): void => {
    void audit.decision(d).then((r) => {
      if (!r.ok) deps.logger?.error({ event_id: d.event_id, err: r.message }, 'decision not stored');
    });
  };

  const decisionMeta = (eventId: string, v: Verdict): Meta => ({
    'trustfold/decision': { event_id: eventId, effect: v.effect, rule_id: v.rule_id, reasons: v.reasons, ...(v.trust_version !== undefined && { trust_version: v.trust_version }) },
  });

  const refuse = (id: CallerIdentity, j: Judged, eventId: string): CallToolResult => {
    emitLater(decisionOf(id, j, eventId, { status: 'blocked' }));
    const effect: Effect = j.verdict.effect;
    return { content: text(`${effect}: ${j.entry.name} on ${j.resource}: ${j.verdict.reasons.join('; ') || j.verdict.rule_id}`), isError: true, _meta: decisionMeta(eventId, j.verdict) };
  };

  /**
   * Step-up: the decision (`pending_approval`) and a `step_up_requested` signal
   * are stored before the agent hears back, so the request id it gets names an
   * approval request that exists; then a JSON-RPC error the client can act on.
   */
  const stepUp = async (id: CallerIdentity, j: Judged, eventId: string, pending?: string): Promise<never> => {
    // A retry naming a request still waiting for its answer gets the same request back, not a new one.
    const requestId = pending ?? `SU-${eventId}`;
    const scope = `${j.action} ${j.resource}`;
    const issuedAt = now();
    const [decided, signalled] = await Promise.all([
      audit.decision(decisionOf(id, j, eventId, { status: 'pending_approval', detail: `approval request ${requestId}` }), { immediate: true }),
      pending !== undefined
        ? Promise.resolve<AuditOutcome>({ ok: true })
        : audit.signal({ kind: 'step_up_requested', tenant_id: id.tenant, session_id: j.session, request_id: requestId, scope: scope.slice(0, 4096), occurred_at: issuedAt.toISOString() }, { immediate: true }),
    ]);
    const failed = [decided, signalled].find((r) => !r.ok);
    if (failed !== undefined && !failed.ok) throw gateError('audit_unavailable', `the approval request could not be stored: ${failed.message}`, true);
    if (pending === undefined) deps.stepUps?.requested({ requestId, scope, tenant: id.tenant, session: j.session, tool: j.entry.name, argsDigest: argsDigest(j.args), issuedAt: issuedAt.getTime() });
    throw gateError('step_up_required', `step-up approval required for ${j.entry.name} on ${j.resource} (approval request ${requestId}): ${j.verdict.reasons.join('; ') || j.verdict.rule_id}`, true, {
      request_id: requestId,
      decision_event_id: eventId,
      rule_id: j.verdict.rule_id,
      reasons: j.verdict.reasons,
      scope,
      ...(j.verdict.trust_version !== undefined && { trust_version: j.verdict.trust_version }),
    });
  };

  const callTool = async (id: CallerIdentity, params: { name: string; arguments?: Record<string, unknown> | undefined; _meta?: unknown }, extra: { signal: AbortSignal; sendNotification: (n: ServerNotification) => Promise<void>; level: () => LoggingLevel | undefined }): Promise<CallToolResult> => {
    const started = process.hrtime.bigint();
    const entry = catalog.entries.get(params.name);
    if (entry === undefined || !mayCall(entry, id.scopes)) throw new RpcError(ErrorCode.InvalidParams, `Unknown tool: ${params.name}`);
    const meta = metaOf(params);
    const session = sessionOf(id, meta);
    if (session === undefined) {
      throw gateError('no_session', `no session: the token has no session claim${config.sessionMetaKey !== null ? ` and the request no _meta["${config.sessionMetaKey}"]` : ''}`);
    }
    const args = params.arguments ?? {};
    const action = entry.policy.action ?? entry.tool.name;
    const resource = resourceOf(entry, args);
    const facts = { action, resource, destructive: entry.policy.destructive, requiresRoles: entry.policy.requiresRoles };
    const eventId = newId();
    // The session's first decision on this tool under a digest whose change this gateway already reported to it
    // says so, and the detector's tool-description-changed rule leaves it alone: one rug pull, one signal.
    const usageKey = `${id.tenant}\u0000${session}`;
    const usage = usedBy.get(entry.name)?.get(usageKey);
    const notes = usage !== undefined && usage.digest !== entry.digest && usage.reported?.digest === entry.digest ? [`${TOOL_CHANGE_REPORTED}${usage.reported.signalId}`] : undefined;
    if (usage !== undefined && notes !== undefined) usage.digest = entry.digest;
    if (!id.scopes.has(GATE_SCOPES.write)) {
      const verdict: Verdict = { effect: 'deny', rule_id: 'deny-missing-scope', reasons: [`token lacks scope ${GATE_SCOPES.write}`] };
      emitLater(decisionOf(id, { entry, session, verdict, started, args, meta, action, resource, ...(notes !== undefined && { notes }) }, eventId, { status: 'blocked' }));
      throw gateError('forbidden', `tools/call needs scope ${GATE_SCOPES.write}`);
    }
    const decided = policy.decide({ lookup: deps.view.get(session, id.tenant), call: { ...facts, tool: entry.name, upstream: entry.upstream }, caller: id, session, requestId: eventId });
    // The built-in rules answer synchronously: no await (no extra turn of the event loop) on the hot path.
    let verdict = decided instanceof Promise ? await decided : decided;
    // A retry naming a granted approval request for exactly this call turns the policy's step_up into an allow,
    // once. It never lifts a deny: trust that got worse since the approval still decides.
    const presented = meta[STEP_UP_META];
    let pendingRequest: string | undefined;
    if (verdict.effect === 'step_up' && typeof presented === 'string' && deps.stepUps !== undefined) {
      const r = deps.stepUps.redeem(presented, { tenant: id.tenant, session, tool: entry.name, argsDigest: argsDigest(args) }, now().getTime());
      if (r.ok) verdict = { ...verdict, effect: 'allow', rule_id: 'allow-step-up-granted', reasons: [`step-up ${presented} granted${r.approver !== undefined ? ` by ${r.approver}` : ''}`, ...verdict.reasons] };
      else if (r.reason === 'pending') pendingRequest = presented;
      else verdict = { ...verdict, effect: 'deny', rule_id: `deny-step-up-${r.reason.replace('_', '-')}`, reasons: [`step-up ${presented.slice(0, 128)} ${UNREDEEMABLE[r.reason]}`, ...verdict.reasons] };
    }
    const j: Judged = { entry, session, verdict, started, args, meta, action, resource, ...(notes !== undefined && { notes }) };
    if (verdict.effect === 'step_up') return stepUp(id, j, eventId, pendingRequest);
    if (verdict.effect !== 'allow') return refuse(id, j, eventId);

    const sessions = usedBy.get(entry.name) ?? new Map<string, Usage>();
    if (usage !== undefined) usage.digest = entry.digest;
    else usedBy.set(entry.name, sessions.set(usageKey, { tenant: id.tenant, session, digest: entry.digest }));

    const durable = config.audit.durable === 'all' || (config.audit.durable === 'destructive' && isDestructive(facts, config.rules));
    if (durable) {
      // Sent at once (not after the emitter's flush interval): the call waits for this ack.
      const stored = await audit.decision(decisionOf(id, j, eventId), { immediate: true });
      if (!stored.ok) throw gateError('audit_unavailable', `the decision could not be stored, so the call was not forwarded: ${stored.message}`, true);
    }
    const upstream = upstreams.get(entry.upstream);
    if (upstream === undefined) throw new RpcError(ErrorCode.InternalError, `upstream ${entry.upstream} is gone`);
    const { [config.sessionMetaKey ?? '']: _session, [STEP_UP_META]: _stepUp, ...forwardMeta } = meta;
    const progressToken = meta['progressToken'];
    let result: CallResult;
    const flight: InFlight = { send: extra.sendNotification, level: extra.level };
    const flights = inFlight.get(entry.upstream) ?? new Set<InFlight>();
    inFlight.set(entry.upstream, flights.add(flight));
    try {
      result = await upstream.callTool(
        { ...params, name: entry.tool.name, ...(params._meta !== undefined && { _meta: forwardMeta }) },
        {
          signal: extra.signal,
          onprogress:
            typeof progressToken === 'string' || typeof progressToken === 'number'
              ? (p) => void extra.sendNotification({ method: 'notifications/progress', params: { ...p, progressToken } }).catch(() => undefined)
              : undefined,
        },
      );
    } catch (e) {
      flights.delete(flight);
      const failure = passThrough(e);
      if (!durable) emitLater(decisionOf(id, j, eventId, { status: 'failed', detail: extra.signal.aborted ? 'cancelled by the agent' : `${failure.code}: ${failure.message}` }));
      throw failure;
    }
    flights.delete(flight);
    if (!durable) emitLater(decisionOf(id, j, eventId, { status: result['isError'] === true ? 'failed' : 'executed' }));
    const upstreamMeta = typeof result['_meta'] === 'object' && result['_meta'] !== null ? (result['_meta'] as Meta) : {};
    return { ...result, _meta: { ...upstreamMeta, ...decisionMeta(eventId, verdict) } } as CallToolResult;
  };

  const instructions = deps.upstreams.length === 1 ? deps.upstreams[0]?.instructions() : undefined;

  return {
    catalog: () => catalog,
    refresh,
    relayLog(upstream, params) {
      const flights = inFlight.get(upstream);
      if (flights === undefined || flights.size !== 1) return;
      for (const f of flights) {
        const min = f.level();
        if (min !== undefined && LEVELS.indexOf(params.level) < LEVELS.indexOf(min)) return;
        void f.send({ method: 'notifications/message', params }).catch(() => undefined);
      }
    },
    async connect(transport, fixed) {
      const server = new Server({ name: GATE_INFO.name, version: GATE_INFO.version }, { capabilities: { tools: { listChanged: true }, logging: {} }, ...(instructions !== undefined && { instructions }) });
      // logging/setLevel is this agent's filter on the upstream log lines relayed to it (relayLog); upstreams are not told.
      let level: LoggingLevel | undefined;
      server.setRequestHandler(SetLevelRequestSchema, (req) => {
        level = req.params.level;
        return {};
      });
      server.setRequestHandler(ListToolsRequestSchema, async (_req, extra) => {
        const id = identityOf(fixed, extra.authInfo);
        if (!id.scopes.has(GATE_SCOPES.read)) throw gateError('forbidden', `tools/list needs scope ${GATE_SCOPES.read}`);
        await refresh().catch((e: unknown) => deps.logger?.warn({ err: e instanceof Error ? e.message : String(e) }, 'tools/list: an upstream did not list; serving the last listing'));
        const tools = [...catalog.entries.values()].filter((e) => mayCall(e, id.scopes)).map((e) => ({ ...e.tool, name: e.name }));
        return { tools } as { tools: { name: string; inputSchema: { type: 'object' } }[] };
      });
      server.setRequestHandler(CallToolRequestSchema, (req, extra) =>
        callTool(identityOf(fixed, extra.authInfo), req.params, { signal: extra.signal, sendNotification: (n) => extra.sendNotification(n), level: () => level }),
      );
      server.onclose = () => servers.delete(server);
      servers.add(server);
      await server.connect(transport);
      return server;
    },
    async close() {
      await Promise.all([...servers].map((s) => s.close()));
      servers.clear();
    },
  };
};
