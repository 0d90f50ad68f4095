// `trustfold` on the command line. `serve` is the only place that listens,
// starts a local broker, and shuts down on signals; everything else is a
// client of a running server.
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ALL_TENANTS_SCOPE, mintToken, OPERATOR_TENANT, SCOPES, setUpAuth } from './lib/auth.ts';
import { fieldErrorReport, parseConfig, type Config } from './lib/config.ts';
import { errorMessage } from './lib/errors.ts';
import { startKafkaBroker, type KafkaBroker } from './local-kafka/index.ts';
import { createLogger } from './lib/log.ts';
import { runCli } from './cli/cli.ts';
import { runAuditCli } from './cli/audit.ts';
import { parseRoles, parseSettings, type Settings } from './roles/settings.ts';
import { startSystem } from './system.ts';
import { signInCodes } from './console/signin.ts';

const USAGE = `trustfold — event-sourced audit and session trust for AI agents

usage:
  trustfold serve [--role all|ingest|projector|audit-sink|audit-log|query|cerbos-adapter|ssf[,…]]
        run the service (default --role all). Without KAFKA_BROKERS a local Kafka broker
        is started with its data in $TRUSTFOLD_DATA_DIR/kafka; without CLICKHOUSE_URL
        ClickHouse runs embedded with its data in $TRUSTFOLD_DATA_DIR/clickhouse.
  trustfold demo                       play the incident of docs/design.md against a running server
  trustfold token [...]                mint a dev token (see: trustfold token --help)
  trustfold freeze raise|lift|list     SOC change freezes
  trustfold audit session|delegator|explain   forensics
  trustfold audit verify|export        check the tamper-evident audit log; export an evidence bundle
  trustfold gate --config FILE         an MCP gateway that judges every tools/call on live session trust
  trustfold help
`;

/** The token `serve` prints: every scope and tenant, so it lives one hour only. */
const OPERATOR_TOKEN_TTL_SECONDS = 3600;

const configOrExit = (env: Record<string, string | undefined>): Config => {
  const r = parseConfig(env);
  if (r.ok) return r.value;
  process.stderr.write(fieldErrorReport('trustfold: invalid configuration', r.error));
  process.exit(2);
};

/** `serve`'s one parse: the common configuration and the settings of every role it runs, all bad variables named at once. */
const settingsOrExit = (env: Record<string, string | undefined>, roles: Parameters<typeof parseSettings>[1]): Settings => {
  const r = parseSettings(env, roles);
  if (r.ok) return r.value;
  process.stderr.write(fieldErrorReport('trustfold: invalid configuration', r.error));
  process.exit(2);
};

