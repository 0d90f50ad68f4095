// What a token may see in the console: each view needs the scope of the API it
// reads, and the page offers only those (the API enforces them anyway).
import type { View } from './routes.ts';

export type Identity = { sub: string; tenant: string; scopes: readonly string[]; expires_at: string };

export const VIEW_SCOPES: Readonly<Record<Exclude<View, 'signin'>, string>> = {
  live: 'trust:read',
  session: 'audit:read',
  decision: 'audit:read',
  delegator: 'audit:read',
  search: 'audit:read',
  freezes: 'freeze:read',
};

export type Abilities = { views: ReadonlySet<View>; raiseFreeze: boolean; liftFreeze: boolean; liveTrust: boolean; operator: boolean };

export const abilitiesOf = (who: Identity): Abilities => {
  const has = (s: string): boolean => who.scopes.includes(s);
  const views = new Set<View>(['signin']);
  for (const [view, scope] of Object.entries(VIEW_SCOPES) as [View, string][]) if (has(scope)) views.add(view);
  return { views, raiseFreeze: has('freeze:write'), liftFreeze: has('freeze:write'), liveTrust: has('trust:read'), operator: who.tenant === '*' };
};

/** The first view a token may open: live if it can, else the first it has. */
export const homeView = (a: Abilities): View => (['live', 'search', 'freezes'] as const).find((v) => a.views.has(v)) ?? 'signin';
