// What a data dir remembers between runs: the cluster id its storage was
// formatted with and the ports its listeners used. A reused data dir keeps its
// ports when they are still free, so a developer's KAFKA_BROKERS stays valid
// across restarts.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findFreePorts, isPortFree } from './ports.ts';

export type NodePorts = { brokerPort: number; controllerPort: number };
/** One node's state (the single broker's file, kept in this shape so existing data dirs stay valid). */
export type BrokerState = { clusterId: string } & NodePorts;
/** A cluster's state: node i + 1 listens on nodes[i]. */
export type ClusterState = { clusterId: string; nodes: NodePorts[] };

const BROKER_STATE_FILE = 'trustfold-kafka.json';
const CLUSTER_STATE_FILE = 'trustfold-kafka-cluster.json';

const isPort = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 65_536;

const readJson = (file: string): Record<string, unknown> | undefined => {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

const nodePortsOf = (value: unknown): NodePorts | undefined => {
  if (typeof value !== 'object' || value === null) return undefined;
  const { brokerPort, controllerPort } = value as Record<string, unknown>;
  return isPort(brokerPort) && isPort(controllerPort) ? { brokerPort, controllerPort } : undefined;
};

const writeJson = (file: string, value: unknown): void => writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);

// Kafka's Uuid text form: 16 random bytes, base64url without padding, not starting with '-'.
export const newClusterId = (): string => {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
};

/** The cluster id a formatted Kafka log dir holds, if it is formatted. */
export const clusterIdOfFormattedDir = (kafkaLogDir: string): string | undefined => {
  try {
    return /^cluster\.id=(.+)$/m.exec(readFileSync(join(kafkaLogDir, 'meta.properties'), 'utf8'))?.[1]?.trim();
  } catch {
    return undefined;
  }
};

const allFree = async (nodes: readonly NodePorts[]): Promise<boolean> => {
  for (const node of nodes) {
    if (!(await isPortFree(node.brokerPort)) || !(await isPortFree(node.controllerPort))) return false;
  }
  return true;
};

const freshPorts = async (count: number): Promise<NodePorts[]> => {
  const ports = await findFreePorts(count * 2);
  return Array.from({ length: count }, (_, i) => {
    const brokerPort = ports[2 * i];
    const controllerPort = ports[2 * i + 1];
    if (brokerPort === undefined || controllerPort === undefined) throw new Error('no free ports found');
    return { brokerPort, controllerPort };
  });
};

export const chooseBrokerState = async (dataDir: string, kafkaLogDir: string, forceNewPorts: boolean): Promise<BrokerState> => {
  const json = readJson(join(dataDir, BROKER_STATE_FILE));
  const previousId = typeof json?.['clusterId'] === 'string' ? json['clusterId'] : undefined;
  const previousPorts = nodePortsOf(json);
  const clusterId = clusterIdOfFormattedDir(kafkaLogDir) ?? previousId ?? newClusterId();
  if (!forceNewPorts && previousPorts !== undefined && (await allFree([previousPorts]))) return { clusterId, ...previousPorts };
  const [ports] = await freshPorts(1);
  if (ports === undefined) throw new Error('no free ports found');
  return { clusterId, ...ports };
};

export const writeBrokerState = (dataDir: string, state: BrokerState): void => writeJson(join(dataDir, BROKER_STATE_FILE), state);

/**
 * A cluster of `count` nodes: one cluster id for every node's storage (the
 * first formatted node dir wins, so a half-formatted cluster is finished with
 * the id it began with) and two ports per node.
 */
export const chooseClusterState = async (dataDir: string, kafkaLogDirs: readonly string[], forceNewPorts: boolean): Promise<ClusterState> => {
  const json = readJson(join(dataDir, CLUSTER_STATE_FILE));
  const previousId = typeof json?.['clusterId'] === 'string' ? json['clusterId'] : undefined;
  const listed = Array.isArray(json?.['nodes']) ? (json['nodes'] as unknown[]).map(nodePortsOf) : [];
  const previousNodes = listed.length === kafkaLogDirs.length && listed.every((n) => n !== undefined) ? (listed as NodePorts[]) : undefined;
  const formattedIds = kafkaLogDirs.map(clusterIdOfFormattedDir).filter((id): id is string => id !== undefined);
  const clusterId = formattedIds[0] ?? previousId ?? newClusterId();
  if (!forceNewPorts && previousNodes !== undefined && (await allFree(previousNodes))) return { clusterId, nodes: previousNodes };
  return { clusterId, nodes: await freshPorts(kafkaLogDirs.length) };
};

export const writeClusterState = (dataDir: string, state: ClusterState): void => writeJson(join(dataDir, CLUSTER_STATE_FILE), state);
