// The console's addresses: every view is a URL fragment, so every id is a
// link, reloads keep the view, and nothing of it reaches a server log.
// `#code=…` is the one-time sign-in link `npm start` prints; the page takes it
// out of the address at once and trades the code for a token.
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

/**
 * A sign-in link's fragment: `#code=<one-time code>&next=<route>` (what `npm
 * start` prints), or the old `#token=…` form, which the page no longer takes
 * (a token in an address is a token in the history): it is taken out of the
 * address bar all the same, and the reader is asked to paste it. Undefined for
 * any other fragment.
 */
export type SignInLink = { kind: 'code'; code: string; next: string } | { kind: 'token'; next: string };

export const signInLink = (hash: string): SignInLink | undefined => {
  const m = /^#(code|token)=([^&]+)(?:&next=(.*))?$/.exec(hash);
  if (m?.[1] === undefined || m[2] === undefined) return undefined;
  let next = '#/live';
  try {
    const n = m[3] === undefined ? '' : decodeURIComponent(m[3]);
    if (n.startsWith('#/')) next = n;
  } catch {
    // a broken next: the default view
  }
  if (m[1] === 'token') return { kind: 'token', next };
  return { kind: 'code', code: m[2], next };
};

/** A sign-in link of the page at `base` (tests and the server print these): the code in the fragment only. */
export const signInHref = (base: string, code: string, next?: string): string =>
  `${base}#code=${code}${next !== undefined ? `&next=${encodeURIComponent(next)}` : ''}`;
