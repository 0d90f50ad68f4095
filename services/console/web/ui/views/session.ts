// One session: its timeline (decisions, signals, trust transitions in order)
// with the tier drawn as a band over time, each decision a mark on it, and
// each change freeze a span under it (raised → lifted or expired); a mark
// opens the decision's story.
import { bandInputOf, computeBand, signalLabel, type Band, type TimelineEntry } from '../../lib/band.ts';
import { count, utcText } from '../../lib/format.ts';
import { routeHref } from '../../lib/routes.ts';
import type { SessionTrust } from '../../lib/types.ts';
import { qs, tenantQuery, type Ctx } from '../context.ts';
import { effectBadge, fill, h, link, statusLine, svg, table, tierBadge, timeEl } from '../dom.ts';

type TimelinePage = { entries: (TimelineEntry & { tenant: string })[]; next_cursor: string | null };

const W = 1000;
const MIN_H = 150;
const BAND_Y = 34;
const LABEL_W = 150;
const BAND_H = 44;
const FREEZE_Y = BAND_Y + BAND_H + 24;
const LANE_H = 18;

const END_TEXT = { lifted: 'lifted', expired: 'expired', in_force: 'still in force' } as const;
const markShape = (effect: string, x: number, y: number): SVGElement => {
  if (effect === 'deny') return svg('path', { d: `M${x - 7} ${y - 7} L${x + 7} ${y + 7} M${x + 7} ${y - 7} L${x - 7} ${y + 7}`, class: 'glyph' });
  if (effect === 'step_up') return svg('path', { d: `M${x} ${y - 8} L${x + 8} ${y + 6} L${x - 8} ${y + 6} Z`, class: 'glyph' });
  return svg('circle', { cx: x, cy: y, r: 6, class: 'glyph' });
};

