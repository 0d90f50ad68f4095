// The console's addresses: every view is a URL fragment, so every id is a
// link, reloads keep the view, and nothing of it reaches a server log.
// `#token=…` is the sign-in link `npm start` prints; the page takes the token
// out of the address at once.
export type View = 'live' | 'session' | 'decision' | 'delegator' | 'search' | 'freezes' | 'signin';
export type Route = { view: View; id?: string; params: Record<string, string> };

const VIEWS_WITH_ID: readonly View[] = ['session', 'decision', 'delegator'];
const VIEWS: readonly View[] = ['live', 'session', 'decision', 'delegator', 'search', 'freezes', 'signin'];

const paramsOf = (query: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query)) if (v !== '') out[k] = v;
  return out;
};

/** `#/session/S-9?tenant=acme` → { view: 'session', id: 'S-9', params: { tenant: 'acme' } }; anything unknown is the live view. */
export const parseRoute = (hash: string): Route => {
  const body = hash.replace(/^#/, '');
  const q = body.indexOf('?');
  const path = q < 0 ? body : body.slice(0, q);
  const params = paramsOf(q < 0 ? '' : body.slice(q + 1));
  const [name = '', rawId] = path.replace(/^\//, '').split('/');
  const view = VIEWS.find((v) => v === name);
  if (view === undefined) return { view: 'live', params: {} };
  if (!VIEWS_WITH_ID.includes(view)) return { view, params };
  let id: string | undefined;
  try {
    id = rawId === undefined || rawId === '' ? undefined : decodeURIComponent(rawId);
  } catch {
    id = undefined;
  }
  return id === undefined ? { view: 'live', params: {} } : { view, id, params };
};

/** The fragment of a route; empty params are left out, so links stay short and equal routes have equal links. */
export const routeHref = (view: View, id?: string, params: Record<string, string | undefined> = {}): string => {
  const path = id === undefined ? `#/${view}` : `#/${view}/${encodeURIComponent(id)}`;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const qs = q.toString();
  return qs === '' ? path : `${path}?${qs}`;
};

/** The token of a `#token=…` sign-in link, and where to go after; undefined for any other fragment. */
export const signInLink = (hash: string): { token: string; next: string } | undefined => {
  const m = /^#token=([^&]+)(?:&next=(.*))?$/.exec(hash);
  if (m?.[1] === undefined) return undefined;
  let next = '#/live';
  try {
    const n = m[2] === undefined ? '' : decodeURIComponent(m[2]);
    if (n.startsWith('#/')) next = n;
  } catch {
    // a broken next: the default view
  }
  return { token: decodeURIComponent(m[1]), next };
};
