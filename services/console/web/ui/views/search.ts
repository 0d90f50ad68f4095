// Every filter of GET /v1/audit/decisions, cursor paging ("load more", never
// a silent cap) and the NDJSON export of the whole result.
import { count } from '../../lib/format.ts';
import { routeHref } from '../../lib/routes.ts';
import { formOf, SEARCH_FILTERS, searchQuery, type SearchForm } from '../../lib/search.ts';
import { EFFECT_ORDER } from '../../lib/types.ts';
import { tenantQuery, type Ctx } from '../context.ts';
import { effectBadge, field, h, input, link, select, statusLine, table, timeEl } from '../dom.ts';

type Decision = { event_id: string; tenant_id: string; session_id: string; occurred_at: string; chain: { kind: string; id: string }[]; request: { tool: string; action: string; resource: string }; decision: { effect: string; policy_id: string; rule_id?: string } };
type Page = { items: Decision[]; next_cursor: string | null };

const HINTS: Partial<Record<string, string>> = { from: 'UTC: 2026-12-01T14:00Z, or -2h', to: 'UTC, or -15m', resource: 'exact resource' };

export const renderSearch = (ctx: Ctx): void => {
  const form0 = formOf(ctx.route.params);
  const status = statusLine();
  const inputs = SEARCH_FILTERS.map((f) =>
    f === 'effect'
      ? field('effect', select('effect', [['', 'any'], ...EFFECT_ORDER.map((e) => [e, e.replace('_', '-')] as const)], form0.effect ?? ''))
      : field(f, input(f, form0[f] ?? ''), HINTS[f]),
  );
  const form = h(
    'form',
    { class: 'filters search', attrs: { 'aria-label': 'Search decisions' } },
    inputs,
    field('order', select('order', [['asc', 'oldest first'], ['desc', 'newest first']], form0.order ?? 'asc')),
    h('button', { attrs: { type: 'submit' } }, 'Search'),
  );
  const values = (): SearchForm => Object.fromEntries([...new FormData(form).entries()].map(([k, v]) => [k, v.toString()])) as SearchForm;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const built = searchQuery(values(), Date.now());
    if (!built.ok) return status.set(built.message, 'error');
    const params = Object.fromEntries(new URLSearchParams(built.query));
    location.hash = routeHref('search', undefined, { ...params, ...(ctx.route.params['tenant'] !== undefined ? { tenant: ctx.route.params['tenant'] } : {}), run: String(Date.now()) });
  });
  const body = h('tbody');
  const more = h('button', { class: 'more', attrs: { type: 'button', hidden: 'hidden' } }, 'Load more');
  const exportButton = h('button', { attrs: { type: 'button' } }, 'Export all as NDJSON');
  ctx.main.append(h('h1', null, 'Search decisions'), form, status.el, h('p', null, exportButton), table(['time', 'effect', 'call', 'session', 'delegator', 'agent', 'policy · rule'], body), more);

  const built = searchQuery(form0, Date.now(), tenantQuery(ctx));
  if (!built.ok) return status.set(built.message, 'error');
  const anyFilter = SEARCH_FILTERS.some((f) => (form0[f] ?? '') !== '');
  let cursor: string | null = null;
  let shown = 0;
  const tp = (d: Decision) => (ctx.can.operator ? { tenant: d.tenant_id } : {});
  const load = async (): Promise<void> => {
    status.set('searching…', 'busy');
    try {
      const q = new URLSearchParams(built.query);
      q.set('limit', '100');
      if (cursor !== null) q.set('cursor', cursor);
      const page = await ctx.api.get<Page>(`/v1/audit/decisions?${q.toString()}`, ctx.signal);
      body.append(
        ...page.items.map((d) => {
          const human = d.chain.find((l) => l.kind === 'human')?.id;
          const agent = d.chain.findLast((l) => l.kind === 'agent')?.id;
          return h(
            'tr',
            null,
            h('td', { class: 'when' }, timeEl(d.occurred_at)),
            h('td', null, effectBadge(d.decision.effect)),
            h('td', null, link(routeHref('decision', d.event_id, tp(d)), `${d.request.tool} ${d.request.action} ${d.request.resource}`)),
            h('td', { class: 'id' }, link(routeHref('session', d.session_id, tp(d)), d.session_id)),
            h('td', null, human !== undefined ? link(routeHref('delegator', human, tp(d)), human) : '—'),
            h('td', null, agent ?? '—'),
            h('td', null, `${d.decision.policy_id}${d.decision.rule_id !== undefined ? ` · ${d.decision.rule_id}` : ''}`),
          );
        }),
      );
      shown += page.items.length;
      cursor = page.next_cursor;
      more.hidden = cursor === null;
      status.set(`${count(shown)} decisions${cursor !== null ? ' shown; more match (load more)' : shown === 0 ? ' match' : ', all that match'}`, 'info');
    } catch (e) {
      if (!ctx.signal.aborted) status.set(`Search failed: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  };
  more.addEventListener('click', () => void load());
  exportButton.addEventListener('click', () => {
    status.set('exporting every match…', 'busy');
    void ctx.api
      .download(`/v1/audit/decisions?${built.query}`, 'application/x-ndjson')
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        const a = h('a', { attrs: { href: url, download: `trustfold-decisions-${new Date().toISOString().replace(/[:.]/g, '-')}.ndjson` } });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
        status.set(`exported ${count(blob.size)} bytes`, 'info');
      })
      .catch((e: unknown) => status.set(`Export failed: ${e instanceof Error ? e.message : String(e)}`, 'error'));
  });
  if (anyFilter || ctx.route.params['run'] !== undefined) void load();
  else status.set('Choose filters and search (no filter lists every decision).', 'info');
};
