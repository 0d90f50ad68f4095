// Live sessions: the trust stream's states, changing in place as pushes
// arrive, worst tier first; filters by tier, delegator, agent, session.
import { count, localText, utcText } from '../../lib/format.ts';
import { applyState, liveView, sessionKey, type LiveFilter, type LiveStore } from '../../lib/live.ts';
import { routeHref } from '../../lib/routes.ts';
import { TIER_ORDER, type SessionTrust, type Tier } from '../../lib/types.ts';
import { qs, tenantQuery, type Ctx } from '../context.ts';
import { field, h, input, link, select, statusLine, tierBadge } from '../dom.ts';

const PAGE = 200;
const DRAW_EVERY_MS = 150;

const filterOf = (p: Record<string, string>): LiveFilter => ({
  tier: TIER_ORDER.find((t) => t === p['tier']),
  delegator: p['delegator'],
  agent: p['agent'],
  session: p['session'],
  ended: p['ended'] === 'true',
});

const rowCells = (s: SessionTrust, operator: boolean): HTMLTableCellElement[] => {
  const t = s.tenant_id;
  const tenantParam = operator ? { tenant: t } : {};
  return [
    h('td', { class: 'id' }, link(routeHref('session', s.session_id, tenantParam), s.session_id)),
    operator ? h('td', null, t) : null,
    h('td', null, tierBadge(s.tier), s.ended ? h('small', null, ' ended') : null),
    h('td', null, s.delegator !== undefined ? link(routeHref('delegator', s.delegator, tenantParam), s.delegator) : '—'),
    h('td', null, s.agent !== undefined ? link(routeHref('search', undefined, { agent: s.agent, ...tenantParam }), `${s.agent}${s.agent_version !== undefined ? ` v${s.agent_version}` : ''}`) : '—'),
    h('td', { class: 'causes' }, s.causes.length === 0 && s.revoked_roles.length === 0 && !s.consent_revoked ? '—' : [
      ...s.causes.map((c) => h('span', { class: 'chip', attrs: { title: `${c.kind} since ${c.since}` } }, `${c.kind} ${c.ref}`)),
      ...s.revoked_roles.map((r) => h('span', { class: 'chip' }, `role ${r} revoked`)),
      s.consent_revoked ? h('span', { class: 'chip' }, 'consent revoked') : null,
    ]),
    h('td', { class: 'freezes' }, s.freezes.length === 0 ? '—' : s.freezes.map((f) => h('a', { class: 'chip freeze', attrs: { href: routeHref('freezes', undefined, { ...tenantParam, freeze: f.freeze_id }), title: f.reason } }, f.freeze_id))),
    h('td', { class: 'when' }, h('time', { attrs: { datetime: s.updated_at, title: localText(s.updated_at) } }, utcText(s.updated_at).slice(11), ' UTC'), h('small', { class: 'local' }, localText(s.updated_at).slice(11))),
    h('td', { class: 'num' }, `v${s.version}`),
  ].filter((c): c is HTMLTableCellElement => c !== null);
};

