// Running Kafka's JVMs: the storage formatter, a node's server JVM (its own
// process group, output to files), and the wait until it serves metadata.
// The JVM runs in a process group of its own, so a Ctrl-C aimed at the
// terminal's foreground group reaches the Node process only, which stops the
// broker last. The JVM writes to files, never to our stdio, so a test runner
// waiting for our pipes to close is never held open by it.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel, type SASLOptions } from 'kafkajs';
import { KafkaBrokerError } from './errors.ts';
import { adoptCdsDump, cdsArchiveFlag, cdsFlags, removeStaleCdsDumps, type KafkaJars } from './jars.ts';
import { STOP_GRACE_MS, startWatchdog, trackJvm, untrackJvm } from './reaper.ts';

/** `java` of the given JDK home, or the one on PATH. */
const javaBin = (javaHome: string | undefined): string =>
  javaHome !== undefined && javaHome !== '' ? join(javaHome, 'bin', 'java') : 'java';

const javaNotFound = (javaHome: string | undefined, cause: unknown): KafkaBrokerError =>
  new KafkaBrokerError('JAVA_NOT_FOUND', `cannot run ${javaBin(javaHome)}: install a JDK 17+ or pass javaHome (JAVA_HOME)`, { cause });

export const tailOf = (file: string, lines: number, fromByte = 0): string => {
  try {
    return readFileSync(file).subarray(fromByte).toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
};

export const delay = (ms: number): Promise<void> => new Promise((resolveDelay) => setTimeout(resolveDelay, ms));

// Short-lived JVM tools do not need the JIT's top tier.
const FAST_TOOL_JVM_FLAGS = ['-Xmx256m', '-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-XX:-UsePerfData'];

export type FormatPlan = { jars: KafkaJars; javaHome: string | undefined; configFile: string; clusterId: string; outputFile: string; log4jFile: string };

/** kafka.tools.StorageTool format (a no-op on a dir formatted before). */
export const formatStorage = (plan: FormatPlan): Promise<void> =>
  new Promise<void>((resolveFormat, reject) => {
    const out = openSync(plan.outputFile, 'a');
    const child = spawn(
      javaBin(plan.javaHome),
      [
        ...FAST_TOOL_JVM_FLAGS,
        ...cdsArchiveFlag(plan.jars.dir),
        `-Dlog4j.configuration=file:${plan.log4jFile}`,
        '-cp',
        join(plan.jars.dir, '*'),
        'kafka.tools.StorageTool',
        'format',
        '--ignore-formatted',
        '-t',
        plan.clusterId,
        '-c',
        plan.configFile,
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    child.once('error', (error) => reject(javaNotFound(plan.javaHome, error)));
    child.once('exit', (code, signal) => {
      if (code === 0) return resolveFormat();
      reject(
        new KafkaBrokerError(
          'KAFKA_STORAGE_FORMAT_FAILED',
          `kafka.tools.StorageTool format exited with ${code ?? signal}:\n${tailOf(plan.outputFile, 40)}`,
        ),
      );
    });
  });

// Delivers appended log lines to onLine; the JVM logs to a file, not to a pipe.
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

export type JvmExit = { code: number | null; signal: NodeJS.Signals | null };

export type NodeJvmPlan = {
  jars: KafkaJars;
  javaHome: string | undefined;
  /** The JVM's working dir; the watchdog logs to watchdog.log in it. */
  dataDir: string;
  logFile: string;
  jvmOutFile: string;
  configFile: string;
  log4jFile: string;
  heapMb: number;
  handleSignals: boolean;
  /** Removed by the watchdog once the JVM is gone after this process died. */
  dirToRemove: string | undefined;
  onLog: ((line: string) => void) | undefined;
};

export type NodeJvm = {
  pid: number;
  /** Resolves when the JVM has exited. */
  exited: Promise<JvmExit>;
  /** How the JVM exited, once it has. */
  exit(): JvmExit | undefined;
  /**
   * Stops the JVM and its watchdog: SIGTERM then SIGKILL after 15 s, or at once
   * with `{ kill: true }` (a crash, as a test means it). Idempotent.
   */
  halt(o?: { kill?: boolean }): Promise<void>;
  /** The tails of this run's server log and JVM output, for error messages. */
  logsSinceSpawn(): string;
};

/** Spawns a node's server JVM (kafka.Kafka <configFile>) with its watchdog; does not wait for it to serve. */
export const spawnNodeJvm = async (plan: NodeJvmPlan): Promise<NodeJvm> => {
  const { jars, logFile, jvmOutFile, configFile, log4jFile, heapMb } = plan;
  // A reused data dir appends to old logs; errors should show only this run's.
  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const jvmOutStart = existsSync(jvmOutFile) ? statSync(jvmOutFile).size : 0;
  const stopFollowing = plan.onLog !== undefined ? followFile(logFile, plan.onLog) : () => undefined;

  removeStaleCdsDumps(jars.dir);
  const cds = cdsFlags(jars.dir);
  const out = openSync(jvmOutFile, 'a');
  const jvm = spawn(
    javaBin(plan.javaHome),
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
    { cwd: plan.dataDir, stdio: ['ignore', out, out], detached: true },
  );
  closeSync(out);

  let exit: JvmExit | undefined;
  const exited = new Promise<JvmExit>((resolveExit, reject) => {
    jvm.once('error', (error) => reject(javaNotFound(plan.javaHome, error)));
    jvm.once('exit', (code, signal) => {
      exit = { code, signal };
      adoptCdsDump(jars.dir, cds.dumpFile);
      if (jvm.pid !== undefined) untrackJvm(jvm.pid);
      resolveExit(exit);
    });
  });
  const pid = jvm.pid;
  if (pid === undefined) {
    stopFollowing();
    throw await exited.then(
      () => javaNotFound(plan.javaHome, undefined),
      (error: unknown) => error,
    );
  }
  trackJvm(pid, plan.handleSignals);
  const watchdog = startWatchdog(pid, configFile, join(plan.dataDir, 'watchdog.log'), plan.dirToRemove);

  let halting: Promise<void> | undefined;
  const halt = (o: { kill?: boolean } = {}): Promise<void> => {
    if (o.kill === true && exit === undefined) jvm.kill('SIGKILL');
    return (halting ??= (async () => {
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
  };

  return {
    pid,
    exited,
    exit: () => exit,
    halt,
    logsSinceSpawn: () =>
      [`--- ${logFile} (tail) ---`, tailOf(logFile, 60, logStart), `--- ${jvmOutFile} (tail) ---`, tailOf(jvmOutFile, 20, jvmOutStart)].join('\n'),
  };
};

/**
 * Whether the brokers answer metadata with at least `registered` brokers in it
 * (a fenced broker is left out of metadata responses) and list topics.
 */
export const brokersAnswerMetadata = async (brokers: string[], sasl: SASLOptions | undefined, registered = 1): Promise<boolean> => {
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
    if (cluster.brokers.length < registered) return false;
    await admin.listTopics();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
};

/**
 * Polls `serving` until it holds. If a JVM exits first, or the deadline passes,
 * every JVM of `jvms` is halted and the error carries their logs.
 */
export const waitUntilServing = async (jvms: readonly NodeJvm[], serving: () => Promise<boolean>, deadlineMs: number, what: string): Promise<void> => {
  const haltAll = (): Promise<void> => Promise.all(jvms.map((jvm) => jvm.halt())).then(() => undefined);
  const logs = (): string => jvms.map((jvm) => `=== JVM ${jvm.pid} ===\n${jvm.logsSinceSpawn()}`).join('\n');
  for (;;) {
    const gone = jvms.find((jvm) => jvm.exit() !== undefined);
    if (gone !== undefined) {
      const exit = gone.exit();
      await haltAll();
      throw new KafkaBrokerError('KAFKA_BROKER_EXITED', `Kafka broker JVM ${gone.pid} exited during start (${exit?.code ?? exit?.signal}).\n${logs()}`);
    }
    if (await serving()) return;
    if (Date.now() > deadlineMs) {
      await haltAll();
      throw new KafkaBrokerError('KAFKA_BROKER_START_TIMEOUT', `${what} did not answer metadata in time.\n${logs()}`);
    }
    await delay(200);
  }
};
