// What every role gives the composition root (services/system.ts): a role is
// built from its settings and the process's shared clients, then started, then
// its routes are mounted on the one HTTP app, and it is closed in reverse
// order of start. A role never imports another role; what two roles share (the
// projector's fold for ingest's freeze list, a TrustView for the trust API and
// SSF) is handed in by the composition root.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Admin, Kafka } from 'kafkajs';
import type { Registry } from 'prom-client';
import type { Config } from '../lib/config.ts';
import type { App, ReadinessCheck } from '../lib/http.ts';
import type { Logger } from '../lib/log.ts';

export type RoleModule = {
  /** Connects, joins its consumer group, restores: everything before the process may answer. */
  start(): Promise<void>;
  /** The /readyz checks of this role (asked after start). */
  readiness(): ReadinessCheck[];
  /** The HTTP routes this role serves, mounted after start. */
  routes?(app: App): Promise<void>;
  close(): Promise<void>;
};

/** What the composition root shares with every role of the process. */
export type RoleContext = {
  config: Config;
  kafka: Kafka;
  /** The process's connected admin client. */
  admin: Admin;
  registry: Registry;
  logger: Logger;
  /** A new ClickHouse client on the process's target, closed with the process (one chdb connection runs one operation at a time). */
  openClickHouse(): ClickHouseClient;
};

/** A role with nothing of its own to start or close (routes only). */
export const routesOnly = (routes: (app: App) => Promise<void>): RoleModule => ({
  start: async () => undefined,
  readiness: () => [],
  routes,
  close: async () => undefined,
});
