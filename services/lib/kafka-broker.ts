// A real single-node Apache Kafka broker (KRaft, combined broker+controller) run
// from the jars that scripts/kafka-fetch.mjs copies out of Maven Central. For
// integration tests and local development only; production points KAFKA_BROKERS
// at a real cluster.
//
// The JVM must never outlive the Node process that started it:
//   - stop() sends SIGTERM, then SIGKILL after a grace period;
//   - 'exit', SIGINT and SIGTERM handlers of this process signal every live JVM;
//   - a detached watchdog (scripts/kafka-watchdog.mjs) notices when this process
//     dies without running any handler (kill -9) and reaps the JVM itself.
// The JVM runs in a process group of its own, so a Ctrl-C aimed at the terminal's
// foreground group reaches the Node process only, which stops the broker last.
// The JVM writes to files, never to our stdio, so a test runner waiting for our
// pipes to close is never held open by it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, type SASLOptions } from 'kafkajs';

export type KafkaBrokerOptions = {
  /** Directory for config, logs and Kafka's data; reused as it is if it exists. Default: a fresh dir under os.tmpdir(). */
  dataDir?: string;
  /** The broker's log4j log file. Default: <dataDir>/server.log. */
  logFile?: string;
  /** JVM heap (-Xms = -Xmx). Default 512. */
  heapMb?: number;
  /** num.partitions for topics created without an explicit count. Default 3. */
  partitions?: number;
  /** How long to wait until the broker answers metadata requests. Default 60 000. */
  startTimeoutMs?: number;
  /** Remove dataDir once the JVM is gone (by stop(), or by the watchdog). Default: true when dataDir is not given. */
  ephemeral?: boolean;
  /**
   * Stop the JVM when this process gets SIGINT/SIGTERM (default true). A caller
   * that shuts down gracefully itself (closing its consumers before the broker)
   * passes false; the 'exit' handler and the watchdog still reap the JVM.
   */
  handleSignals?: boolean;
  /** Receives every line the broker logs (after log4j's level filter). */
  onLog?: (line: string) => void;
  /**
   * Serve clients on a SASL_PLAINTEXT listener (mechanism PLAIN) instead of
   * PLAINTEXT: only these users (name → password) can connect. The broker
   * talks to itself as a user of its own (`broker`, in the result).
   */
  sasl?: { users: Readonly<Record<string, string>> };
};

export type KafkaBroker = {
  /** Bootstrap addresses of the client listener (PLAINTEXT, or SASL_PLAINTEXT with `sasl`); the controller listener is never exposed. */
  brokers: string[];
  /** With `sasl`: the broker's own credentials (inter-broker and readiness probe). */
  broker?: SASLOptions;
  /** SIGTERM, then SIGKILL after 15 s; idempotent. */
  stop(): Promise<void>;
  /** The JVM's pid. */
  pid: number;
  dataDir: string;
  /** Date.now() when the broker first answered metadata requests. */
  startedMs: number;
  /** How long startKafkaBroker took (storage format + JVM start + first metadata answer), in ms. */
  startupMs: number;
};

export type KafkaJars = { dir: string; version: string };

type KafkaBrokerErrorCode =
  | 'KAFKA_JARS_MISSING'
  | 'JAVA_NOT_FOUND'
  | 'KAFKA_STORAGE_FORMAT_FAILED'
  | 'KAFKA_BROKER_EXITED'
  | 'KAFKA_BROKER_START_TIMEOUT';

