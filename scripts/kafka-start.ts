// `npm run kafka:start`: a local broker for development, kept in .data/kafka so
// topics and offsets (and the port, while it stays free) survive restarts.
// `npm run kafka:start -- --nodes 3`: a three-node KRaft cluster instead (three
// voters, replication 3, min.insync.replicas 2), kept in .data/kafka-cluster.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startKafkaBroker, startKafkaCluster } from '../services/local-kafka/index.ts';

const usage = 'usage: npm run kafka:start [-- --nodes 1|3..9]';
let nodes = 1;
try {
  const { values } = parseArgs({ options: { nodes: { type: 'string', default: '1' } }, strict: true });
  nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes === 2 || nodes > 9) throw new Error(`--nodes must be 1 or 3..9 (a quorum of voters), got ${values.nodes}`);
} catch (error) {
  console.error(`${error instanceof Error ? error.message : String(error)}\n${usage}`);
  process.exit(2);
}

const javaHome = process.env['JAVA_HOME'];
let stop: () => Promise<void>;
if (nodes === 1) {
  const dataDir = join(process.cwd(), '.data', 'kafka');
  console.log(`starting Apache Kafka (KRaft, single node) in ${dataDir} …`);
  const broker = await startKafkaBroker({ dataDir, javaHome });
  console.log(`KAFKA_BROKERS=${broker.brokers.join(',')}`);
  console.log(`started in ${(broker.startupMs / 1000).toFixed(1)} s (JVM pid ${broker.pid}); logs: ${join(dataDir, 'server.log')}`);
  stop = broker.stop;
} else {
  const dataDir = join(process.cwd(), '.data', 'kafka-cluster');
  console.log(`starting Apache Kafka (KRaft, ${nodes} nodes, ${nodes} controller voters) in ${dataDir} …`);
  const cluster = await startKafkaCluster({ nodes, dataDir, javaHome });
  console.log(`KAFKA_BROKERS=${cluster.brokers.join(',')}`);
  console.log(`TRUSTFOLD_REPLICATION=${cluster.replicationFactor} TRUSTFOLD_MIN_INSYNC_REPLICAS=${cluster.minInsyncReplicas}`);
  console.log(`started in ${(cluster.startupMs / 1000).toFixed(1)} s (JVM pids ${cluster.nodes.map((n) => n.pid() ?? '?').join(', ')}); logs: ${join(dataDir, 'node-<n>', 'server.log')}`);
  stop = cluster.stop;
}
console.log('press Ctrl-C to stop');

let stopping = false;
const shutdown = (signal: NodeJS.Signals): void => {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping …`);
  stop().then(
    () => {
      console.log('stopped');
      process.exit(0);
    },
    (error: unknown) => {
      console.error('failed to stop:', error);
      process.exit(1);
    },
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
