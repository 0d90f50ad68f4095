// The projector role: the fold over signals and decisions, publishing trust
// states (services/projector/), with its counters as gauges read at scrape time.
import { Gauge } from 'prom-client';
import type { ProjectorConfig } from '../projector/config.ts';
import { createProjector, type Projector, type ProjectorStats } from '../projector/runtime.ts';
import { createScaledProjector } from '../projector/scale/instance.ts';
import type { RoleContext, RoleModule } from './role.ts';

export type ProjectorRole = RoleModule & { projector: Projector };

export const projectorRole = (ctx: RoleContext, pc: ProjectorConfig): ProjectorRole => {
  const deps = {
    kafka: ctx.kafka,
    config: ctx.config,
    logger: ctx.logger.child({ role: 'projector' }),
    groupId: pc.groupId,
    tickIntervalMs: pc.tickIntervalMs,
    fold: pc.fold,
    delivery: pc.delivery,
    sessionTimeoutMs: pc.sessionTimeoutMs,
    standby: pc.standby,
  };
  // TRUSTFOLD_PROJECTOR_SCALE_OUT: several instances in one group (services/projector/README.md, "Scaling out").
  const projector = pc.scaleOut ? createScaledProjector(deps) : createProjector(deps);
  let started = false;
  return {
    projector,
    async start() {
      await projector.start();
      started = true;
      const stat = (name: string, help: string, read: (st: ProjectorStats) => number): void => {
        new Gauge({ name: `trustfold_projector_${name}`, help, registers: [ctx.registry], collect() { this.set(read(projector.stats())); } });
      };
      stat('sessions', 'sessions in the fold', (st) => st.sessions);
      stat('published_states', 'trust states published since start', (st) => st.published);
      stat('batches', 'input batches folded since start', (st) => st.batches);
      stat('dead_lettered', 'input records sent to the dead-letter topic since start', (st) => st.deadLettered);
      stat('recoveries', 'times the in-memory fold was rebuilt from the changelog since start', (st) => st.recoveries);
      stat('replay_skipped', 'input records skipped after a restore because the changelog already covered them', (st) => st.replaySkipped);
      stat('key_mismatches', 'input records whose Kafka key disagreed with their event (dead-lettered, not folded) since start', (st) => st.keyMismatches);
      stat('unpublished_states', 'trust states folded but not yet acknowledged by the session-trust topic (0 at rest)', (st) => st.unpublished);
      stat('publish_lag_ms', 'age of the oldest folded state not yet on the session-trust topic, ms (0 at rest)', (st) => st.publishLagMs);
    },
    readiness: () => [{ name: 'projector', check: async () => projector.readiness() }],
    close: async () => {
      if (started) await projector.stop();
    },
  };
};
