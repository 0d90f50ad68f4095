// A real single-node Apache Kafka broker (KRaft, combined broker+controller)
// on 127.0.0.1, run from the jars scripts/kafka-fetch.mjs copies out of Maven
// Central. For integration tests and local development only; production points
// KAFKA_BROKERS at a real cluster.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { SASLOptions } from 'kafkajs';
import { KafkaBrokerError } from './errors.ts';
import { ensureKafkaJars } from './jars.ts';
import { brokersAnswerMetadata, formatStorage, spawnNodeJvm, waitUntilServing } from './launch.ts';
import { log4jProperties, serverProperties, type BrokerSasl } from './properties.ts';
import { chooseBrokerState, writeBrokerState } from './state.ts';

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
  /** The JDK to run (`<javaHome>/bin/java`); the caller reads JAVA_HOME. Default: `java` on PATH. */
  javaHome?: string | undefined;
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

const MAX_BIND_ATTEMPTS = 3;

/** A start that failed because another process took a port between our probe and the JVM's bind. */
export const isPortTaken = (error: unknown): boolean =>
  error instanceof KafkaBrokerError && error.code === 'KAFKA_BROKER_EXITED' && /Address already in use|BindException/.test(error.message);

/** The SASL settings of a broker or cluster: the callers' users plus a `broker` user of its own. */
export const brokerSasl = (sasl: KafkaBrokerOptions['sasl']): BrokerSasl =>
  sasl !== undefined ? { users: sasl.users, self: { username: 'broker', password: randomBytes(18).toString('base64url') } } : undefined;

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
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const sasl = brokerSasl(opts.sasl);
  const selfSasl: SASLOptions | undefined = sasl !== undefined ? { mechanism: 'plain', ...sasl.self } : undefined;
  try {
    mkdirSync(dataDir, { recursive: true });
    mkdirSync(dirname(logFile), { recursive: true });
    writeFileSync(log4jFile, log4jProperties(logFile));
    for (let attempt = 1; ; attempt++) {
      const state = await chooseBrokerState(dataDir, kafkaLogDir, attempt > 1);
      writeBrokerState(dataDir, state);
      writeFileSync(
        configFile,
        serverProperties({
          nodeId: 1,
          brokerPort: state.brokerPort,
          controllerPort: state.controllerPort,
          voters: `1@127.0.0.1:${state.controllerPort}`,
          kafkaLogDir,
          partitions: opts.partitions ?? 3,
          replicationFactor: 1,
          minInsyncReplicas: 1,
          sasl,
        }),
      );
      if (!existsSync(join(kafkaLogDir, 'meta.properties'))) {
        await formatStorage({ jars, javaHome: opts.javaHome, configFile, clusterId: state.clusterId, outputFile: jvmOutFile, log4jFile });
      }
      const brokers = [`127.0.0.1:${state.brokerPort}`];
      const spawnedMs = Date.now();
      try {
        const jvm = await spawnNodeJvm({
          jars,
          javaHome: opts.javaHome,
          dataDir,
          logFile,
          jvmOutFile,
          configFile,
          log4jFile,
          heapMb: opts.heapMb ?? 512,
          handleSignals: opts.handleSignals ?? true,
          dirToRemove: ephemeral ? dataDir : undefined,
          onLog: opts.onLog,
        });
        // On a failed start the data dir stays: the next attempt reuses it.
        await waitUntilServing(
          [jvm],
          () => brokersAnswerMetadata(brokers, selfSasl),
          spawnedMs + startTimeoutMs,
          `Kafka broker JVM ${jvm.pid} on ${brokers.join(',')} (${startTimeoutMs} ms)`,
        );
        let stopping: Promise<void> | undefined;
        const stop = (): Promise<void> =>
          (stopping ??= jvm.halt().then(() => {
            if (ephemeral) rmSync(dataDir, { recursive: true, force: true });
          }));
        const startedMs = Date.now();
        return { brokers, stop, pid: jvm.pid, dataDir, startedMs, startupMs: startedMs - calledMs, ...(selfSasl !== undefined ? { broker: selfSasl } : {}) };
      } catch (error) {
        if (!isPortTaken(error) || attempt >= MAX_BIND_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    if (ephemeral) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
};
