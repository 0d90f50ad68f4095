// A real Cerbos PDP for tests and the benchmark: the binary from the npm
// package @cerbos/cerbos-linux-x64, a disk policy store in a temp dir with a
// small resource policy for agent tool calls, and the Kafka audit backend
// pointed at the test broker. Not a test file itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from './net.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The binary ships as the package's `main` file (a ~100 MB static executable, no install script). */
export const cerbosBinary = (): string | undefined => {
  try {
    const path = createRequire(import.meta.url).resolve('@cerbos/cerbos-linux-x64');
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Tool calls are resources whose kind is the tool (`git`) and id the target;
 * the principal is the acting agent, carrying the delegation chain as attributes
 * (the adapters' default mapping convention). Outputs name the reason.
 */
export const AGENT_TOOL_POLICY = `apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: "default"
  resource: "git"
  rules:
    - name: allow-read
      actions: ["read_file", "list_files"]
      effect: EFFECT_ALLOW
      roles: ["agent"]
      output:
        when:
          ruleActivated: |-
            "read allowed"
    - name: deny-destructive-when-degraded
      actions: ["delete_file"]
      effect: EFFECT_DENY
      roles: ["agent"]
      condition:
        match:
          expr: request.principal.attr.trust_tier != "trusted"
      output:
        when:
          ruleActivated: |-
            {"reason": "session trust is " + request.principal.attr.trust_tier}
    - name: allow-delete-when-trusted
      actions: ["delete_file"]
      effect: EFFECT_ALLOW
      roles: ["agent"]
      condition:
        match:
          expr: request.principal.attr.trust_tier == "trusted"
      output:
        when:
          ruleActivated: |-
            {"reason": "trusted session may delete"}
`;

/** The Cerbos configuration a user pastes (services/adapters/README.md), with test addresses. */
export const cerbosConfig = (o: { httpPort: number; grpcPort: number; policyDir: string; brokers: string[]; topic: string }): string => `server:
  httpListenAddr: "127.0.0.1:${o.httpPort}"
  grpcListenAddr: "127.0.0.1:${o.grpcPort}"
storage:
  driver: disk
  disk:
    directory: ${JSON.stringify(o.policyDir)}
    watchForChanges: false
auxData:
  jwt:
    disableVerification: true
telemetry:
  disabled: true
audit:
  enabled: true
  accessLogsEnabled: false
  decisionLogsEnabled: true
  backend: kafka
  kafka:
    brokers: ${JSON.stringify(o.brokers)}
    topic: ${JSON.stringify(o.topic)}
    encoding: json
    ack: all
    produceSync: true
    compression: ["gzip"]
`;

export type CerbosPdp = { url: string; pid: number; dir: string; logFile: string; stop(): Promise<void> };

export const startCerbos = async (o: { brokers: string[]; topic: string; binary: string; timeoutMs?: number }): Promise<CerbosPdp> => {
  const dir = mkdtempSync(join(tmpdir(), 'trustfold-cerbos-'));
  const policyDir = join(dir, 'policies');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'agent_tool.yaml'), AGENT_TOOL_POLICY);
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'cerbos.yaml');
  writeFileSync(configFile, cerbosConfig({ httpPort, grpcPort, policyDir, brokers: o.brokers, topic: o.topic }));
  const logFile = join(dir, 'cerbos.log');
  const out = openSync(logFile, 'a');
  const child: ChildProcess = spawn(o.binary, ['server', `--config=${configFile}`, '--log-level=warn'], {
    stdio: ['ignore', out, out],
    env: { ...process.env, CERBOS_NO_TELEMETRY: '1' },
  });
  const pid = child.pid ?? -1;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(kill, 5_000);
      await exited;
      clearTimeout(t);
    }
    process.removeListener('exit', kill);
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null) {
      const log = readFileSync(logFile, 'utf8');
      await stop();
      throw new Error(`cerbos exited with ${child.exitCode}: ${log.slice(-2000)}`);
    }
    const up = await fetch(`${url}/_cerbos/health`).then((r) => r.ok).catch(() => false);
    if (up) return { url, pid, dir, logFile, stop };
    if (Date.now() > deadline) {
      const log = readFileSync(logFile, 'utf8');
      await stop();
      throw new Error(`cerbos not healthy after ${o.timeoutMs ?? 30_000} ms: ${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
};

export type ToolCall = {
  requestId: string;
  principal: { id: string; roles: string[]; attr: Record<string, unknown> };
  resources: { actions: string[]; resource: { kind: string; id: string; attr?: Record<string, unknown> } }[];
  auxData?: { jwt: { token: string } };
};

/** Cerbos's HTTP CheckResources API. */
export const checkResources = async (url: string, call: ToolCall): Promise<{ cerbosCallId: string; results: { resource: { id: string }; actions: Record<string, string> }[] }> => {
  const r = await fetch(`${url}/api/check/resources`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(call) });
  const body = (await r.json()) as { cerbosCallId: string; results: { resource: { id: string }; actions: Record<string, string> }[] };
  if (!r.ok) throw new Error(`CheckResources ${r.status}: ${JSON.stringify(body)}`);
  return body;
};

/** An unsigned JWT for auxData (the test config disables verification; production verifies with a keyset). */
export const unsignedJwt = (claims: Record<string, unknown>): string =>
  `${Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
