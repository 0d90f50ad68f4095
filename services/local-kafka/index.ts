// The development/test Kafka: a local KRaft broker, or a three-node cluster,
// run as JVMs from the jars scripts/kafka-fetch.mjs fetches from Maven Central.
// Nothing in production imports this folder; production points KAFKA_BROKERS
// at a real cluster. See README.md here.
export { KafkaBrokerError, type KafkaBrokerErrorCode } from './errors.ts';
export { ensureKafkaJars, resolveKafkaJarsDir, type KafkaJars } from './jars.ts';
export { startKafkaBroker, type KafkaBroker, type KafkaBrokerOptions } from './broker.ts';
export { startKafkaCluster, type KafkaCluster, type KafkaClusterNode, type KafkaClusterOptions } from './cluster.ts';
