// A delegator's sessions over a window (a preset, or from / to as chosen):
// allow / deny / step-up counts and the last tier.
import { count } from '../../lib/format.ts';
import { routeHref } from '../../lib/routes.ts';
import { chosenWindow, type WindowName } from '../../lib/search.ts';
import { qs, tenantQuery, type Ctx } from '../context.ts';
import { field, h, input, link, select, statusLine, table, tierBadge, timeEl } from '../dom.ts';

type Row = { tenant: string; session_id: string; first_at: string; last_at: string; decisions: number; allows: number; denies: number; step_ups: number; agents: string[]; last_tier: string | null };
type Page = { sessions: Row[]; next_cursor: string | null };

const WINDOW_NAMES: readonly (readonly [WindowName, string])[] = [['1h', 'last hour'], ['24h', 'last 24 h'], ['7d', 'last 7 days'], ['30d', 'last 30 days'], ['all', 'all time']];

export const renderDelegator = (ctx: Ctx): void => {
  const user = ctx.route.id ?? '';
  const tq = tenantQuery(ctx);
  const chosen = chosenWindow(ctx.route.params, Date.now());
  const picker = select('window', [...WINDOW_NAMES, ['chosen', 'from … to …']], chosen.ok ? chosen.preset : 'chosen');
  const from = input('from', ctx.route.params['from'] ?? '', { placeholder: '-2h or 2026-12-01 14:00', size: '20', 'aria-describedby': 'window-hint' });
  const to = input('to', ctx.route.params['to'] ?? '', { placeholder: 'blank: now', size: '20', 'aria-describedby': 'window-hint' });
  const others = (): Record<string, string> => Object.fromEntries(Object.entries(ctx.route.params).filter(([k]) => k !== 'window' && k !== 'from' && k !== 'to'));
  picker.addEventListener('change', () => {
    if (picker.value === 'chosen') return void from.focus();
    location.hash = routeHref('delegator', user, { ...others(), window: picker.value });
  });
  const status = statusLine();
  const form = h(
    'form',
    {
      class: 'filters window',
      on: {
        submit: (e) => {
          e.preventDefault();
          const params = { ...others(), from: from.value.trim(), to: to.value.trim() };
          const check = chosenWindow(params, Date.now());
          from.removeAttribute('aria-invalid');
          to.removeAttribute('aria-invalid');
          if (!check.ok) {
            (check.field === 'from' ? from : to).setAttribute('aria-invalid', 'true');
            status.set(check.message, 'error');
            return;
          }
          location.hash = routeHref('delegator', user, params);
        },
      },
    },
    field('window', picker),
    field('from (UTC)', from),
    field('to (UTC)', to),
    h('button', { attrs: { type: 'submit' } }, 'Show'),
    h('small', { class: 'note', attrs: { id: 'window-hint' } }, 'RFC 3339, a date and time in UTC, or -15m / -2h / -7d from now; a blank side is open'),
  );
  const body = h('tbody');
  const more = h('button', { class: 'more', attrs: { type: 'button', hidden: 'hidden' } }, 'Load more');
  ctx.main.append(
    h('h1', null, 'Delegator ', h('span', { class: 'id' }, user)),
    form,
    status.el,
    table(['session', 'tenant', 'first', 'last', 'decisions', 'allow', 'deny', 'step-up', 'agents', 'last tier'], body),
    more,
  );
  if (!chosen.ok) {
    (chosen.field === 'from' ? from : to).setAttribute('aria-invalid', 'true');
    status.set(chosen.message, 'error');
    return;
  }
  const window = chosen.query;
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
      status.set(`${count(shown)} sessions in ${chosen.label}${cursor !== null ? ', more to load' : ''}`, 'info');
    } catch (e) {
      if (!ctx.signal.aborted) status.set(`Could not load the sessions: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  };
  more.addEventListener('click', () => void load());
  void load();
};
