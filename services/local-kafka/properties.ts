// server.properties and log4j.properties of a local KRaft node (combined
// broker+controller roles), for one node or for each node of a cluster.

const SASL_NAME = /^[A-Za-z0-9_.-]+$/;

export type BrokerSasl = { users: Readonly<Record<string, string>>; self: { username: string; password: string } } | undefined;

/** The client listener's settings: PLAINTEXT, or SASL_PLAINTEXT with PLAIN users in the listener's JAAS config. */
const listenerProperties = (broker: string, controller: string, sasl: BrokerSasl): Record<string, string> => {
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

export type NodeProperties = {
  nodeId: number;
  brokerPort: number;
  controllerPort: number;
  /** controller.quorum.voters: `id@host:port` of every voter, this node included. */
  voters: string;
  kafkaLogDir: string;
  /** num.partitions for topics created without an explicit count. */
  partitions: number;
  /** Replication of the internal topics and of topics created without an explicit factor. */
  replicationFactor: number;
  /** min.insync.replicas of the broker (topics may set their own) and of the transaction log. */
  minInsyncReplicas: number;
  sasl: BrokerSasl;
  /**
   * broker.session.timeout.ms: how long the active controller waits for a
   * broker's heartbeat before fencing it and moving its partition leaderships.
   * Undefined keeps Kafka's default (9 s).
   */
  brokerSessionTimeoutMs?: number;
};

export const serverProperties = (node: NodeProperties): string => {
  const broker = `127.0.0.1:${node.brokerPort}`;
  const controller = `127.0.0.1:${node.controllerPort}`;
  const entries: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': node.nodeId,
    'controller.quorum.voters': node.voters,
    'controller.listener.names': 'CONTROLLER',
    ...listenerProperties(broker, controller, node.sasl),
    'log.dirs': node.kafkaLogDir,
    'num.partitions': node.partitions,
    'default.replication.factor': node.replicationFactor,
    'min.insync.replicas': node.minInsyncReplicas,
    'auto.create.topics.enable': false,
    'offsets.topic.replication.factor': node.replicationFactor,
    // 50 partitions each by default: creating them delays the first consumer group / transaction.
    'offsets.topic.num.partitions': 4,
    'transaction.state.log.replication.factor': node.replicationFactor,
    'transaction.state.log.min.isr': node.minInsyncReplicas,
    'transaction.state.log.num.partitions': 4,
    'group.initial.rebalance.delay.ms': 0,
    // The projector's fast failover (TRUSTFOLD_PROJECTOR_SESSION_TIMEOUT_MS ~1.5 s) needs sessions below Kafka's 6 s floor.
    'group.min.session.timeout.ms': 500,
    ...(node.brokerSessionTimeoutMs !== undefined && {
      'broker.session.timeout.ms': node.brokerSessionTimeoutMs,
      // Kafka's default ratio (2 s heartbeats to a 9 s session), kept below a third.
      'broker.heartbeat.interval.ms': Math.max(250, Math.floor(node.brokerSessionTimeoutMs / 4)),
    }),
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

export const log4jProperties = (logFile: string): string =>
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