export class KafkaBrokerError extends Error {
  override readonly name = 'KafkaBrokerError';
  readonly retriable = false;
  constructor(
    readonly code: KafkaBrokerErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

// Written by scripts/kafka-fetch.mjs after a complete copy; holds the Kafka version.
const KAFKA_JARS_MARKER = '.trustfold-kafka-version';
const STATE_FILE = 'trustfold-kafka.json';
const STOP_GRACE_MS = 15_000;
const MAX_BIND_ATTEMPTS = 3;

const findRepoRoot = (): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', 'kafka', 'pom.xml'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
};

const repoRoot = findRepoRoot();

export const resolveKafkaJarsDir = (): string => join(repoRoot, '.cache', 'kafka', 'jars');

/** The fetched jars, or a precise error saying how to fetch them. */
export const ensureKafkaJars = (): KafkaJars => {
  const dir = resolveKafkaJarsDir();
  let version: string;
  try {
    version = readFileSync(join(dir, KAFKA_JARS_MARKER), 'utf8').trim();
  } catch (cause) {
    throw new KafkaBrokerError(
      'KAFKA_JARS_MISSING',
      `Apache Kafka jars are missing or incomplete in ${dir}. Run \`npm run kafka:fetch\` (needs java and mvn), ` +
        'or set KAFKA_BROKERS to use an existing broker.',
      { cause },
    );
  }
  if (!existsSync(join(dir, `kafka_2.13-${version}.jar`))) {
    throw new KafkaBrokerError(
      'KAFKA_JARS_MISSING',
      `${dir} claims Kafka ${version} but kafka_2.13-${version}.jar is not there. ` +
        `Delete ${dir} and run \`npm run kafka:fetch\`.`,
    );
  }
  return { dir, version };
};

// --- ports ----------------------------------------------------------------

const listenOn = (port: number): Promise<ReturnType<typeof createServer>> =>
  new Promise((resolveServer, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolveServer(server));
  });

const closeServer = (server: ReturnType<typeof createServer>): Promise<void> =>
  new Promise((resolveClose) => server.close(() => resolveClose()));

// Both sockets are open at once so the two ports differ.
const findFreePorts = async (): Promise<{ brokerPort: number; controllerPort: number }> => {
  const servers = await Promise.all([listenOn(0), listenOn(0)]);
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('unexpected server address');
    return address.port;
  });
  await Promise.all(servers.map(closeServer));
  const [brokerPort, controllerPort] = ports;
  if (brokerPort === undefined || controllerPort === undefined) throw new Error('no free ports found');
  return { brokerPort, controllerPort };
};

const isPortFree = async (port: number): Promise<boolean> => {
  try {
    await closeServer(await listenOn(port));
    return true;
  } catch {
    return false;
  }
};

// --- data dir state ---------------------------------------------------------

type BrokerState = { clusterId: string; brokerPort: number; controllerPort: number };

const isPort = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 65_536;

const readState = (dataDir: string): BrokerState | undefined => {
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(dataDir, STATE_FILE), 'utf8'));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { clusterId, brokerPort, controllerPort } = parsed as Record<string, unknown>;
    if (typeof clusterId !== 'string' || !isPort(brokerPort) || !isPort(controllerPort)) return undefined;
    return { clusterId, brokerPort, controllerPort };
  } catch {
    return undefined;
  }
};

