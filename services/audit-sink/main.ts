// The audit sink as a process: config from the environment, migrations, then
// consume until SIGTERM/SIGINT.
//
// `--audit-log` also writes the tamper-evident log in this process, from the
// sink's `onStored` hook (services/audit-log/writer.ts, hooked mode): this
// entry point is a composition root like services/system.ts, the only places
// that wire the two services together.
//
// `--crash-after-inserts=N` exits the process (SIGKILL: no cleanup, no offset
// commit) right after the N-th block is durable in ClickHouse;
// `--crash-after-appends=N` right after the N-th batch of leaves is durable
// (with `--audit-log`), before the sink commits that batch. They exist for the
// crash-recovery integration tests and do nothing unless given;
// `--max-bytes-per-partition=N` caps a fetch (so the tests see many small batches).
import { Registry, collectDefaultMetrics } from 'prom-client';
import { migrate } from '../lib/clickhouse-migrate.ts';
import { clickhouseTarget, createClickHouse } from '../lib/clickhouse.ts';
import { formatFieldErrors, loadConfig } from '../lib/config.ts';
import { createKafkaFor, ensureTopics, retryTransient, topicLayout } from '../lib/kafka.ts';
import { createLogger } from '../lib/log.ts';
import { parseAuditLogConfig } from '../audit-log/config.ts';
import { loadSigner } from '../audit-log/keys.ts';
import { createAuditLogStore, WRITER_TILE_CACHE_BYTES } from '../audit-log/store.ts';
import { createHookedAuditLogWriter, ensureCheckpointTopic, type HookedAuditLogWriter } from '../audit-log/writer.ts';
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
  const crashAfterAppends = argValue('crash-after-appends');
  let inserts = 0;
  let appends = 0;

  const clickhouse = createClickHouse(clickhouseTarget(config.clickhouse));
  await migrate(clickhouse, { database: config.clickhouse.database, ttlDays: config.clickhouse.ttlDays, cluster: config.clickhouse.cluster });
  const kafka = createKafkaFor(config.kafka, config.kafka.brokers, `${config.kafka.clientId}-audit-sink`);
  const admin = kafka.admin();
  await retryTransient(() => admin.connect());
  await ensureTopics(admin, topicLayout(config));

  let writer: HookedAuditLogWriter | undefined;
  if (process.argv.includes('--audit-log')) {
    const lc = parseAuditLogConfig(process.env);
    if (!lc.ok) throw new Error(`invalid audit log configuration: ${formatFieldErrors(lc.error)}`);
    await ensureCheckpointTopic(admin, lc.value.checkpointTopic, config.kafka);
    const store = createAuditLogStore(createClickHouse(clickhouseTarget(config.clickhouse)), config.clickhouse.database, { tileCacheBytes: WRITER_TILE_CACHE_BYTES });
    await store.ensureTables();
    writer = createHookedAuditLogWriter({
      kafka,
      store,
      signer: loadSigner({ signingKey: lc.value.signingKey, keyName: lc.value.keyName, dataDir: config.dataDir }).signer,
      originPrefix: lc.value.originPrefix,
      checkpointTopic: lc.value.checkpointTopic,
      checkpointIntervalMs: lc.value.checkpointIntervalMs,
      log: createLogger('audit-log', config.logLevel),
      afterAppend: (log, size) => {
        appends++;
        process.stdout.write(`${JSON.stringify({ msg: 'audit-log: appended', log, size })}\n`);
        if (crashAfterAppends !== undefined && appends >= Number(crashAfterAppends)) process.kill(process.pid, 'SIGKILL');
      },
    });
    await writer.start();
  }
  await admin.disconnect();

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const indexClient = createClickHouse(clickhouseTarget(config.clickhouse));
  const sink = createAuditSink({
    kafka,
    clickhouse,
    database: config.clickhouse.database,
    cluster: config.clickhouse.cluster,
    writeOnceFilter: config.clickhouse.writeOnceFilter,
    // The write-once filter reads the index on its own connection, beside consuming.
    indexClient,
    writeOnceFilterMaxBytes: config.clickhouse.writeOnceFilterMaxBytes,
    topics: config.topics,
    groupId,
    registry,
    log,
    ...(argValue('max-bytes-per-partition') !== undefined ? { consumer: { maxBytesPerPartition: Number(argValue('max-bytes-per-partition')) } } : {}),
    afterInsert: (block) => {
      inserts++;
      process.stdout.write(`${JSON.stringify({ msg: 'audit-sink: inserted', ...block })}\n`);
      if (crashAfter !== undefined && inserts >= Number(crashAfter)) {
        // A real crash between insert and commit: no handlers, no flush, no commit.
        process.kill(process.pid, 'SIGKILL');
      }
    },
    ...(writer !== undefined ? { onStored: writer.onStored, onAssigned: writer.onAssigned } : {}),
  });
  await sink.start();
  process.stdout.write(`${JSON.stringify({ msg: 'audit-sink: started', groupId, auditLog: writer !== undefined })}\n`);

  const shutdown = async (signal: string): Promise<void> => {
    log.info({ signal }, 'audit sink: stopping');
    await sink.stop();
    // After the sink: the last checkpoint covers everything it handed over.
    await writer?.stop();
    await clickhouse.close();
    await indexClient.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
};

main().catch((e: unknown) => {
  process.stderr.write(`audit-sink: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
