// The responder's and SOC's page (services/console/): static, it reads the
// other roles' routes with the signed-in token. Mounted in every process.
import { consoleRoutes } from '../console/plugin.ts';
import { routesOnly, type RoleModule } from './role.ts';

export const consoleRole = (): RoleModule => routesOnly(async (app) => {
  await app.register(consoleRoutes());
});