export const renderLive = (ctx: Ctx): void => {
  const operator = ctx.can.operator;
  const filter = filterOf(ctx.route.params);
  const store: LiveStore = new Map();
  const rows = new Map<string, { tr: HTMLTableRowElement; version: number }>();
  let limit = PAGE;
  let pushes = 0;
  let lastPush: string | undefined;

  const status = statusLine();
  const apply = (): void => {
    const params = Object.fromEntries(
      [...new FormData(form).entries()].map(([k, v]) => [k, v.toString().trim()]).filter(([k, v]) => v !== '' && !(k === 'ended' && v !== 'true')),
    );
    location.hash = routeHref('live', undefined, { ...params, ...(ctx.route.params['tenant'] !== undefined ? { tenant: ctx.route.params['tenant'] } : {}) });
  };
  const form = h(
    'form',
    { class: 'filters', attrs: { 'aria-label': 'Filter sessions' }, on: { submit: (e) => (e.preventDefault(), apply()), change: () => apply() } },
    field('tier', select('tier', [['', 'any'], ...TIER_ORDER.map((t) => [t, t] as const)], filter.tier ?? '')),
    field('delegator', input('delegator', filter.delegator ?? '', { placeholder: 'U-442' })),
    field('agent', input('agent', filter.agent ?? '', { placeholder: 'A-17' })),
    field('session', input('session', filter.session ?? '', { placeholder: 'S-9' })),
    h('label', { class: 'check' }, h('input', { attrs: { type: 'checkbox', name: 'ended', value: 'true', checked: filter.ended === true ? 'checked' : undefined } }), ' show ended'),
    h('button', { attrs: { type: 'submit' } }, 'Filter'),
  );
  const counts = h('p', { class: 'counts', attrs: { 'aria-live': 'polite' } });
  const body = h('tbody', { attrs: { id: 'live-rows' } });
  const more = h('button', { class: 'more', attrs: { type: 'button', hidden: 'hidden' }, on: { click: () => ((limit += PAGE), draw()) } }, `Show ${PAGE} more`);
  const headers = ['session', ...(operator ? ['tenant'] : []), 'tier', 'delegator', 'agent', 'causes', 'freezes', 'updated', 'version'];
  ctx.main.append(
    h('h1', null, 'Live sessions', ctx.tenant !== '' ? h('small', null, ` tenant ${ctx.tenant}`) : operator ? h('small', null, ' every tenant') : null),
    form,
    status.el,
    counts,
    h('div', { class: 'table-wrap' }, h('table', { class: 'live' }, h('thead', null, h('tr', null, headers.map((t) => h('th', { attrs: { scope: 'col' } }, t)))), body)),
    more,
  );

  let scheduled = false;
  let drawnAt = 0;
  const draw = (): void => {
    scheduled = false;
    drawnAt = performance.now();
    if (lastPush !== undefined) status.set(`live · ${count(store.size)} sessions · ${count(pushes)} pushes · last at ${utcText(lastPush).slice(11)} UTC`, 'info');
    const v = liveView(store.values(), filter, limit);
    counts.replaceChildren(
      ...TIER_ORDER.flatMap((t: Tier) => [
        link(routeHref('live', undefined, { ...ctx.route.params, tier: filter.tier === t ? undefined : t }), `${t} ${count(v.counts[t])}`, `count tier-${t}${filter.tier === t ? ' active' : ''}`),
        ' ',
      ]),
      h('span', null, `· showing ${count(v.rows.length)} of ${count(v.matching)} matching`),
    );
    const trs: HTMLTableRowElement[] = [];
    for (const s of v.rows) {
      const key = sessionKey(s);
      let r = rows.get(key);
      if (r === undefined) {
        r = { tr: h('tr', { attrs: { 'data-session': s.session_id, 'data-tenant': s.tenant_id } }), version: -1 };
        rows.set(key, r);
      }
      if (r.version !== s.version) {
        // The same row, new cells: the reader's eye (and focus) stays where it was.
        r.tr.replaceChildren(...rowCells(s, operator));
        r.tr.setAttribute('data-tier', s.tier);
        r.tr.setAttribute('data-version', String(s.version));
        if (r.version >= 0) {
          r.tr.classList.remove('changed');
          void r.tr.offsetWidth;
          r.tr.classList.add('changed');
        }
        r.version = s.version;
      }
      trs.push(r.tr);
    }
    body.replaceChildren(...trs);
    if (v.rows.length === 0) body.append(h('tr', null, h('td', { class: 'empty', attrs: { colspan: String(headers.length) } }, store.size === 0 ? 'No sessions in the stream yet.' : 'No session matches these filters.')));
    more.hidden = v.matching <= v.rows.length;
    more.textContent = `Show ${count(Math.min(PAGE, v.matching - v.rows.length))} more`;
  };
  // At most one redraw every DRAW_EVERY_MS: a snapshot of thousands of states is drawn a few times, not once per push.
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setTimeout(() => requestAnimationFrame(draw), Math.max(0, DRAW_EVERY_MS - (performance.now() - drawnAt)));
  };
  draw();

  if (!ctx.can.liveTrust) {
    status.set('This token has no trust:read scope: the live stream is not available.', 'error');
    return;
  }
  void ctx.api.stream(
    `/v1/trust/stream${qs({ snapshot: 'true', ...tenantQuery(ctx) })}`,
    (e) => {
      if (e.event !== 'trust') return;
      let s: SessionTrust;
      try {
        s = JSON.parse(e.data) as SessionTrust;
      } catch {
        return;
      }
      pushes++;
      lastPush = new Date().toISOString();
      schedule();
      if (applyState(store, s)) schedule();
    },
    { signal: ctx.signal, onStatus: (t, k) => status.set(t, k), onOpen: () => status.set(`live · ${count(store.size)} sessions · waiting for pushes`, 'info') },
  );
};
