// The detect role: rules over every decision, emitted as signals through
// ingest's admission (services/detect/).
import type { DetectConfig } from '../detect/config.ts';
import { createDetectRole } from '../detect/role.ts';
import { createKafkaSink } from '../ingest/sink.ts';
import type { RoleContext, RoleModule } from './role.ts';

export const detectRole = (ctx: RoleContext, dc: DetectConfig): RoleModule => {
  const sink = createKafkaSink({ kafka: ctx.kafka, timeoutMs: ctx.config.http.produceTimeoutMs });
  const detect = createDetectRole({
    kafka: ctx.kafka,
    topics: ctx.config.topics,
    config: dc,
    sink,
    registry: ctx.registry,
    logger: ctx.logger.child({ role: 'detect' }),
    eventTime: ctx.config.eventTime,
  });
  let started = false;
  return {
    start: async () => {
      await detect.start();
      started = true;
    },
    readiness: () => [{ name: 'detect', check: async () => (detect.isRunning() ? true : 'consumer stopped') }],
    close: async () => {
      if (started) await detect.stop();
      await sink.close();
    },
  };
};
