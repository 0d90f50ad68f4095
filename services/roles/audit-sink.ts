// The audit-sink role: Kafka → ClickHouse, write-once (services/audit-sink/).
import { auditSinkGroupOf } from '../audit-sink/group.ts';
import { createAuditSink, type AuditSinkDeps } from '../audit-sink/sink.ts';
import type { RoleContext, RoleModule } from './role.ts';

/** What a writer hooked into the sink is handed (the audit log, services/roles/audit-log.ts). */
export type AuditSinkHooks = Required<Pick<AuditSinkDeps, 'onStored' | 'onAssigned'>>;

export const auditSinkRole = (ctx: RoleContext, hooks?: AuditSinkHooks): RoleModule => {
  const { config } = ctx;
  const sink = createAuditSink({
    kafka: ctx.kafka,
    clickhouse: ctx.openClickHouse(),
    // The write-once filter reads the index on its own connection, beside consuming.
    indexClient: ctx.openClickHouse(),
    database: config.clickhouse.database,
    cluster: config.clickhouse.cluster,
    writeOnceFilter: config.clickhouse.writeOnceFilter,
    writeOnceFilterMaxBytes: config.clickhouse.writeOnceFilterMaxBytes,
    topics: config.topics,
    groupId: auditSinkGroupOf(config.kafka.clientId),
    registry: ctx.registry,
    log: ctx.logger.child({ role: 'audit-sink' }),
    ...hooks,
  });
  let started = false;
  return {
    start: async () => {
      await sink.start();
      started = true;
    },
    readiness: () => [{ name: 'audit_sink', check: async () => (sink.isRunning() ? true : 'consumer stopped') }],
    close: async () => {
      if (started) await sink.stop();
    },
  };
};
