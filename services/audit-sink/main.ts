// The audit sink as a process: config from the environment, migrations, then
// consume until SIGTERM/SIGINT.
//
// `--crash-after-inserts=N` exits the process (SIGKILL: no cleanup, no offset
// commit) right after the N-th block is durable in ClickHouse. It exists for
// the crash-recovery integration test and does nothing unless given.
import { Registry, collectDefaultMetrics } from 'prom-client';
import { migrate } from '../lib/clickhouse-migrate.ts';
import { clickhouseTarget, createClickHouse } from '../lib/clickhouse.ts';
import { loadConfig } from '../lib/config.ts';
import { createKafkaFor, ensureTopics, topicLayout } from '../lib/kafka.ts';
import { createLogger } from '../lib/log.ts';
import { createAuditSink } from './sink.ts';
import { auditSinkGroupOf } from './group.ts';

const argValue = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

const main = async (): Promise<void> => {
  const config = loadConfig();
  const log = createLogger('audit-sink', config.logLevel);
  if (config.kafka.brokers === undefined) {
    log.fatal('KAFKA_BROKERS is required for the audit sink');
    process.exit(2);
  }
  const groupId = argValue('group') ?? auditSinkGroupOf(config.kafka.clientId);
  const crashAfter = argValue('crash-after-inserts');
  let inserts = 0;

  const clickhouse = createClickHouse(clickhouseTarget(config.clickhouse));
  await migrate(clickhouse, { database: config.clickhouse.database, ttlDays: config.clickhouse.ttlDays, cluster: config.clickhouse.cluster });
  const kafka = createKafkaFor(config.kafka, config.kafka.brokers, `${config.kafka.clientId}-audit-sink`);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topicLayout(config));
  await admin.disconnect();

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const sink = createAuditSink({
    kafka,
    clickhouse,
    database: config.clickhouse.database,
    cluster: config.clickhouse.cluster,
    topics: config.topics,
    groupId,
    registry,
    log,
    afterInsert: (block) => {
      inserts++;
      process.stdout.write(`${JSON.stringify({ msg: 'audit-sink: inserted', ...block })}\n`);
      if (crashAfter !== undefined && inserts >= Number(crashAfter)) {
        // A real crash between insert and commit: no handlers, no flush, no commit.
        process.kill(process.pid, 'SIGKILL');
      }
    },
  });
  await sink.start();
  process.stdout.write(`${JSON.stringify({ msg: 'audit-sink: started', groupId })}\n`);

  const shutdown = async (signal: string): Promise<void> => {
    log.info({ signal }, 'audit sink: stopping');
    await sink.stop();
    await clickhouse.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
};

main().catch((e: unknown) => {
  process.stderr.write(`audit-sink: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
