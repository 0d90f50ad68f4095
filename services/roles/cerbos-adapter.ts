// The Cerbos adapter role: Cerbos's audit topic → decisions (services/adapters/cerbos.ts).
import type { AdapterConfig } from '../adapters/config.ts';
import { createCerbosAuditConsumer } from '../adapters/cerbos.ts';
import type { RoleContext, RoleModule } from './role.ts';

export const cerbosAdapterRole = (ctx: RoleContext, adapters: AdapterConfig): RoleModule => {
  const cerbos = createCerbosAuditConsumer({
    kafka: ctx.kafka,
    topics: ctx.config.topics,
    cerbos: adapters.cerbos,
    registry: ctx.registry,
    logger: ctx.logger.child({ role: 'cerbos-adapter' }),
    produceTimeoutMs: ctx.config.http.produceTimeoutMs,
    eventTime: ctx.config.eventTime,
  });
  let started = false;
  return {
    start: async () => {
      await cerbos.start();
      started = true;
    },
    readiness: () => [{ name: 'cerbos_adapter', check: async () => (cerbos.isRunning() ? true : 'consumer stopped') }],
    close: async () => {
      if (started) await cerbos.stop();
    },
  };
};
