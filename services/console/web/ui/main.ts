// The console's shell: sign-in (a pasted token, or the one-time `#code=` link
// `npm start` prints, taken out of the address bar at once and traded for a
// token), who is signed in, the views the token's scopes allow, and the
// router between them.
import { abilitiesOf, homeView, type Identity } from '../lib/access.ts';
import { timeLeft } from '../lib/format.ts';
import { parseRoute, routeHref, signInLink, type View } from '../lib/routes.ts';
import { ApiError, createApi } from './api.ts';
import type { Ctx } from './context.ts';
import { fill, h, input, link } from './dom.ts';
import { renderDecision } from './views/decision.ts';
import { renderDelegator } from './views/delegator.ts';
import { renderFreezes } from './views/freezes.ts';
import { renderLive } from './views/live.ts';
import { renderSearch } from './views/search.ts';
import { renderSession } from './views/session.ts';

const TOKEN_KEY = 'trustfold.console.token';
const TENANT_KEY = 'trustfold.console.tenant';

const views: Record<Exclude<View, 'signin'>, (ctx: Ctx) => void> = {
  live: renderLive,
  session: renderSession,
  decision: renderDecision,
  delegator: renderDelegator,
  search: renderSearch,
  freezes: renderFreezes,
};
const NAV: readonly [View, string][] = [
  ['live', 'Live sessions'],
  ['search', 'Search'],
  ['freezes', 'Freezes'],
];

const byId = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} missing from the page`);
  return el;
};

const main = byId('main');
const nav = byId('nav');
const whoBox = byId('who');

// sessionStorage: the token lives as long as this tab, and no other tab or
// later visit finds it.
let token: string | undefined = sessionStorage.getItem(TOKEN_KEY) ?? undefined;
let who: Identity | undefined;
let current: AbortController | undefined;

const signOut = (message?: string): void => {
  token = undefined;
  who = undefined;
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
};

const unauthorizedText = (message: string): string =>
  message === 'token expired' ? 'Your token has expired: sign in again with a fresh one.' : `Signed out: ${message}.`;

const api = createApi(
  () => token,
  (message) => {
    if (token !== undefined) signOut(unauthorizedText(message));
  },
);

const stopView = (): void => {
  current?.abort();
  current = undefined;
};

function showSignIn(message?: string): void {
  stopView();
  nav.replaceChildren();
  whoBox.replaceChildren();
  const box = h('textarea', { attrs: { id: 'token', name: 'token', rows: '4', autocomplete: 'off', spellcheck: 'false', placeholder: 'eyJhbGciOi…', 'aria-describedby': 'signin-help' } });
  const error = h('p', { class: 'status error', attrs: { role: 'alert' } }, message ?? '');
  const form = h(
    'form',
    {
      class: 'signin',
      on: {
        submit: (e) => {
          e.preventDefault();
          const t = box.value.trim().replace(/^Bearer\s+/i, '');
          if (t === '') {
            error.textContent = 'Paste a token first.';
            return;
          }
          void signIn(t, error);
        },
      },
    },
    h('h1', null, 'Sign in'),
    h('p', { attrs: { id: 'signin-help' } }, 'Paste a bearer token (the operator token `npm start` prints, or one from `trustfold token`), or open the one-time console link `npm start` prints. The token stays in this tab only.'),
    h('label', { attrs: { for: 'token' } }, 'Token'),
    box,
    h('button', { attrs: { type: 'submit' } }, 'Sign in'),
    error,
  );
  main.replaceChildren(form);
  box.focus();
}

async function signIn(t: string, error: HTMLElement): Promise<void> {
  token = t;
  error.textContent = 'Checking the token…';
  try {
    who = await api.get<Identity>('/console/api/whoami');
  } catch (e) {
    token = undefined;
    const message =
      e instanceof ApiError && e.status === 401
        ? unauthorizedText(e.message)
        : e instanceof ApiError && e.status === 403
          ? 'This token carries none of trustfold’s scopes.'
          : `Sign-in failed: ${e instanceof Error ? e.message : String(e)}`;
    showSignIn(message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, t);
  showShell();
  if (!location.hash.startsWith('#/') || parseRoute(location.hash).view === 'signin') location.hash = `#/${homeView(abilitiesOf(who))}`;
  else route();
}

const chosenTenant = (): string => sessionStorage.getItem(TENANT_KEY) ?? '';

