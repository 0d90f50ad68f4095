// `trustfold gate --config gate.json [--stdio]`: the gateway as a process.
// Wires the upstreams, the TrustView on the session-trust topic, the emitter
// to ingest, and the agent-facing transport; shuts down on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { decodeJwt } from 'jose';
import { pino } from 'pino';
import { createEmitter, type EmitOutcome, type Emitter } from '../emitter/emitter.ts';
import { createAuthenticator, loadOrCreateLocalSecret, mintToken, OPERATOR_TENANT } from '../lib/auth.ts';
import { formatFieldErrors, parseConfig, type Config } from '../lib/config.ts';
import { createKafka } from '../lib/kafka.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { createTrustView, type TrustLookup } from '../pdp-client/trust-view.ts';
import { identityFromClaims } from './claims.ts';
import { loadGateConfig, type GateConfig } from './config.ts';
import { createGateway, type Audit, type AuditOutcome, type Gateway } from './gateway.ts';
import { createGateHttp, type GateHttp } from './http.ts';
import { builtinPolicy, cerbosPolicy, type PolicyEngine } from './policy.ts';
import { createStepUpReader } from './step-up-reader.ts';
import { createStepUps, type StepUps } from './step-up.ts';
import { openUpstream, type Upstream } from './upstream.ts';

export const GATE_USAGE = `usage:
  trustfold gate --config FILE [--stdio] [--port N]
      an MCP gateway in front of the upstream MCP servers FILE names; judges every
      tools/call on live session trust and audits it. Serves agents over Streamable
      HTTP (listen.host:port + listen.path); --stdio serves one local agent on
      stdin/stdout instead, as the caller in TRUSTFOLD_GATE_AGENT_TOKEN.
  env: KAFKA_BROKERS (required), TRUSTFOLD_TOPIC_SESSION_TRUST, TRUSTFOLD_JWT_SECRET /
       TRUSTFOLD_JWKS_URL (agent tokens; else the local secret), TRUSTFOLD_TOKEN (to post
       decisions to ingest at audit.url; else minted from the local secret)`;

const toOutcome = (o: EmitOutcome): AuditOutcome => (o.ok ? { ok: true } : { ok: false, message: `${o.error.code}: ${o.error.message}` });

export const emitterAudit = (emitter: Emitter): Audit => ({
  decision: async (d, o) => toOutcome(await emitter.emitDecision(d, o)),
  signal: async (s, o) => toOutcome(await emitter.emitSignal(s, o)),
});

/** Where the gateway reads live trust: a TrustView on the session-trust topic, or (the demo) any pushed source. */
export type GateView = { get(sessionId: string, tenantId: string): TrustLookup; ready(): Promise<void>; close(): Promise<void> };

export type RunningGate = { gateway: Gateway; view: GateView; policy: PolicyEngine; url?: string; close(): Promise<void> };

export const policyEngineOf = (gate: GateConfig): PolicyEngine =>
  gate.policy.engine === 'cerbos'
    ? cerbosPolicy({
        url: gate.policy.url,
        timeoutMs: gate.policy.timeout_ms,
        resourceKind: gate.policy.resource_kind,
        principalRoles: gate.policy.principal_roles,
        policyVersion: gate.policy.policy_version,
        rules: gate.rules,
      })
    : builtinPolicy(gate.rules);

export type StartGateOptions = {
  gate: GateConfig;
  config: Config;
  logger: Logger;
  /** Agent for --stdio: its verified token. */
  stdioToken?: string;
  stdio?: boolean;
  portOverride?: number;
  env: Record<string, string | undefined>;
  /** Instead of a TrustView on KAFKA_BROKERS (started and closed by the gate). */
  view?: GateView;
  /** Instead of the emitter to ingest at audit.url (a conformance run without a pipeline). */
  audit?: Audit;
};

const secretOf = (config: Config): string => config.auth.secret ?? loadOrCreateLocalSecret(join(config.dataDir, 'jwt-secret')).secret;

