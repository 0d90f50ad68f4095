// The ingest role: HTTP → Kafka (services/ingest/) — events, SOC freezes, and
// OPA's decision-log uploads (services/adapters/opa.ts), on producers of its
// own. The freeze list it serves is the projected state's: the projector's
// fold or a TrustView when the process runs one (handed in), else a reader of
// the freezes alone (services/ingest/freeze-view.ts) — never a TrustView built
// just for the list.
import type { ActiveFreeze } from '../../schemas/events.ts';
import type { AdapterConfig } from '../adapters/config.ts';
import { opaRoutes } from '../adapters/opa.ts';
import { createDecisionWriter, type DecisionWriter } from '../adapters/writer.ts';
import { createFreezeView, type FreezeView } from '../ingest/freeze-view.ts';
import { ingestRoutes, kafkaReadiness } from '../ingest/routes.ts';
import { createKafkaSink, type EventSink } from '../ingest/sink.ts';
import type { RoleContext, RoleModule } from './role.ts';

/** The active freezes of a tenant, from wherever the process holds the projected state. */
export type FreezeSource = (tenant: string) => Promise<ActiveFreeze[]>;

export type IngestRoleOptions = {
  adapters: AdapterConfig;
  /** The process's projected state, when it holds one; else ingest reads the freezes itself. */
  activeFreezes: FreezeSource | undefined;
  /** How the freeze reader reads the session-trust topic (the projector's delivery mode decides). */
  readUncommitted: boolean;
};

export const ingestRole = (ctx: RoleContext, o: IngestRoleOptions): RoleModule => {
  const { config } = ctx;
  let sink: EventSink | undefined;
  let writer: DecisionWriter | undefined;
  let freezeView: FreezeView | undefined;
  return {
    start: async () => {
      if (o.activeFreezes === undefined) {
        freezeView = await createFreezeView({ kafka: ctx.kafka, topic: config.topics.sessionTrust, logger: ctx.logger.child({ role: 'freeze-view' }), readUncommitted: o.readUncommitted });
      }
      sink = createKafkaSink({ kafka: ctx.kafka, timeoutMs: config.http.produceTimeoutMs, producers: config.http.ingestProducers });
      writer = createDecisionWriter({ kafka: ctx.kafka, topic: config.topics.decisions, timeoutMs: config.http.produceTimeoutMs });
    },
    readiness: () => [
      ...(freezeView !== undefined ? [{ name: 'freeze_view', check: async () => (freezeView?.isReady() === true ? true : 'catching up') }] : []),
      ...(sink !== undefined ? [kafkaReadiness(sink)] : []),
    ],
    async routes(app) {
      if (sink === undefined || writer === undefined) return;
      const fv = freezeView;
      const activeFreezes: FreezeSource = o.activeFreezes ?? (async (tenant) => fv?.activeFreezes(tenant) ?? []);
      await app.register(ingestRoutes({ sink, topics: config.topics, registry: ctx.registry, activeFreezes, limits: config.http, eventTime: config.eventTime, recentIdCapacity: config.http.recentIdCapacity, prepareThreads: config.http.prepareThreads }));
      await app.register(opaRoutes({ writer, opa: o.adapters.opa, registry: ctx.registry, eventTime: config.eventTime }));
    },
    close: async () => {
      await writer?.close();
      await sink?.close();
      await freezeView?.close();
    },
  };
};