/** The band as SVG: geometry from computeBand, colours from the stylesheet. */
const chart = (band: Band, open: (eventId: string) => void): SVGSVGElement => {
  const X = (x: number): number => 10 + x * (W - 20);
  const laneCount = band.freezes.reduce((n, f) => Math.max(n, f.lane + 1), 0);
  const H = Math.max(MIN_H, FREEZE_Y + laneCount * LANE_H + 26);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'band', role: 'group', 'aria-label': 'trust tier over time, with each decision as a mark and each change freeze as a span below' });
  for (const s of band.segments) {
    root.append(svg('rect', { x: X(s.x0), y: BAND_Y, width: Math.max(1, X(s.x1) - X(s.x0)), height: BAND_H, class: `seg tier-${s.tier ?? 'unknown'}`, 'data-tier': s.tier ?? 'unknown' }, svg('title', {}, `${s.tier ?? 'unknown'} from ${utcText(new Date(s.from).toISOString())} UTC`)));
  }
  // Each change of tier is labelled above the band; labels too close to the previous one take the second row.
  let lastLabel: { x: number; row: number } | undefined;
  for (const c of band.changes) {
    if (c.from === null) continue;
    const x = X(c.x);
    const row = lastLabel !== undefined && x - lastLabel.x < LABEL_W && lastLabel.row === 0 ? 1 : 0;
    lastLabel = { x, row };
    const y = 12 + row * 14;
    root.append(
      svg('line', { x1: x, x2: x, y1: y + 2, y2: BAND_Y + BAND_H, class: 'change' }),
      svg('text', { x: x + 3, y, class: `change-label tier-text-${c.to}` }, `${c.to} ${utcText(new Date(c.at).toISOString()).slice(11)}`),
    );
  }
  for (const t of band.ticks) {
    root.append(svg('line', { x1: X(t.x), x2: X(t.x), y1: BAND_Y + BAND_H + 4, y2: BAND_Y + BAND_H + 16, class: 'tick' }, svg('title', {}, `${t.label} at ${utcText(new Date(t.at).toISOString())} UTC`)));
  }
  for (const f of band.freezes) {
    const x0 = X(f.x0);
    const w = Math.max(3, X(f.x1) - x0);
    const y = FREEZE_Y + f.lane * LANE_H;
    const label = `freeze ${f.freezeId}${f.reason !== '' ? ` (${f.reason})` : ''} from ${utcText(new Date(f.from).toISOString())} UTC ${f.end === 'in_force' ? 'still in force' : `to ${utcText(new Date(f.to).toISOString())} UTC, ${END_TEXT[f.end]}`}`;
    root.append(
      svg(
        'g',
        { class: `freeze-span end-${f.end}`, tabindex: 0, role: 'img', 'aria-label': label, 'data-freeze': f.freezeId, 'data-end': f.end },
        svg('title', {}, label),
        svg('rect', { x: x0, y, width: w, height: LANE_H - 4, rx: 3, class: 'span' }),
        svg('line', { x1: x0, x2: x0, y1: BAND_Y, y2: y + LANE_H - 4, class: 'freeze-edge' }),
        f.end !== 'in_force' ? svg('line', { x1: x0 + w, x2: x0 + w, y1: BAND_Y, y2: y + LANE_H - 4, class: 'freeze-edge' }) : null,
        svg('text', { x: x0 + 4, y: y + LANE_H - 8, class: 'freeze-label' }, `${f.freezeId} · ${END_TEXT[f.end]}`),
      ),
    );
  }
  // Marks closer than a glyph apart are stacked up and down the band, so none hides another.
  let prevX = Number.NEGATIVE_INFINITY;
  let stack = 0;
  for (const m of band.marks) {
    const mx = X(m.x);
    stack = mx - prevX < 16 ? stack + 1 : 0;
    prevX = mx;
    const dy = stack === 0 ? 0 : (stack % 2 === 1 ? -1 : 1) * 13 * Math.ceil(stack / 2);
    const at = utcText(new Date(m.at).toISOString());
    const label = `${m.effect} ${m.label} at ${at} UTC (trust ${m.tier ?? 'unknown'})`;
    const g = svg('g', { class: `mark effect-${m.effect}`, tabindex: 0, role: 'button', 'aria-label': label, 'data-event-id': m.eventId }, svg('title', {}, label), markShape(m.effect, mx, BAND_Y + BAND_H / 2 + Math.max(-BAND_H / 2, Math.min(BAND_H / 2, dy))));
    g.addEventListener('click', () => open(m.eventId));
    g.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        open(m.eventId);
      }
    });
    root.append(g);
  }
  const axisY = H - 8;
  root.append(
    svg('text', { x: 10, y: axisY, class: 'axis' }, `${utcText(new Date(band.start).toISOString())} UTC`),
    svg('text', { x: W - 10, y: axisY, class: 'axis end' }, `${utcText(new Date(band.end).toISOString())} UTC`),
  );
  return root;
};

const legend = (): HTMLElement =>
  h(
    'p',
    { class: 'legend' },
    'band: ',
    ...['trusted', 'degraded', 'restricted', 'revoked'].map((t) => [tierBadge(t), ' ']),
    ' · marks: ○ allow  ✕ deny  △ step-up · ticks below: signals · bars below: change freezes, raised → lifted or expired',
  );

const entryRow = (e: TimelineEntry, tenantParam: Record<string, string>): HTMLTableRowElement => {
  switch (e.kind) {
    case 'decision': {
      const d = e.decision;
      return h(
        'tr',
        { class: 'kind-decision' },
        h('td', { class: 'when' }, timeEl(e.at)),
        h('td', null, 'decision'),
        h('td', null, effectBadge(d.decision.effect), ' ', link(routeHref('decision', e.event_id, tenantParam), `${d.request.tool !== undefined ? `${d.request.tool} ` : ''}${d.request.action} ${d.request.resource}`)),
      );
    }
    case 'signal':
      return h('tr', { class: 'kind-signal' }, h('td', { class: 'when' }, timeEl(e.at)), h('td', null, 'signal'), h('td', null, signalLabel(e.signal)));
    case 'trust':
      return h('tr', { class: 'kind-trust' }, h('td', { class: 'when' }, timeEl(e.at)), h('td', null, 'trust'), h('td', null, tierBadge(e.tier), ` version ${e.version}`));
  }
};

