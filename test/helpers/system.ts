// Tests start the composition root from an environment, as `trustfold serve`
// does: the settings of the roles are parsed once (services/roles/settings.ts),
// then services/system.ts composes.
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
