// A delegator's sessions over a window: allow / deny / step-up counts and the last tier.
import { count } from '../../lib/format.ts';
import { routeHref } from '../../lib/routes.ts';
import { windowQuery, type WindowName } from '../../lib/search.ts';
import { qs, tenantQuery, type Ctx } from '../context.ts';
import { h, link, select, statusLine, table, tierBadge, timeEl } from '../dom.ts';

type Row = { tenant: string; session_id: string; first_at: string; last_at: string; decisions: number; allows: number; denies: number; step_ups: number; agents: string[]; last_tier: string | null };
type Page = { sessions: Row[]; next_cursor: string | null };

const WINDOW_NAMES: readonly (readonly [WindowName, string])[] = [['1h', 'last hour'], ['24h', 'last 24 h'], ['7d', 'last 7 days'], ['30d', 'last 30 days'], ['all', 'all time']];

export const renderDelegator = (ctx: Ctx): void => {
  const user = ctx.route.id ?? '';
  const tq = tenantQuery(ctx);
  const w = (WINDOW_NAMES.find(([n]) => n === ctx.route.params['window'])?.[0] ?? '24h');
  const picker = select('window', WINDOW_NAMES, w);
  picker.addEventListener('change', () => void (location.hash = routeHref('delegator', user, { ...ctx.route.params, window: picker.value })));
  const status = statusLine();
  const body = h('tbody');
  const more = h('button', { class: 'more', attrs: { type: 'button', hidden: 'hidden' } }, 'Load more');
  ctx.main.append(
    h('h1', null, 'Delegator ', h('span', { class: 'id' }, user)),
    h('p', { class: 'filters' }, h('label', null, 'window ', picker)),
    status.el,
    table(['session', 'tenant', 'first', 'last', 'decisions', 'allow', 'deny', 'step-up', 'agents', 'last tier'], body),
    more,
  );
  const window = windowQuery(w, Date.now());
  let cursor: string | null = null;
  let shown = 0;
  const load = async (): Promise<void> => {
    status.set('loading…', 'busy');
    try {
      const page = await ctx.api.get<Page>(`/v1/audit/delegators/${encodeURIComponent(user)}/sessions${qs({ ...window, ...tq, limit: '200', ...(cursor !== null ? { cursor } : {}) })}`, ctx.signal);
      const tp = (r: Row) => (ctx.can.operator ? { tenant: r.tenant } : {});
      body.append(
        ...page.sessions.map((r) =>
          h(
            'tr',
            null,
            h('td', { class: 'id' }, link(routeHref('session', r.session_id, tp(r)), r.session_id)),
            h('td', null, r.tenant),
            h('td', { class: 'when' }, timeEl(r.first_at)),
            h('td', { class: 'when' }, timeEl(r.last_at)),
            h('td', { class: 'num' }, count(r.decisions)),
            h('td', { class: 'num' }, count(r.allows)),
            h('td', { class: 'num deny' }, count(r.denies)),
            h('td', { class: 'num' }, count(r.step_ups)),
            h('td', null, r.agents.join(', ')),
            h('td', null, tierBadge(r.last_tier)),
          ),
        ),
      );
      shown += page.sessions.length;
      cursor = page.next_cursor;
      more.hidden = cursor === null;
      status.set(`${count(shown)} sessions${cursor !== null ? ', more to load' : ''}`, 'info');
    } catch (e) {
      if (!ctx.signal.aborted) status.set(`Could not load the sessions: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  };
  more.addEventListener('click', () => void load());
  void load();
};