function showShell(): void {
  if (who === undefined) return;
  const me = who;
  const can = abilitiesOf(me);
  nav.replaceChildren(...NAV.filter(([v]) => can.views.has(v)).map(([v, text]) => link(`#/${v}`, text, 'nav-link')));
  const tenantPicker = can.operator
    ? h(
        'form',
        {
          class: 'tenant-picker',
          on: {
            submit: (e) => {
              e.preventDefault();
              const v = (new FormData(e.currentTarget as HTMLFormElement).get('tenant') ?? '').toString().trim();
              sessionStorage.setItem(TENANT_KEY, v);
              route();
            },
          },
        },
        h('label', null, 'tenant ', input('tenant', chosenTenant(), { placeholder: 'all', size: '8', 'aria-label': 'tenant to read (blank: every tenant)' })),
      )
    : null;
  fill(
    whoBox,
    h(
      'span',
      { class: 'identity', attrs: { title: `token expires ${me.expires_at}` } },
      h('b', { attrs: { 'data-testid': 'sub' } }, me.sub),
      ' · tenant ',
      h('b', { attrs: { 'data-testid': 'tenant' } }, me.tenant === '*' ? '* (every tenant)' : me.tenant),
      ' · ',
      h('span', { class: 'scopes', attrs: { 'data-testid': 'scopes' } }, me.scopes.join(' ')),
      ' · expires ',
      timeLeft(Date.parse(me.expires_at), Date.now()),
    ),
    tenantPicker,
    h('button', { class: 'link', attrs: { type: 'button' }, on: { click: () => signOut('Signed out.') } }, 'Sign out'),
  );
}

function route(): void {
  if (who === undefined) return;
  stopView();
  const r = parseRoute(location.hash);
  const can = abilitiesOf(who);
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.getAttribute('href') === `#/${r.view}`);
  if (r.view === 'signin') return signOut();
  if (!can.views.has(r.view)) {
    fill(
      main,
      h('h1', null, 'Not with this token'),
      h('p', { class: 'status error' }, `This view needs a scope your token does not carry (it has: ${who.scopes.join(', ') || 'none'}).`),
      can.views.has(homeView(can)) ? link(routeHref(homeView(can)), 'Go to what you can see') : null,
    );
    return;
  }
  const linked = r.params['tenant'];
  if (!can.operator && linked !== undefined && linked !== who.tenant) {
    fill(main, h('h1', null, 'Another tenant'), h('p', { class: 'status error' }, `This link is for tenant ${linked}; your token reads tenant ${who.tenant} only.`));
    return;
  }
  current = new AbortController();
  const tenant = linked ?? (can.operator ? chosenTenant() : who.tenant);
  main.replaceChildren();
  views[r.view]({ api, who, can, tenant, signal: current.signal, main, route: r });
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', () => {
  const link = signInLink(location.hash);
  if (link !== undefined) return void boot();
  route();
});

/** A sign-in link's code → a token, once (POST, the code in the body). Undefined, with the prompt shown, when refused. */
async function redeem(code: string): Promise<string | undefined> {
  const wait = h('p', { class: 'status busy', attrs: { role: 'status' } }, 'Signing in with the link…');
  main.replaceChildren(wait);
  try {
    const res = await fetch('/console/api/sign-in', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, cache: 'no-store', body: JSON.stringify({ code }) });
    const body = (await res.json().catch(() => ({}))) as { token?: unknown; error?: { code?: string; message?: string } };
    if (res.ok && typeof body.token === 'string') return body.token;
    const why = body.error?.message ?? `${res.status} ${res.statusText}`;
    showSignIn(`The sign-in link did not work: ${why}. Paste the token \`npm start\` printed (or one from \`trustfold token\`).`);
  } catch (e) {
    showSignIn(`The sign-in link could not be checked: ${e instanceof Error ? e.message : String(e)}.`);
  }
  return undefined;
}

async function boot(): Promise<void> {
  const fromLink = signInLink(location.hash);
  if (fromLink !== undefined) {
    // Out of the address bar and the history before anything else happens.
    history.replaceState(null, '', `${location.pathname}${fromLink.next}`);
    if (fromLink.kind === 'token') return showSignIn('Sign-in links carry a one-time code now, not a token: paste the token instead.');
    const t = await redeem(fromLink.code);
    if (t === undefined) return;
    return signIn(t, h('p'));
  }
  if (token === undefined) return showSignIn();
  return signIn(token, h('p'));
}

void boot();
