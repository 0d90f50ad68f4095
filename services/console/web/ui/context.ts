// What every view is given: the API, who is signed in, and the tenant to read.
import type { Abilities, Identity } from '../lib/access.ts';
import type { Route } from '../lib/routes.ts';
import type { Api } from './api.ts';

export type Ctx = {
  api: Api;
  who: Identity;
  can: Abilities;
  /** The tenant this view reads: the route's, else the operator's choice, else the token's. '' = every tenant (operators). */
  tenant: string;
  /** Ends with the view: streams and fetches stop when the reader leaves. */
  signal: AbortSignal;
  main: HTMLElement;
  route: Route;
};

/** `tenant=` for the API when the caller is an operator who chose one; a tenant token needs none. */
export const tenantQuery = (ctx: Ctx): Record<string, string> => (ctx.can.operator && ctx.tenant !== '' ? { tenant: ctx.tenant } : {});

export const qs = (params: Record<string, string | undefined>): string => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
};
