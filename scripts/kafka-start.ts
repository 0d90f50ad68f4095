// `npm run kafka:start`: a local broker for development, kept in .data/kafka so
// topics and offsets (and the port, while it stays free) survive restarts.
import { join } from 'node:path';
import { startKafkaBroker } from '../services/local-kafka/index.ts';

const dataDir = join(process.cwd(), '.data', 'kafka');
console.log(`starting Apache Kafka (KRaft, single node) in ${dataDir} …`);
const broker = await startKafkaBroker({ dataDir, javaHome: process.env['JAVA_HOME'] });
console.log(`KAFKA_BROKERS=${broker.brokers.join(',')}`);
console.log(`started in ${(broker.startupMs / 1000).toFixed(1)} s (JVM pid ${broker.pid}); logs: ${join(dataDir, 'server.log')}`);
console.log('press Ctrl-C to stop');

let stopping = false;
const shutdown = (signal: NodeJS.Signals): void => {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping the broker …`);
  broker.stop().then(
    () => {
      console.log('broker stopped');
      process.exit(0);
    },
    (error: unknown) => {
      console.error('failed to stop the broker:', error);
      process.exit(1);
    },
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
