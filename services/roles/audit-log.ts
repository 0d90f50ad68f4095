// The tamper-evident log's writer (services/audit-log/, docs/audit-log.md).
// Two modes: where the audit sink runs in the same process, the writer is
// hooked into it (the sink hands over the leaves of what it stored, hashed by
// its decoding threads, before it commits: no second consumer, no second
// decode) — it starts before the sink
// and stops after it, so its last checkpoint covers everything handed over.
// Alone (`--role audit-log`), it reads the audit topics in a consumer group of
// its own. Its proofs are served by the query role.
import type { AuditLogConfig } from '../audit-log/config.ts';
import type { Signer } from '../audit-log/note.ts';
import { createAuditLogStore, WRITER_TILE_CACHE_BYTES } from '../audit-log/store.ts';
import { createAuditLogWriter, createHookedAuditLogWriter, ensureCheckpointTopic, type AuditLogWriter, type HookedAuditLogWriter } from '../audit-log/writer.ts';
import type { AuditSinkHooks } from './audit-sink.ts';
import type { RoleContext, RoleModule } from './role.ts';

export type AuditLogRole = RoleModule & {
  /** The sink's hooks when the writer is hooked into a sink in this process. */
  sinkHooks: AuditSinkHooks | undefined;
};

export const auditLogRole = (ctx: RoleContext, alc: AuditLogConfig, signer: Signer, mode: 'hooked' | 'consumer'): AuditLogRole => {
  const { config } = ctx;
  const deps = {
    kafka: ctx.kafka,
    store: createAuditLogStore(ctx.openClickHouse(), config.clickhouse.database, { tileCacheBytes: WRITER_TILE_CACHE_BYTES }),
    signer,
    originPrefix: alc.originPrefix,
    checkpointTopic: alc.checkpointTopic,
    checkpointIntervalMs: alc.checkpointIntervalMs,
    log: ctx.logger.child({ role: 'audit-log' }),
  };
  const hooked: HookedAuditLogWriter | undefined = mode === 'hooked' ? createHookedAuditLogWriter(deps) : undefined;
  const writer: AuditLogWriter = hooked ?? createAuditLogWriter({ ...deps, topics: config.topics, groupId: alc.groupId });
  let started = false;
  return {
    sinkHooks: hooked === undefined ? undefined : { onStored: hooked.onStored, onAssigned: hooked.onAssigned },
    async start() {
      await ensureCheckpointTopic(ctx.admin, alc.checkpointTopic, config.kafka);
      await writer.start();
      started = true;
    },
    readiness: () => [{ name: 'audit_log', check: async () => (writer.isRunning() ? true : hooked !== undefined ? 'writer stopped' : 'consumer stopped') }],
    close: async () => {
      if (started) await writer.stop();
    },
  };
};
