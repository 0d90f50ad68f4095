// The SSF role (OpenID Shared Signals, services/ssf/): transmits trust changes
// read from the process's TrustView, receives other issuers' signals through
// a producer of its own. Its routes are registered by startSsfRole itself, so
// it starts once the app exists (in `routes`).
import type { TrustView } from '../pdp-client/trust-view.ts';
import { createKafkaSink, type EventSink } from '../ingest/sink.ts';
import type { SsfConfig } from '../ssf/config.ts';
import { startSsfRole, type SsfRole } from '../ssf/role.ts';
import type { RoleContext, RoleModule } from './role.ts';

export const ssfRole = (ctx: RoleContext, o: { ssf: SsfConfig; readUncommitted: boolean; view: () => TrustView | undefined }): RoleModule => {
  const { config } = ctx;
  let sink: EventSink | undefined;
  let role: SsfRole | undefined;
  return {
    start: async () => undefined,
    readiness: () => [],
    async routes(app) {
      sink = createKafkaSink({ kafka: ctx.kafka, timeoutMs: config.http.produceTimeoutMs });
      role = await startSsfRole({
        app,
        kafka: ctx.kafka,
        config,
        ssf: o.ssf,
        defaultIssuer: `http://${config.http.host}:${config.http.port}`,
        sink,
        registry: ctx.registry,
        readUncommitted: o.readUncommitted,
        sessionsOfUser: (tenant, user) => [...(o.view()?.all() ?? [])].filter((s) => s.tenant_id === tenant && s.delegator === user && !s.ended).map((s) => s.session_id),
        logger: ctx.logger.child({ role: 'ssf' }),
      });
    },
    close: async () => {
      await role?.close();
      await sink?.close();
    },
  };
};