/** Starts everything the gateway needs; the returned close stops it in reverse order. */
export const startGate = async (o: StartGateOptions): Promise<RunningGate> => {
  const { gate, config, logger } = o;
  const closers: (() => Promise<unknown>)[] = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch((e: unknown) => logger.warn({ err: String(e) }, 'error while stopping'));
  };
  try {
    const auth = config.auth.jwksUrl !== undefined ? config.auth : { ...config.auth, secret: secretOf(config) };
    const authenticator = createAuthenticator(auth);
    let view: GateView;
    if (o.view !== undefined) view = o.view;
    else {
      if (config.kafka.brokers === undefined) throw new Error('set KAFKA_BROKERS to the cluster trustfold runs on (trustfold serve prints it)');
      view = await createTrustView({ kafka: createKafka(config.kafka.brokers, `${config.kafka.clientId}-gate`), topic: config.topics.sessionTrust, logger });
    }
    closers.push(() => view.close());
    const policy = policyEngineOf(gate);
    closers.push(() => policy.close());
    const ingestToken =
      o.env['TRUSTFOLD_TOKEN'] ??
      (await mintToken({ sub: gate.audit.pdp_id, tenant: OPERATOR_TENANT, scopes: ['events:write', 'tenants:all'], ttlSeconds: 3600 }, secretOf(config)));
    const emitter = createEmitter({ url: gate.audit.url, token: ingestToken, onError: (f) => logger.error({ event_id: f.event_id, err: f.error.message }, 'event not stored') });
    closers.push(() => emitter.close());

    // Upstreams open before the gateway exists; their change notices reach it through this.
    const late: { gateway?: Gateway } = {};
    const upstreams: Upstream[] = [];
    for (const [name, u] of Object.entries(gate.upstreams)) {
      const up = await openUpstream(name, u, {
        onToolsChanged: () => void late.gateway?.refresh().catch((e: unknown) => logger.warn({ upstream: name, err: String(e) }, 'refresh after tools/list_changed failed')),
        onClose: (n) => logger.warn({ upstream: n }, 'upstream connection closed'),
        onLog: (n, params) => late.gateway?.relayLog(n, params),
      });
      upstreams.push(up);
      closers.push(() => up.close());
    }
    await view.ready();
    // Step-up grants come from the signals topic: without Kafka (a pushed view, no brokers) a retry is judged afresh.
    let stepUps: StepUps | undefined;
    if (config.kafka.brokers !== undefined) {
      stepUps = createStepUps({ ttlMs: gate.stepUpTtlMs });
      const reader = await createStepUpReader({ kafka: createKafka(config.kafka.brokers, `${config.kafka.clientId}-gate-step-up`), topic: config.topics.signals, stepUps, logger });
      closers.push(() => reader.close());
    }
    const g = await createGateway({ config: gate, upstreams, view, audit: o.audit ?? emitterAudit(emitter), policy, logger, ...(stepUps !== undefined && { stepUps }) });
    late.gateway = g;
    closers.push(() => g.close());
    const unknownPolicies = Object.keys(gate.tools).filter((t) => !g.catalog().entries.has(t));
    if (unknownPolicies.length > 0) logger.warn({ tools: unknownPolicies }, 'config names tools no upstream lists (yet)');

    if (o.stdio === true) {
      if (o.stdioToken === undefined) throw new Error('--stdio needs the agent token in TRUSTFOLD_GATE_AGENT_TOKEN');
      const verified = await authenticator.verify(`Bearer ${o.stdioToken}`);
      if (!verified.ok) throw new Error(`TRUSTFOLD_GATE_AGENT_TOKEN: ${verified.error.message}`);
      const identity = identityFromClaims(decodeJwt(o.stdioToken), gate.claims);
      if (!identity.ok) throw new Error(`TRUSTFOLD_GATE_AGENT_TOKEN: ${identity.error}`);
      await g.connect(new StdioServerTransport(), identity.value);
      return { gateway: g, view, policy, close };
    }
    const http: GateHttp = createGateHttp({ gateway: g, authenticator, claims: gate.claims, path: gate.listen.path, logger });
    const url = await http.listen(o.portOverride ?? gate.listen.port, gate.listen.host);
    closers.push(() => http.close());
    return { gateway: g, view, policy, url, close };
  } catch (e) {
    await close();
    throw e;
  }
};

/** The command: exit 0 after a clean stop, 2 on bad usage or configuration, 1 when it could not start. */
export const runGate = async (args: string[], env: Record<string, string | undefined>): Promise<number> => {
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  let values: { config?: string | undefined; stdio?: boolean | undefined; port?: string | undefined; help?: boolean | undefined };
  try {
    values = parseArgs({ args, options: { config: { type: 'string' }, stdio: { type: 'boolean' }, port: { type: 'string' }, help: { type: 'boolean' } }, strict: true }).values;
  } catch (e) {
    say(`trustfold gate: ${(e as Error).message}\n\n${GATE_USAGE}`);
    return 2;
  }
  if (values.help === true) return say(GATE_USAGE), 0;
  const file = values.config ?? env['TRUSTFOLD_GATE_CONFIG'];
  if (file === undefined) return say(`trustfold gate: --config FILE is required\n\n${GATE_USAGE}`), 2;
  const gate = loadGateConfig(file);
  if (!gate.ok) return say(`trustfold gate: invalid config ${file}\n  ${formatFieldErrors(gate.error, '\n  ')}`), 2;
  const config = parseConfig(env);
  if (!config.ok) return say(`trustfold gate: invalid configuration\n  ${formatFieldErrors(config.error, '\n  ')}`), 2;
  const port = values.port !== undefined ? Number(values.port) : undefined;
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) return say(`trustfold gate: --port ${values.port ?? ''} is not a port`), 2;
  // Under --stdio, stdout is the protocol: logs go to stderr.
  const logger = values.stdio === true ? pino({ name: 'trustfold-gate', level: config.value.logLevel }, pino.destination(2)) : createLogger('trustfold-gate', config.value.logLevel);
  let running: RunningGate;
  try {
    running = await startGate({
      gate: gate.value,
      config: config.value,
      logger,
      stdio: values.stdio === true,
      ...(env['TRUSTFOLD_GATE_AGENT_TOKEN'] !== undefined && { stdioToken: env['TRUSTFOLD_GATE_AGENT_TOKEN'] }),
      ...(port !== undefined && { portOverride: port }),
      env,
    });
  } catch (e) {
    say(`trustfold gate: failed to start: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  const tools = [...running.gateway.catalog().entries.keys()];
  say(`trustfold gate: ${tools.length} tools from ${Object.keys(gate.value.upstreams).join(', ')}${running.url !== undefined ? `; agents connect to ${running.url}` : '; serving one agent on stdio'}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
    if (values.stdio === true) process.stdin.once('end', () => resolve());
  });
  await running.close();
  return 0;
};
