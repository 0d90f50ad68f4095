// A local Apache Kafka cluster of N KRaft nodes (3 by default), each node a JVM
// with combined broker+controller roles on ports of its own, all of them voters
// of one controller quorum, every node's storage formatted with the same
// cluster id. Topics default to replication min(3, N) and min.insync.replicas
// min(2, replication). For tests and scenarios that must lose a broker; like
// the single broker (broker.ts) it never outlives the process that started it.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { SASLOptions } from 'kafkajs';
import { brokerSasl, isPortTaken, type KafkaBrokerOptions } from './broker.ts';
import { KafkaBrokerError } from './errors.ts';
import { ensureKafkaJars, type KafkaJars } from './jars.ts';
import { brokersAnswerMetadata, formatStorage, spawnNodeJvm, waitUntilServing, type NodeJvm, type NodeJvmPlan } from './launch.ts';
import { log4jProperties, serverProperties } from './properties.ts';
import { chooseClusterState, clusterIdOfFormattedDir, writeClusterState, type ClusterState } from './state.ts';

export type KafkaClusterOptions = Omit<KafkaBrokerOptions, 'logFile'> & {
  /** How many nodes (each broker and controller voter). Default 3. */
  nodes?: number;
  /** Replication of the internal topics and of topics created without a factor. Default min(3, nodes). */
  replicationFactor?: number;
  /** The brokers' min.insync.replicas (and the transaction log's). Default min(2, replicationFactor). */
  minInsyncReplicas?: number;
  /**
   * broker.session.timeout.ms: a broker that misses heartbeats this long is
   * fenced and its partitions get new leaders. Default 6 000 (Kafka's is 9 000):
   * a lost broker's partitions move sooner, and heartbeats (a quarter of it)
   * still tolerate a loaded two-core host.
   */
  brokerSessionTimeoutMs?: number;
};

export type KafkaClusterNode = {
  nodeId: number;
  /** The node's client listener, host:port. */
  broker: string;
  dataDir: string;
  /** The pid of the node's JVM while it runs. */
  pid(): number | undefined;
  running(): boolean;
  /** SIGKILL the node's JVM (a crash): no controlled shutdown, no leadership handed over. */
  kill(): Promise<void>;
  /** SIGTERM (controlled shutdown), SIGKILL after 15 s. */
  stop(): Promise<void>;
  /** Starts the node again on its ports and data; resolves once the cluster lists it as a live broker. */
  start(): Promise<void>;
};

export type KafkaCluster = {
  /** Bootstrap addresses: every node's client listener. */
  brokers: string[];
  /** With `sasl`: the brokers' own credentials. */
  broker?: SASLOptions;
  nodes: KafkaClusterNode[];
  clusterId: string;
  replicationFactor: number;
  minInsyncReplicas: number;
  dataDir: string;
  /** Stops every node (SIGTERM, then SIGKILL after 15 s); idempotent. */
  stop(): Promise<void>;
  startedMs: number;
  /** Storage format of every node + JVM starts + every node registered, in ms. */
  startupMs: number;
};

const MAX_BIND_ATTEMPTS = 3;

type NodeFiles = { dir: string; kafkaLogDir: string; configFile: string; log4jFile: string; logFile: string; jvmOutFile: string };

const filesOf = (dataDir: string, nodeId: number): NodeFiles => {
  const dir = join(dataDir, `node-${nodeId}`);
  return {
    dir,
    kafkaLogDir: join(dir, 'logs'),
    configFile: join(dir, 'server.properties'),
    log4jFile: join(dir, 'log4j.properties'),
    logFile: join(dir, 'server.log'),
    jvmOutFile: join(dir, 'jvm.out'),
  };
};

const positiveInt = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
};

/**
 * Starts an N-node KRaft cluster on 127.0.0.1 and resolves once every node is
 * a registered, unfenced broker. A dataDir used before is reused as it is
 * (its cluster id and, while they are free, its ports).
 */
