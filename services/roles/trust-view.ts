// A TrustView of the session-trust topic (services/pdp-client/), and the trust
// API over it (services/trust-api/): mounted wherever a view runs — with the
// projector, or with SSF, which pushes from the same view.
import { Gauge } from 'prom-client';
import { createTrustView, type TrustView } from '../pdp-client/trust-view.ts';
import { trustRoutes } from '../trust-api/routes.ts';
import type { RoleContext, RoleModule } from './role.ts';

export type TrustViewRole = RoleModule & {
  /** The view, once started. */
  view(): TrustView | undefined;
};

/** `waitForCatchUp`: start returns once the view has read the topic to its start-time end (before a projector of the same process joins its group). */
export const trustViewRole = (ctx: RoleContext, readUncommitted: boolean, o: { waitForCatchUp?: boolean } = {}): TrustViewRole => {
  let view: TrustView | undefined;
  return {
    view: () => view,
    async start() {
      const v = await createTrustView({ kafka: ctx.kafka, topic: ctx.config.topics.sessionTrust, logger: ctx.logger.child({ role: 'trust-view' }), readUncommitted });
      view = v;
      new Gauge({
        name: 'trustfold_trust_view_refused_records',
        help: 'session-trust records the trust view refused since start (key not the payload\'s session, impossible version), by reason',
        labelNames: ['reason'],
        registers: [ctx.registry],
        collect() {
          for (const [reason, n] of Object.entries(v.refused())) this.set({ reason }, n);
        },
      });
      if (o.waitForCatchUp === true) await v.ready();
    },
    readiness: () => [{ name: 'trust_view', check: async () => (view?.isReady() === true ? true : 'catching up') }],
    async routes(app) {
      if (view === undefined) return;
      await app.register(trustRoutes({ view, maxStreams: ctx.config.http.maxStreams, maxStreamsPerSubject: ctx.config.http.maxStreamsPerSubject }));
    },
    close: async () => {
      await view?.close();
    },
  };
};