export const renderSession = (ctx: Ctx): void => {
  const id = ctx.route.id ?? '';
  const tq = tenantQuery(ctx);
  const status = statusLine();
  const current = h('div', { class: 'current' });
  const chartBox = h('div', { class: 'chart', attrs: { id: 'band' } });
  const body = h('tbody');
  const more = h('button', { class: 'more', attrs: { type: 'button', hidden: 'hidden' } }, 'Load more');
  ctx.main.append(
    h('h1', null, 'Session ', h('span', { class: 'id' }, id), ctx.tenant !== '' ? h('small', null, ` tenant ${ctx.tenant}`) : null),
    current,
    status.el,
    chartBox,
    legend(),
    h('h2', null, 'Timeline'),
    table(['time', 'kind', 'what'], body, 'timeline'),
    more,
  );

  let entries: TimelineEntry[] = [];
  let cursor: string | null = null;
  let live: SessionTrust | undefined;
  const open = (eventId: string): void => void (location.hash = routeHref('decision', eventId, tq));
  const redraw = (): void => {
    const band = computeBand(bandInputOf(entries, live !== undefined && !live.ended ? Date.now() : undefined));
    chartBox.replaceChildren(entries.length === 0 ? h('p', { class: 'empty' }, 'Nothing in the audit for this session yet.') : chart(band, open));
    body.replaceChildren(...entries.map((e) => entryRow(e, tq)));
    more.hidden = cursor === null;
  };
  const load = async (reset: boolean): Promise<void> => {
    status.set('loading the timeline…', 'busy');
    try {
      if (reset) {
        entries = [];
        cursor = null;
      }
      // Pages of 1000 until the end, or ten pages (then "load more", never a silent cut).
      for (let pages = 0; pages < 10; pages++) {
        const page = await ctx.api.get<TimelinePage>(`/v1/audit/sessions/${encodeURIComponent(id)}/timeline${qs({ limit: '1000', ...tq, ...(cursor !== null ? { cursor } : {}) })}`, ctx.signal);
        entries = [...entries, ...page.entries];
        cursor = page.next_cursor;
        if (cursor === null) break;
      }
      const decisions = entries.filter((e) => e.kind === 'decision').length;
      status.set(`${count(entries.length)} entries (${count(decisions)} decisions)${cursor !== null ? ', more to load' : ''}`, 'info');
      redraw();
    } catch (e) {
      if (!ctx.signal.aborted) status.set(`Could not load the timeline: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  };
  more.addEventListener('click', () => void load(false));
  void load(true);

  if (!ctx.can.liveTrust) return;
  let refetch: ReturnType<typeof setTimeout> | undefined;
  ctx.signal.addEventListener('abort', () => clearTimeout(refetch));
  void ctx.api.stream(
    `/v1/trust/stream${qs({ session: id, ...tq })}`,
    (e) => {
      if (e.event !== 'trust') return;
      const s = JSON.parse(e.data) as SessionTrust;
      if (live !== undefined && live.version >= s.version) return;
      const first = live === undefined;
      live = s;
      fill(
        current,
        'now: ',
        tierBadge(s.tier),
        ` version ${s.version}`,
        s.delegator !== undefined ? [' · delegator ', link(routeHref('delegator', s.delegator, tq), s.delegator)] : null,
        s.agent !== undefined ? [' · agent ', link(routeHref('search', undefined, { agent: s.agent, ...tq }), s.agent)] : null,
        s.freezes.length > 0 ? [' · freezes ', ...s.freezes.flatMap((f, i) => [i > 0 ? ', ' : '', link(routeHref('freezes', undefined, { ...tq, freeze: f.freeze_id }), f.freeze_id)])] : null,
      );
      current.setAttribute('data-tier', s.tier);
      // The audit follows the stream within moments: read the timeline again once it has.
      if (first) redraw();
      else {
        clearTimeout(refetch);
        refetch = setTimeout(() => void load(true), 1_000);
      }
    },
    { signal: ctx.signal, onStatus: (t, k) => (k === 'error' ? status.set(t, k) : undefined) },
  );
};
