// The audit log writer as a process: config from the environment, its tables,
// then write until SIGTERM/SIGINT (which signs a last checkpoint).
//
// `--crash-after-appends=N` SIGKILLs the process right after the N-th batch
// of leaves is durable (no cleanup, no offset commit, no checkpoint). It
// exists for the crash test and does nothing unless given.
import { clickhouseTarget, createClickHouse } from '../lib/clickhouse.ts';
import { formatFieldErrors, loadConfig } from '../lib/config.ts';
import { createKafka } from '../lib/kafka.ts';
import { createLogger } from '../lib/log.ts';
import { parseAuditLogConfig } from './config.ts';
import { loadSigner } from './keys.ts';
import { createAuditLogStore, WRITER_TILE_CACHE_BYTES } from './store.ts';
import { createAuditLogWriter, ensureCheckpointTopic } from './writer.ts';

const argValue = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

const main = async (): Promise<void> => {
  const config = loadConfig();
  const r = parseAuditLogConfig(process.env);
  if (!r.ok) throw new Error(`invalid audit log configuration: ${formatFieldErrors(r.error)}`);
  const lc = r.value;
  const log = createLogger('audit-log', config.logLevel);
  if (config.kafka.brokers === undefined) throw new Error('KAFKA_BROKERS is required for the audit log writer');
  const crashAfter = argValue('crash-after-appends');
  let appends = 0;

  const clickhouse = createClickHouse(clickhouseTarget(config.clickhouse));
  const store = createAuditLogStore(clickhouse, config.clickhouse.database, { tileCacheBytes: WRITER_TILE_CACHE_BYTES });
  await store.ensureTables();
  const kafka = createKafka(config.kafka.brokers, `${config.kafka.clientId}-audit-log`);
  const admin = kafka.admin();
  await admin.connect();
  await ensureCheckpointTopic(admin, lc.checkpointTopic, config.kafka);
  await admin.disconnect();

  const { signer } = loadSigner({ signingKey: lc.signingKey, keyName: lc.keyName, dataDir: config.dataDir });
  const writer = createAuditLogWriter({
    kafka,
    store,
    topics: config.topics,
    groupId: argValue('group') ?? lc.groupId,
    signer,
    originPrefix: lc.originPrefix,
    checkpointTopic: lc.checkpointTopic,
    checkpointIntervalMs: lc.checkpointIntervalMs,
    log,
    afterAppend: (logId, size) => {
      appends++;
      process.stdout.write(`${JSON.stringify({ msg: 'audit-log: appended', log: logId, size })}\n`);
      if (crashAfter !== undefined && appends >= Number(crashAfter)) process.kill(process.pid, 'SIGKILL');
    },
  });
  await writer.start();
  process.stdout.write(`${JSON.stringify({ msg: 'audit-log: started' })}\n`);
  const shutdown = async (signal: string): Promise<void> => {
    log.info({ signal }, 'audit log: stopping');
    await writer.stop();
    await clickhouse.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
};

if (process.argv[1]?.endsWith('audit-log/main.ts') === true) {
  main().catch((e: unknown) => {
    process.stderr.write(`audit-log: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