const writeState = (dataDir: string, state: BrokerState): void =>
  writeFileSync(join(dataDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);

// Kafka's Uuid text form: 16 random bytes, base64url without padding, not starting with '-'.
const newClusterId = (): string => {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
};

const clusterIdOfFormattedDir = (kafkaLogDir: string): string | undefined => {
  try {
    return /^cluster\.id=(.+)$/m.exec(readFileSync(join(kafkaLogDir, 'meta.properties'), 'utf8'))?.[1]?.trim();
  } catch {
    return undefined;
  }
};

// A reused data dir keeps its ports when they are still free, so a developer's
// KAFKA_BROKERS stays valid across restarts.
const chooseState = async (dataDir: string, kafkaLogDir: string, forceNewPorts: boolean): Promise<BrokerState> => {
  const previous = readState(dataDir);
  const clusterId = clusterIdOfFormattedDir(kafkaLogDir) ?? previous?.clusterId ?? newClusterId();
  if (
    !forceNewPorts &&
    previous !== undefined &&
    (await isPortFree(previous.brokerPort)) &&
    (await isPortFree(previous.controllerPort))
  ) {
    return { clusterId, brokerPort: previous.brokerPort, controllerPort: previous.controllerPort };
  }
  return { clusterId, ...(await findFreePorts()) };
};

// --- config files -----------------------------------------------------------

const SASL_NAME = /^[A-Za-z0-9_.-]+$/;

/** The client listener's settings: PLAINTEXT, or SASL_PLAINTEXT with PLAIN users in the listener's JAAS config. */
const listenerProperties = (broker: string, controller: string, sasl: { users: Readonly<Record<string, string>>; self: { username: string; password: string } } | undefined): Record<string, string> => {
  if (sasl === undefined) {
    return {
      listeners: `PLAINTEXT://${broker},CONTROLLER://${controller}`,
      'advertised.listeners': `PLAINTEXT://${broker}`,
      'inter.broker.listener.name': 'PLAINTEXT',
      'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    };
  }
  const users = { ...sasl.users, [sasl.self.username]: sasl.self.password };
  for (const [name, password] of Object.entries(users)) {
    // Written into a JAAS line between quotes: keep both to characters that need no escaping.
    if (!SASL_NAME.test(name) || !SASL_NAME.test(password)) throw new Error(`SASL user ${JSON.stringify(name)}: names and passwords must match ${String(SASL_NAME)}`);
  }
  const jaas =
    `org.apache.kafka.common.security.plain.PlainLoginModule required username="${sasl.self.username}" password="${sasl.self.password}" ` +
    `${Object.entries(users).map(([name, password]) => `user_${name}="${password}"`).join(' ')};`;
  return {
    listeners: `SASL_PLAINTEXT://${broker},CONTROLLER://${controller}`,
    'advertised.listeners': `SASL_PLAINTEXT://${broker}`,
    'inter.broker.listener.name': 'SASL_PLAINTEXT',
    'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT',
    'sasl.enabled.mechanisms': 'PLAIN',
    'sasl.mechanism.inter.broker.protocol': 'PLAIN',
    'listener.name.sasl_plaintext.plain.sasl.jaas.config': jaas,
  };
};

type BrokerSasl = Parameters<typeof listenerProperties>[2];

const serverProperties = (state: BrokerState, kafkaLogDir: string, partitions: number, sasl: BrokerSasl): string => {
  const broker = `127.0.0.1:${state.brokerPort}`;
  const controller = `127.0.0.1:${state.controllerPort}`;
  const entries: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    'controller.quorum.voters': `1@${controller}`,
    'controller.listener.names': 'CONTROLLER',
    ...listenerProperties(broker, controller, sasl),
    'log.dirs': kafkaLogDir,
    'num.partitions': partitions,
    'default.replication.factor': 1,
    'min.insync.replicas': 1,
    'auto.create.topics.enable': false,
    'offsets.topic.replication.factor': 1,
    // 50 partitions each by default: creating them delays the first consumer group / transaction.
    'offsets.topic.num.partitions': 4,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'transaction.state.log.num.partitions': 4,
    'group.initial.rebalance.delay.ms': 0,
    // Small machine, one client at a time: fewer threads start faster.
    'num.network.threads': 2,
    'num.io.threads': 4,
    'background.threads': 4,
    'num.recovery.threads.per.data.dir': 1,
    // The cleaner allocates its dedupe buffer on the heap at start (128 MiB by default).
    'log.cleaner.dedupe.buffer.size': 8 * 1024 * 1024,
    'log.cleaner.threads': 1,
    // Test and dev data: small segments, a day of retention, no preallocated 10 MiB indexes.
    'log.segment.bytes': 16 * 1024 * 1024,
    'log.index.size.max.bytes': 1024 * 1024,
    'log.retention.hours': 24,
    'log.retention.check.interval.ms': 60_000,
    'delete.topic.enable': true,
  };
  return `${Object.entries(entries)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join('\n')}\n`;
};

const log4jProperties = (logFile: string): string =>
  [
    'log4j.rootLogger=WARN, file',
    'log4j.appender.file=org.apache.log4j.FileAppender',
    `log4j.appender.file.File=${logFile}`,
    'log4j.appender.file.Append=true',
    'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
    'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n',
    // The lines that say which version started, and when it started and stopped.
    'log4j.logger.org.apache.kafka.common.utils.AppInfoParser=INFO',
    'log4j.logger.kafka.server.KafkaServer=INFO',
    'log4j.logger.kafka.server.SharedServer=INFO',
    'log4j.logger.kafka.server.KafkaRaftServer=INFO',
    'log4j.logger.kafka.server.BrokerServer=INFO',
    'log4j.logger.kafka.server.ControllerServer=INFO',
    '',
  ].join('\n');

// --- processes --------------------------------------------------------------

const javaBin = (): string => {
  const javaHome = process.env['JAVA_HOME'];
  return javaHome !== undefined && javaHome !== '' ? join(javaHome, 'bin', 'java') : 'java';
};

const javaNotFound = (cause: unknown): KafkaBrokerError =>
  new KafkaBrokerError('JAVA_NOT_FOUND', `cannot run ${javaBin()}: install a JDK 17+ or set JAVA_HOME`, { cause });

const tailOf = (file: string, lines: number, fromByte = 0): string => {
  try {
    return readFileSync(file).subarray(fromByte).toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
};

const delay = (ms: number): Promise<void> => new Promise((resolveDelay) => setTimeout(resolveDelay, ms));

// Start-up cost is mostly loading and verifying ~5 000 Kafka and Scala classes.
// The first broker run dumps them into a dynamic CDS archive next to the jars
// (a file per run, renamed into place once complete); later runs map it, which
// halves the JVM's CPU time to "started". A stale or mismatched archive is
// ignored by the JVM with a warning in jvm.out, never fatal.
const CDS_ARCHIVE = 'kafka-broker.jsa';

const cdsFlags = (jarsDir: string): { flags: string[]; dumpFile: string | undefined } => {
  const archive = join(jarsDir, CDS_ARCHIVE);
  if (existsSync(archive)) return { flags: [`-XX:SharedArchiveFile=${archive}`], dumpFile: undefined };
  const dumpFile = `${archive}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`;
  return { flags: [`-XX:ArchiveClassesAtExit=${dumpFile}`], dumpFile };
};

const adoptCdsDump = (jarsDir: string, dumpFile: string | undefined): void => {
  if (dumpFile === undefined || !existsSync(dumpFile)) return;
  const archive = join(jarsDir, CDS_ARCHIVE);
  try {
    if (existsSync(archive)) rmSync(dumpFile, { force: true });
    else renameSync(dumpFile, archive);
  } catch {
    // Another broker adopted its dump first; ours is redundant.
    rmSync(dumpFile, { force: true });
  }
};

// Dumps of JVMs that were killed mid-write, or whose parent died, are never adopted.
const removeStaleCdsDumps = (jarsDir: string): void => {
  for (const name of readdirSync(jarsDir)) {
    if (!name.startsWith(`${CDS_ARCHIVE}.tmp-`)) continue;
    const file = join(jarsDir, name);
    try {
      if (Date.now() - statSync(file).mtimeMs > 10 * 60_000) rmSync(file, { force: true });
    } catch {
      // Raced with another cleaner.
    }
  }
};

// Short-lived JVM tools do not need the JIT's top tier.
const FAST_TOOL_JVM_FLAGS = ['-Xmx256m', '-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-XX:-UsePerfData'];

const formatStorage = (jarsDir: string, configFile: string, clusterId: string, outputFile: string, log4jFile: string) =>
  new Promise<void>((resolveFormat, reject) => {
    const out = openSync(outputFile, 'a');
    const child = spawn(
      javaBin(),
      [
        ...FAST_TOOL_JVM_FLAGS,
        ...(existsSync(join(jarsDir, CDS_ARCHIVE)) ? [`-XX:SharedArchiveFile=${join(jarsDir, CDS_ARCHIVE)}`] : []),
        `-Dlog4j.configuration=file:${log4jFile}`,
        '-cp',
        join(jarsDir, '*'),
        'kafka.tools.StorageTool',
        'format',
        '--ignore-formatted',
        '-t',
        clusterId,
        '-c',
        configFile,
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    child.once('error', (error) => reject(javaNotFound(error)));
    child.once('exit', (code, signal) => {
      if (code === 0) return resolveFormat();
      reject(
        new KafkaBrokerError(
          'KAFKA_STORAGE_FORMAT_FAILED',
          `kafka.tools.StorageTool format exited with ${code ?? signal}:\n${tailOf(outputFile, 40)}`,
        ),
      );
    });
  });

// Every JVM this process started and has not yet seen exit.
const liveJvms = new Map<number, ChildProcess>();

const signalLiveJvms = (signal: NodeJS.Signals): void => {
  for (const pid of liveJvms.keys()) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
};

const onProcessExit = (): void => signalLiveJvms('SIGTERM');

const onProcessSignal = (signal: NodeJS.Signals): void => {
  signalLiveJvms('SIGTERM');
  // A listener disables Node's default "exit on SIGINT/SIGTERM". When nobody else
  // listens, restore it and re-raise, so the process dies as it would have.
  if (process.listenerCount(signal) === 1) {
    uninstallProcessHandlers();
    process.kill(process.pid, signal);
  }
};

let handlersInstalled = false;

let signalsHandled = false;

const installProcessHandlers = (handleSignals: boolean): void => {
  if (!handlersInstalled) {
    handlersInstalled = true;
    process.on('exit', onProcessExit);
  }
  if (handleSignals && !signalsHandled) {
    signalsHandled = true;
    process.on('SIGINT', onProcessSignal);
    process.on('SIGTERM', onProcessSignal);
  }
};

function uninstallProcessHandlers(): void {
  if (handlersInstalled) {
    handlersInstalled = false;
    process.off('exit', onProcessExit);
  }
  if (signalsHandled) {
    signalsHandled = false;
    process.off('SIGINT', onProcessSignal);
    process.off('SIGTERM', onProcessSignal);
  }
}

const startWatchdog = (jvmPid: number, jvmMarker: string, logFile: string, dirToRemove: string | undefined): ChildProcess => {
  const script = join(repoRoot, 'scripts', 'kafka-watchdog.mjs');
  const args = [script, String(process.pid), String(jvmPid), jvmMarker, String(STOP_GRACE_MS), logFile];
  if (dirToRemove !== undefined) args.push(dirToRemove);
  const watchdog = spawn(process.execPath, args, { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  // Neither the watchdog nor the pipe whose closing is its death notice may keep us alive.
  watchdog.unref();
  if (watchdog.stdin instanceof Socket) watchdog.stdin.unref();
  watchdog.on('error', () => {
    // Best effort: the 'exit' and signal handlers still cover the common cases.
  });
  return watchdog;
};

// Delivers appended log lines to onLog; the JVM logs to a file, not to a pipe.
const followFile = (file: string, onLine: (line: string) => void): (() => void) => {
  let offset = 0;
  let partial = '';
  const buffer = Buffer.alloc(64 * 1024);
  const poll = (): void => {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      return;
    }
    try {
      if (statSync(file).size < offset) offset = 0;
      for (;;) {
        const bytesRead = readSync(fd, buffer, 0, buffer.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (partial + buffer.toString('utf8', 0, bytesRead)).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) onLine(line);
      }
    } finally {
      closeSync(fd);
    }
  };
  const timer = setInterval(poll, 250);
  timer.unref();
  return () => {
    clearInterval(timer);
    poll();
    if (partial !== '') onLine(partial);
  };
};

type JvmExit = { code: number | null; signal: NodeJS.Signals | null };

const brokerAnswersMetadata = async (brokers: string[], sasl: SASLOptions | undefined): Promise<boolean> => {
  const admin = new Kafka({
    clientId: 'trustfold-broker-probe',
    brokers,
    ...(sasl !== undefined ? { sasl } : {}),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1_000,
    requestTimeout: 2_000,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    // A fenced broker is left out of metadata responses: wait until it is registered.
    if (cluster.brokers.length === 0) return false;
    await admin.listTopics();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
};

/**
 * Starts a single-node KRaft broker on 127.0.0.1 and resolves once it answers
 * metadata requests. A dataDir that was used before is reused as it is.
 */
export const startKafkaBroker = async (opts: KafkaBrokerOptions = {}): Promise<KafkaBroker> => {
  const calledMs = Date.now();
  const jars = ensureKafkaJars();
  const dataDir = resolve(opts.dataDir ?? mkdtempSync(join(tmpdir(), 'trustfold-kafka-')));
  const ephemeral = opts.ephemeral ?? opts.dataDir === undefined;
  const logFile = resolve(opts.logFile ?? join(dataDir, 'server.log'));
  const jvmOutFile = join(dataDir, 'jvm.out');
  const kafkaLogDir = join(dataDir, 'logs');
  const configFile = join(dataDir, 'server.properties');
  const log4jFile = join(dataDir, 'log4j.properties');
  const heapMb = opts.heapMb ?? 512;
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const sasl: BrokerSasl =
    opts.sasl !== undefined ? { users: opts.sasl.users, self: { username: 'broker', password: randomBytes(18).toString('base64url') } } : undefined;
  try {
    mkdirSync(dataDir, { recursive: true });
    mkdirSync(dirname(logFile), { recursive: true });
    writeFileSync(log4jFile, log4jProperties(logFile));
    for (let attempt = 1; ; attempt++) {
      const state = await chooseState(dataDir, kafkaLogDir, attempt > 1);
      writeState(dataDir, state);
      writeFileSync(configFile, serverProperties(state, kafkaLogDir, opts.partitions ?? 3, sasl));
      if (!existsSync(join(kafkaLogDir, 'meta.properties'))) {
        await formatStorage(jars.dir, configFile, state.clusterId, jvmOutFile, log4jFile);
      }
      try {
        return await launch({
          opts,
          jars,
          dataDir,
          logFile,
          jvmOutFile,
          configFile,
          log4jFile,
          heapMb,
          startTimeoutMs,
          state,
          calledMs,
          ephemeral,
          sasl,
        });
      } catch (error) {
        // Another process may grab a port between our probe and the JVM's bind.
        const portTaken =
          error instanceof KafkaBrokerError &&
          error.code === 'KAFKA_BROKER_EXITED' &&
          /Address already in use|BindException/.test(error.message);
        if (!portTaken || attempt >= MAX_BIND_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    if (ephemeral) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
};

type LaunchPlan = {
  opts: KafkaBrokerOptions;
  jars: KafkaJars;
  dataDir: string;
  logFile: string;
  jvmOutFile: string;
  configFile: string;
  log4jFile: string;
  heapMb: number;
  startTimeoutMs: number;
  state: BrokerState;
  calledMs: number;
  ephemeral: boolean;
  sasl: BrokerSasl;
};

const launch = async (plan: LaunchPlan): Promise<KafkaBroker> => {
  const { opts, jars, dataDir, logFile, jvmOutFile, configFile, log4jFile, heapMb, state } = plan;
  const brokers = [`127.0.0.1:${state.brokerPort}`];
  const selfSasl: SASLOptions | undefined = plan.sasl !== undefined ? { mechanism: 'plain', ...plan.sasl.self } : undefined;
  const spawnedMs = Date.now();
  // A reused data dir appends to old logs; errors should show only this run's.
  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const jvmOutStart = existsSync(jvmOutFile) ? statSync(jvmOutFile).size : 0;
  const stopFollowing = opts.onLog !== undefined ? followFile(logFile, opts.onLog) : () => undefined;

  removeStaleCdsDumps(jars.dir);
  const cds = cdsFlags(jars.dir);
  const out = openSync(jvmOutFile, 'a');
  const jvm = spawn(
    javaBin(),
    [
      `-Xmx${heapMb}m`,
      `-Xms${heapMb}m`,
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-XX:+ExplicitGCInvokesConcurrent',
      // C1 only: a test broker moves little data, and C2 compiles cost a CPU second at start.
      '-XX:TieredStopAtLevel=1',
      '-XX:-UsePerfData',
      ...cds.flags,
      '-Djava.awt.headless=true',
      `-Dlog4j.configuration=file:${log4jFile}`,
      '-cp',
      join(jars.dir, '*'),
      'kafka.Kafka',
      configFile,
    ],
    // Detached (a session and process group of its own): a Ctrl-C in the terminal
    // signals the terminal's foreground group, which must reach only us, so the roles
    // stop against a live broker and the broker stops last. Reaping does not depend on
    // the group: the 'exit' handler signals the JVM by pid, and the watchdog notices
    // our death through its stdin pipe and by polling our pid.
    { cwd: dataDir, stdio: ['ignore', out, out], detached: true },
  );
  closeSync(out);

  let exit: JvmExit | undefined;
  const exited = new Promise<JvmExit>((resolveExit, reject) => {
    jvm.once('error', (error) => reject(javaNotFound(error)));
    jvm.once('exit', (code, signal) => {
      exit = { code, signal };
      adoptCdsDump(jars.dir, cds.dumpFile);
      if (jvm.pid !== undefined) liveJvms.delete(jvm.pid);
      if (liveJvms.size === 0) uninstallProcessHandlers();
      resolveExit(exit);
    });
  });
  const pid = jvm.pid;
  if (pid === undefined) {
    stopFollowing();
    throw await exited.then(
      () => javaNotFound(undefined),
      (error: unknown) => error,
    );
  }
  liveJvms.set(pid, jvm);
  installProcessHandlers(opts.handleSignals ?? true);
  const watchdog = startWatchdog(pid, configFile, join(dataDir, 'watchdog.log'), plan.ephemeral ? dataDir : undefined);

  const logsSinceSpawn = (): string =>
    [
      `--- ${logFile} (tail) ---`,
      tailOf(logFile, 60, logStart),
      `--- ${jvmOutFile} (tail) ---`,
      tailOf(jvmOutFile, 20, jvmOutStart),
    ].join('\n');

  let halting: Promise<void> | undefined;
  const halt = (): Promise<void> =>
    (halting ??= (async () => {
      if (exit === undefined) {
        jvm.kill('SIGTERM');
        // A plain delay() here would keep the event loop alive for the whole grace period.
        const forceKill = setTimeout(() => jvm.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(forceKill);
      }
      stopFollowing();
      watchdog.kill('SIGTERM');
    })());

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= halt().then(() => {
      if (plan.ephemeral) rmSync(dataDir, { recursive: true, force: true });
    }));

  // On a failed start the data dir stays: startKafkaBroker may retry in it.
  const deadline = spawnedMs + plan.startTimeoutMs;
  for (;;) {
    if (exit !== undefined) {
      await halt();
      throw new KafkaBrokerError(
        'KAFKA_BROKER_EXITED',
        `Kafka broker JVM ${pid} exited during start (${exit.code ?? exit.signal}).\n${logsSinceSpawn()}`,
      );
    }
    if (await brokerAnswersMetadata(brokers, selfSasl)) break;
    if (Date.now() > deadline) {
      await halt();
      throw new KafkaBrokerError(
        'KAFKA_BROKER_START_TIMEOUT',
        `Kafka broker JVM ${pid} did not answer metadata on ${brokers.join(',')} within ${plan.startTimeoutMs} ms.\n${logsSinceSpawn()}`,
      );
    }
    await delay(200);
  }

  const startedMs = Date.now();
  return { brokers, stop, pid, dataDir, startedMs, startupMs: startedMs - plan.calledMs, ...(selfSasl !== undefined ? { broker: selfSasl } : {}) };
};