export const startKafkaCluster = async (opts: KafkaClusterOptions = {}): Promise<KafkaCluster> => {
  const calledMs = Date.now();
  const count = positiveInt('nodes', opts.nodes ?? 3);
  const replicationFactor = positiveInt('replicationFactor', opts.replicationFactor ?? Math.min(3, count));
  const minInsyncReplicas = positiveInt('minInsyncReplicas', opts.minInsyncReplicas ?? Math.min(2, replicationFactor));
  if (replicationFactor > count) throw new RangeError(`replicationFactor ${replicationFactor} needs at least as many nodes (${count})`);
  if (minInsyncReplicas > replicationFactor) throw new RangeError(`minInsyncReplicas ${minInsyncReplicas} exceeds replicationFactor ${replicationFactor}`);
  const jars = ensureKafkaJars();
  const dataDir = resolve(opts.dataDir ?? mkdtempSync(join(tmpdir(), 'trustfold-kafka-cluster-')));
  const ephemeral = opts.ephemeral ?? opts.dataDir === undefined;
  const startTimeoutMs = opts.startTimeoutMs ?? 120_000;
  const sasl = brokerSasl(opts.sasl);
  const selfSasl: SASLOptions | undefined = sasl !== undefined ? { mechanism: 'plain', ...sasl.self } : undefined;
  const ids = Array.from({ length: count }, (_, i) => i + 1);
  const files = ids.map((id) => filesOf(dataDir, id));
  try {
    for (const f of files) {
      mkdirSync(f.dir, { recursive: true });
      writeFileSync(f.log4jFile, log4jProperties(f.logFile));
    }
    const formatted = new Set(files.map((f) => clusterIdOfFormattedDir(f.kafkaLogDir)).filter((id) => id !== undefined));
    if (formatted.size > 1) {
      throw new KafkaBrokerError('KAFKA_STORAGE_FORMAT_FAILED', `the nodes in ${dataDir} were formatted for different clusters (${[...formatted].join(', ')}); delete the dir`);
    }
    for (let attempt = 1; ; attempt++) {
      const state = await chooseClusterState(dataDir, files.map((f) => f.kafkaLogDir), attempt > 1);
      writeClusterState(dataDir, state);
      writeConfigs(state, files, opts, replicationFactor, minInsyncReplicas, sasl);
      await Promise.all(
        files.map((f) =>
          existsSync(join(f.kafkaLogDir, 'meta.properties'))
            ? undefined
            : formatStorage({ jars, javaHome: opts.javaHome, configFile: f.configFile, clusterId: state.clusterId, outputFile: f.jvmOutFile, log4jFile: f.log4jFile }),
        ),
      );
      const brokers = state.nodes.map((n) => `127.0.0.1:${n.brokerPort}`);
      const spawnedMs = Date.now();
      const nodes = ids.map((id, i) => clusterNode(id, brokers, files[i] ?? filesOf(dataDir, id), { jars, opts, ephemeral, selfSasl, startTimeoutMs }));
      try {
        await Promise.all(nodes.map((n) => n.spawn()));
        await waitUntilServing(
          nodes.map((n) => n.jvm()).filter((j): j is NodeJvm => j !== undefined),
          // Every node, not any one: a node that has not yet seen all its peers register answers with fewer brokers.
          async () => (await Promise.all(brokers.map((b) => brokersAnswerMetadata([b], selfSasl, count)))).every(Boolean),
          spawnedMs + startTimeoutMs,
          `Kafka cluster of ${count} nodes on ${brokers.join(',')} (${startTimeoutMs} ms)`,
        );
      } catch (error) {
        await Promise.all(nodes.map((n) => n.stop()));
        if (!isPortTaken(error) || attempt >= MAX_BIND_ATTEMPTS) throw error;
        continue;
      }
      let stopping: Promise<void> | undefined;
      const stop = (): Promise<void> =>
        (stopping ??= Promise.all(nodes.map((n) => n.stop())).then(() => {
          if (ephemeral) rmSync(dataDir, { recursive: true, force: true });
        }));
      const startedMs = Date.now();
      return {
        brokers,
        nodes: nodes.map((n) => n.node),
        clusterId: state.clusterId,
        replicationFactor,
        minInsyncReplicas,
        dataDir,
        stop,
        startedMs,
        startupMs: startedMs - calledMs,
        ...(selfSasl !== undefined ? { broker: selfSasl } : {}),
      };
    }
  } catch (error) {
    if (ephemeral) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
};

const writeConfigs = (
  state: ClusterState,
  files: readonly NodeFiles[],
  opts: KafkaClusterOptions,
  replicationFactor: number,
  minInsyncReplicas: number,
  sasl: ReturnType<typeof brokerSasl>,
): void => {
  const voters = state.nodes.map((n, i) => `${i + 1}@127.0.0.1:${n.controllerPort}`).join(',');
  state.nodes.forEach((n, i) => {
    const f = files[i];
    if (f === undefined) return;
    writeFileSync(
      f.configFile,
      serverProperties({
        nodeId: i + 1,
        brokerPort: n.brokerPort,
        controllerPort: n.controllerPort,
        voters,
        kafkaLogDir: f.kafkaLogDir,
        partitions: opts.partitions ?? 3,
        replicationFactor,
        minInsyncReplicas,
        sasl,
        brokerSessionTimeoutMs: opts.brokerSessionTimeoutMs ?? 6_000,
      }),
    );
  });
};

type NodeContext = { jars: KafkaJars; opts: KafkaClusterOptions; ephemeral: boolean; selfSasl: SASLOptions | undefined; startTimeoutMs: number };

/** One node: its JVM comes and goes (kill, stop, start); its files and ports stay. */
const clusterNode = (nodeId: number, brokers: readonly string[], f: NodeFiles, ctx: NodeContext) => {
  let current: NodeJvm | undefined;
  let starting: Promise<void> | undefined;
  const plan: NodeJvmPlan = {
    jars: ctx.jars,
    javaHome: ctx.opts.javaHome,
    dataDir: f.dir,
    logFile: f.logFile,
    jvmOutFile: f.jvmOutFile,
    configFile: f.configFile,
    log4jFile: f.log4jFile,
    heapMb: ctx.opts.heapMb ?? 384,
    handleSignals: ctx.opts.handleSignals ?? true,
    // The node's own dir: the other nodes' watchdogs may still be reaping theirs.
    dirToRemove: ctx.ephemeral ? f.dir : undefined,
    onLog: ctx.opts.onLog,
  };
  const running = (): boolean => current !== undefined && current.exit() === undefined;
  const spawn = async (): Promise<void> => {
    if (running()) return;
    current = await spawnNodeJvm(plan);
  };
  const halt = async (kill: boolean): Promise<void> => {
    const jvm = current;
    if (jvm === undefined) return;
    await jvm.halt({ kill });
    if (current === jvm) current = undefined;
  };
  const start = (): Promise<void> =>
    (starting ??= (async () => {
      try {
        await spawn();
        const jvm = current;
        if (jvm === undefined) throw new Error(`node ${nodeId} did not start`);
        // Listed by the cluster again: its own listener answers, and the controller unfenced it.
        await waitUntilServing([jvm], () => brokersAnswerMetadata([brokers[nodeId - 1] ?? ''], ctx.selfSasl, brokers.length), Date.now() + ctx.startTimeoutMs, `Kafka node ${nodeId}`);
      } finally {
        starting = undefined;
      }
    })());
  const node: KafkaClusterNode = {
    nodeId,
    broker: brokers[nodeId - 1] ?? '',
    dataDir: f.dir,
    pid: () => (running() ? current?.pid : undefined),
    running,
    kill: () => halt(true),
    stop: () => halt(false),
    start,
  };
  return { node, spawn, stop: node.stop, jvm: () => current };
};
