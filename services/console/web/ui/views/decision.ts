// One decision: its story, the trust state it met, the signals behind it,
// the token, the provenance, and the raw record.
import { signalLabel } from '../../lib/band.ts';
import { routeHref } from '../../lib/routes.ts';
import type { SessionTrust } from '../../lib/types.ts';
import { qs, tenantQuery, type Ctx } from '../context.ts';
import { effectBadge, h, link, rawJson, statusLine, tierBadge, timeEl } from '../dom.ts';

type ChainLink = { kind: string; id: string; version?: string; owner?: string };
type Explained = {
  decision: {
    event_id: string;
    tenant_id: string;
    session_id: string;
    occurred_at: string;
    chain: ChainLink[];
    token?: { jti: string; scopes: string[]; audience?: string; issued_at?: string; expires_at?: string; trust_level?: string; consent_ref?: string; policy_version?: string };
    intent?: { task_class?: string; statement?: string };
    request: { tool: string; action: string; resource: string };
    decision: { effect: string; policy_id: string; policy_version?: string; rule_id?: string; trust_version?: number; pdp_id?: string; reasons?: string[] };
    provenance?: Record<string, string>;
  };
  trust: { met: SessionTrust | null; basis: string; at_decision_time?: SessionTrust };
  signals: ({ event_id: string; kind: string; occurred_at: string } & Record<string, unknown>)[];
  story: string;
};

const dl = (pairs: readonly (readonly [string, Node | string | undefined])[]): HTMLElement =>
  h('dl', { class: 'pairs' }, pairs.filter(([, v]) => v !== undefined && v !== '').flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));

const trustBlock = (s: SessionTrust): HTMLElement =>
  dl([
    ['tier', tierBadge(s.tier)],
    ['version', String(s.version)],
    ['since', timeEl(s.updated_at)],
    ['causes', s.causes.map((c) => `${c.kind} ${c.ref}`).join(', ') || 'none'],
    ['freezes', s.freezes.map((f) => `${f.freeze_id} (${f.reason})`).join(', ') || 'none'],
    ['revoked roles', s.revoked_roles.join(', ') || undefined],
    ['consent', s.consent_revoked ? 'revoked' : undefined],
  ]);

/** The record's inclusion proof in the tamper-evident log, on demand (the log may run elsewhere, or not yet have a checkpoint). */
const proof = (ctx: Ctx, eventId: string, tp: Record<string, string>): HTMLElement => {
  const out = h('div');
  const button = h('button', { attrs: { type: 'button' } }, 'Fetch the inclusion proof');
  button.addEventListener('click', () => {
    out.textContent = 'fetching…';
    ctx.api
      .get<unknown>(`/v1/audit/decisions/${encodeURIComponent(eventId)}/proof${qs(tp)}`, ctx.signal)
      .then((p) => out.replaceChildren(rawJson(p, 'Inclusion proof')))
      .catch((e: unknown) => void (out.textContent = `No proof: ${e instanceof Error ? e.message : String(e)}`));
  });
  return h('section', null, h('h2', null, 'Proof'), button, out);
};

export const renderDecision = (ctx: Ctx): void => {
  const id = ctx.route.id ?? '';
  const tq = tenantQuery(ctx);
  const status = statusLine();
  ctx.main.append(h('h1', null, 'Decision ', h('span', { class: 'id' }, id)), status.el);
  status.set('loading…', 'busy');
  void (async () => {
    let x: Explained;
    try {
      x = await ctx.api.get<Explained>(`/v1/audit/decisions/${encodeURIComponent(id)}${qs(tq)}`, ctx.signal);
    } catch (e) {
      if (!ctx.signal.aborted) status.set(`Could not load the decision: ${e instanceof Error ? e.message : String(e)}`, 'error');
      return;
    }
    status.set('', 'info');
    const d = x.decision;
    const tp = ctx.can.operator ? { tenant: d.tenant_id } : {};
    const human = d.chain.find((l) => l.kind === 'human');
    const agent = d.chain.findLast((l) => l.kind === 'agent');
    ctx.main.append(
      h('p', { class: 'verdict' }, effectBadge(d.decision.effect), ` ${d.request.tool} ${d.request.action} ${d.request.resource} · `, timeEl(d.occurred_at)),
      h('section', { class: 'story', attrs: { 'aria-label': 'story' } }, h('h2', null, 'Story'), h('p', { attrs: { id: 'story' } }, x.story)),
      h(
        'p',
        { class: 'links' },
        link(routeHref('session', d.session_id, tp), `session ${d.session_id} timeline`),
        human !== undefined ? [' · ', link(routeHref('delegator', human.id, tp), `delegator ${human.id}`)] : null,
        agent !== undefined ? [' · ', link(routeHref('search', undefined, { agent: agent.id, ...tp }), `decisions of ${agent.id}`)] : null,
        ' · ',
        link(routeHref('search', undefined, { policy: d.decision.policy_id, ...tp }), `decisions under ${d.decision.policy_id}`),
        d.token !== undefined ? [' · ', link(routeHref('search', undefined, { jti: d.token.jti, ...tp }), `decisions with token ${d.token.jti}`)] : null,
      ),
      h('div', { class: 'grid' },
        h('section', null, h('h2', null, 'Delegation chain'), h('ol', { class: 'chain' }, d.chain.map((l) => h('li', null, `${l.kind} ${l.id}${l.version !== undefined ? ` v${l.version}` : ''}${l.owner !== undefined ? ` (${l.owner})` : ''}`)))),
        h('section', null, h('h2', null, 'Policy'), dl([
          ['policy', `${d.decision.policy_id}${d.decision.policy_version !== undefined ? ` v${d.decision.policy_version}` : ''}`],
          ['rule', d.decision.rule_id],
          ['PDP', d.decision.pdp_id],
          ['trust version seen', d.decision.trust_version !== undefined ? String(d.decision.trust_version) : undefined],
          ['reasons', d.decision.reasons?.join('; ')],
        ])),
        h('section', null, h('h2', null, 'Trust state it met'), x.trust.met === null ? h('p', null, 'No trust state recorded for this session before the decision.') : trustBlock(x.trust.met), x.trust.at_decision_time !== undefined ? [h('h3', null, 'In force at the decision’s time (the PDP’s view was older)'), trustBlock(x.trust.at_decision_time)] : null),
        h('section', null, h('h2', null, 'Signals behind it'), x.signals.length === 0 ? h('p', null, 'none') : h('ul', null, x.signals.map((s) => h('li', null, signalLabel(s), ' · ', timeEl(s.occurred_at))))),
        h('section', null, h('h2', null, 'Token'), d.token === undefined ? h('p', null, 'not recorded') : dl([
          ['jti', d.token.jti],
          ['scopes', d.token.scopes.join(' ')],
          ['audience', d.token.audience],
          ['issued', d.token.issued_at !== undefined ? timeEl(d.token.issued_at) : undefined],
          ['expires', d.token.expires_at !== undefined ? timeEl(d.token.expires_at) : undefined],
          ['trust level', d.token.trust_level],
          ['consent', d.token.consent_ref],
        ])),
        h('section', null, h('h2', null, 'Intent and provenance'), dl([
          ['task', d.intent?.task_class],
          ['statement', d.intent?.statement],
          ...Object.entries(d.provenance ?? {}).map(([k, v]) => [k.replace(/_/g, ' '), v] as const),
        ])),
      ),
      proof(ctx, d.event_id, tp),
      rawJson(x),
    );
  })();
};
