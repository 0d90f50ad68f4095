// The tamper-evident log's writer (services/audit-log/, docs/audit-log.md): a
// role of its own, in its own consumer group beside the sink's. Its proofs are
// served by the query role.
import type { AuditLogConfig } from '../audit-log/config.ts';
import type { Signer } from '../audit-log/note.ts';
import { createAuditLogStore } from '../audit-log/store.ts';
import { createAuditLogWriter, ensureCheckpointTopic, type AuditLogWriter } from '../audit-log/writer.ts';
import type { RoleContext, RoleModule } from './role.ts';

export const auditLogRole = (ctx: RoleContext, alc: AuditLogConfig, signer: Signer): RoleModule => {
  const { config } = ctx;
  let writer: AuditLogWriter | undefined;
  return {
    async start() {
      await ensureCheckpointTopic(ctx.admin, alc.checkpointTopic, config.kafka.replication);
      const w = createAuditLogWriter({
        kafka: ctx.kafka,
        store: createAuditLogStore(ctx.openClickHouse(), config.clickhouse.database),
        topics: config.topics,
        groupId: alc.groupId,
        signer,
        originPrefix: alc.originPrefix,
        checkpointTopic: alc.checkpointTopic,
        checkpointIntervalMs: alc.checkpointIntervalMs,
        log: ctx.logger.child({ role: 'audit-log' }),
      });
      await w.start();
      writer = w;
    },
    readiness: () => [{ name: 'audit_log', check: async () => (writer?.isRunning() === true ? true : 'consumer stopped') }],
    close: async () => {
      await writer?.stop();
    },
  };
};
