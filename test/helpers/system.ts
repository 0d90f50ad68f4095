// Tests start the composition root from an environment, as `trustfold serve`
// does: the settings of the roles are parsed once (services/roles/settings.ts),
// then services/system.ts composes.
import { mintToken, OPERATOR_TENANT, SCOPES } from '../../services/lib/auth.ts';
import type { Config } from '../../services/lib/config.ts';
import { valueOrThrow } from '../../services/lib/config.ts';
import type { Logger } from '../../services/lib/log.ts';
import { parseSettings, type Role } from '../../services/roles/settings.ts';
import { startSystem as compose, type System } from '../../services/system.ts';

export { ALL_ROLES, type Role } from '../../services/roles/settings.ts';
export type { System } from '../../services/system.ts';

export type TestSystemOptions = {
  config: Config;
  roles: ReadonlySet<Role>;
  brokers: string[];
  logger: Logger;
  /** The environment the roles' own settings are read from (the common ones come from `config`). */
  env: Record<string, string | undefined>;
  listen?: boolean;
};

export const startSystem = async (o: TestSystemOptions): Promise<System> =>
  compose({
    settings: valueOrThrow('configuration', parseSettings(o.env, o.roles, o.config)),
    roles: o.roles,
    brokers: o.brokers,
    logger: o.logger,
    ...(o.listen !== undefined ? { listen: o.listen } : {}),
  });

/**
 * The environment of one test's system: its own topics, client id, consumer
 * groups and ClickHouse database, all named after `id`, so tests sharing a
 * broker never read each other's records. `extra` adds or overrides settings.
 */
export const systemEnv = (id: string, o: { secret: string; dataDir: string; partitions?: number; extra?: Record<string, string> }): Record<string, string> => ({
  TRUSTFOLD_TOPIC_DECISIONS: `${id}.decisions`,
  TRUSTFOLD_TOPIC_SIGNALS: `${id}.signals`,
  TRUSTFOLD_TOPIC_SESSION_TRUST: `${id}.session-trust`,
  TRUSTFOLD_TOPIC_DEAD_LETTER: `${id}.dead-letter`,
  KAFKA_CLIENT_ID: id,
  CLICKHOUSE_DATABASE: id.replace(/[^A-Za-z0-9_]/g, '_'),
  TRUSTFOLD_PARTITIONS: String(o.partitions ?? 3),
  TRUSTFOLD_JWT_SECRET: o.secret,
  TRUSTFOLD_DATA_DIR: o.dataDir,
  TRUSTFOLD_PROJECTOR_GROUP: `${id}-projector`,
  TRUSTFOLD_DETECT_GROUP: `${id}-detect`,
  ...o.extra,
});

/** The token `npm start` prints: every scope, every tenant. */
export const operatorToken = (secret: string, sub = 'op'): Promise<string> => mintToken({ sub, tenant: OPERATOR_TENANT, scopes: SCOPES }, secret);
