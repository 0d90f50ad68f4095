// The ingest role as one app: the shared HTTP shell plus ingest's routes.
// Built without listening; main.ts listens and shuts down.
import type { Registry } from 'prom-client';
import type { Authenticator } from '../lib/auth.ts';
import { buildBaseApp, type App } from '../lib/http.ts';
import type { Logger } from '../lib/log.ts';
import { ingestRoutes, kafkaReadiness, type IngestDeps } from './routes.ts';

export type IngestAppDeps = IngestDeps & { auth: Authenticator; registry: Registry; logger?: Logger | boolean };

export const buildIngestApp = async (deps: IngestAppDeps): Promise<App> => {
  const app = await buildBaseApp({
    auth: deps.auth,
    registry: deps.registry,
    bodyLimit: deps.limits.maxBodyBytes,
    readiness: [kafkaReadiness(deps.sink)],
    ...(deps.logger !== undefined ? { logger: deps.logger } : {}),
  });
  await app.register(ingestRoutes(deps));
  return app;
};