const fetchKafkaJars = (): void => {
  const script = fileURLToPath(new URL('../scripts/kafka-fetch.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('could not fetch the Kafka jars (see above)');
};

const serve = async (args: string[], env: Record<string, string | undefined>): Promise<number> => {
  const { values } = parseArgs({ args, options: { role: { type: 'string', default: 'all' } }, strict: true });
  const roles = parseRoles(values.role);
  if (!roles.ok) {
    process.stderr.write(`trustfold serve: ${roles.error}\n`);
    return 2;
  }
  const settings = settingsOrExit(env, roles.value);
  const { config } = settings;
  const logger = createLogger('trustfold', config.logLevel);
  const say = (s: string): void => void process.stderr.write(`${s}\n`);

  let broker: KafkaBroker | undefined;
  let brokers = config.kafka.brokers;
  if (brokers === undefined) {
    fetchKafkaJars();
    say(`starting a local Kafka broker (data in ${config.dataDir}/kafka)…`);
    broker = await startKafkaBroker({ dataDir: `${config.dataDir}/kafka`, partitions: config.kafka.partitions, handleSignals: false, javaHome: process.env["JAVA_HOME"] });
    brokers = broker.brokers;
    say(`Kafka ready at ${brokers.join(',')} in ${(broker.startupMs / 1000).toFixed(1)} s`);
  }

  let system;
  try {
    system = await startSystem({ settings, roles: roles.value, brokers, logger });
  } catch (e) {
    say(`trustfold serve: failed to start: ${errorMessage(e)}`);
    await broker?.stop();
    return 1;
  }

  const lines = [
    '',
    `trustfold is running (roles: ${[...roles.value].join(', ')})`,
    `  API        ${system.url ?? '(not listening)'}`,
    `  docs       ${system.url ?? ''}/docs`,
    `  console    ${system.url ?? ''}/console`,
    `  metrics    ${system.url ?? ''}/metrics`,
    `  Kafka      ${brokers.join(',')}${broker ? ' (local broker)' : ''}`,
    `  ClickHouse ${config.clickhouse.url ?? `embedded, ${config.clickhouse.path}`}`,
  ];
  if (system.auth.localSecret !== undefined) {
    const token = await mintToken({ sub: 'local-operator', tenant: OPERATOR_TENANT, scopes: SCOPES, ttlSeconds: OPERATOR_TOKEN_TTL_SECONDS }, system.auth.localSecret);
    const until = new Date(Date.now() + OPERATOR_TOKEN_TTL_SECONDS * 1000).toISOString();
    const link = signInCodes.issue(token);
    lines.push(
      `  auth       local secret in ${system.auth.secretFile ?? ''} (set TRUSTFOLD_JWT_SECRET or TRUSTFOLD_JWKS_URL in production)`,
      `  metrics    ${config.http.metricsToken !== undefined ? 'need Bearer $TRUSTFOLD_METRICS_TOKEN' : 'open to anyone who reaches the port (set TRUSTFOLD_METRICS_TOKEN to close it)'}`,
      '',
      `operator token (all scopes, every tenant; short-lived: expires in 1 h, at ${until}; mint another with trustfold token):`,
      `  export TRUSTFOLD_TOKEN=${token}`,
      '',
      // A one-time code rides in the fragment (never sent by the browser); the page trades it once, in a POST body, for the token.
      `console sign-in link (works once, until ${new Date(link.expiresAt).toISOString()}; then paste the token above):`,
      `  ${system.url ?? ''}/console#code=${link.code}`,
      '',
      `try:  curl -s -H "Authorization: Bearer $TRUSTFOLD_TOKEN" ${system.url ?? ''}/v1/freezes?tenant=acme`,
      '      npm run demo',
    );
  }
  lines.push('', 'Ctrl-C stops everything; data is kept in ' + config.dataDir + ' for the next start.', '');
  process.stdout.write(lines.join('\n'));

  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      say(`\n${signal}: stopping…`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  const t0 = Date.now();
  await system.close();
  await broker?.stop();
  say(`stopped in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
};

/** The audit CLI talks to a running server: TRUSTFOLD_URL / TRUSTFOLD_TOKEN, or the local defaults. */
const audit = async (args: string[], env: Record<string, string | undefined>): Promise<number> => {
  const config = configOrExit(env);
  const baseUrl = env['TRUSTFOLD_URL'] ?? `http://127.0.0.1:${config.http.port}`;
  let token = env['TRUSTFOLD_TOKEN'];
  if (token === undefined) {
    const auth = setUpAuth(config);
    const secret = config.auth.secret ?? auth.localSecret;
    if (secret === undefined) {
      process.stderr.write('trustfold audit: set TRUSTFOLD_TOKEN (no local secret to mint one from)\n');
      return 3;
    }
    token = await mintToken({ sub: 'cli', tenant: OPERATOR_TENANT, scopes: ['audit:read', ALL_TENANTS_SCOPE], ttlSeconds: 300 }, secret);
  }
  return runAuditCli(args, { baseUrl, token });
};

export const main = async (argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> => {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest, env);
      case 'token':
      case 'freeze':
      case 'gate':
        return await runCli(argv, { env });
      case 'audit':
        return await audit(rest, env);
      case 'demo': {
        const { runDemo } = await import('./demo/index.ts');
        return await runDemo(rest, env);
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`trustfold: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    process.stderr.write(`trustfold ${command}: ${errorMessage(e)}\n`);
    return 1;
  }
};
