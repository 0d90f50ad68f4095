// One decision: its story, what the PDP knew against what was true (the
// trust version it decided on, the one in force, how far behind), the trust
// state it met, the signals behind it, the token, the provenance, the raw
// record, and its inclusion proof in the tamper-evident log, checked here.
import { signalLabel } from '../../lib/band.ts';
import { bothTimes } from '../../lib/format.ts';
import { checkProof, type RecordProof } from '../../lib/proof.ts';
import { routeHref } from '../../lib/routes.ts';
import { FINDING_TEXT, lagLine, type TrustBasis, type TrustSummary } from '../../lib/trust-lag.ts';
import type { SessionTrust } from '../../lib/types.ts';
import { ApiError } from '../api.ts';
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
  trust: { met: SessionTrust | null; basis: string; at_decision_time?: SessionTrust } & TrustBasis;
  signals: ({ event_id: string; kind: string; occurred_at: string } & Record<string, unknown>)[];
  story: string;
};

const dl = (pairs: readonly (readonly [string, Node | string | undefined])[]): HTMLElement =>
  h('dl', { class: 'pairs' }, pairs.filter(([, v]) => v !== undefined && v !== '').flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));

/** Freeze ids, each a link to the freezes view naming it. */
const freezeLinks = (freezes: readonly (readonly [string, string | undefined])[], tp: Record<string, string>): Node | string => {
  if (freezes.length === 0) return 'none';
  const out = h('span');
  freezes.forEach(([id, reason], i) => out.append(...(i > 0 ? [', '] : []), link(routeHref('freezes', undefined, { ...tp, freeze: id }), id), reason !== undefined ? ` (${reason})` : ''));
  return out;
};

const trustBlock = (s: SessionTrust, tp: Record<string, string>): HTMLElement =>
  dl([
    ['tier', tierBadge(s.tier)],
    ['version', String(s.version)],
    ['since', timeEl(s.updated_at)],
    ['causes', s.causes.map((c) => `${c.kind} ${c.ref}`).join(', ') || 'none'],
    ['freezes', freezeLinks(s.freezes.map((f) => [f.freeze_id, f.reason] as const), tp)],
    ['revoked roles', s.revoked_roles.join(', ') || undefined],
    ['consent', s.consent_revoked ? 'revoked' : undefined],
  ]);

/** One side of "what the PDP knew / what was true". */
const summaryBlock = (title: string, s: TrustSummary | null, none: string, testid: string, tp: Record<string, string>): HTMLElement =>
  h(
    'section',
    { attrs: { 'data-testid': testid } },
    h('h3', null, title),
    s === null
      ? h('p', null, none)
      : dl([
          ['version', `v${s.version}`],
          ['tier', tierBadge(s.tier)],
          ['since', timeEl(s.updated_at)],
          ['causes', s.causes.map((c) => `${c.kind} ${c.ref}`).join(', ') || 'none'],
          ['freezes', freezeLinks(s.freezes.map((f) => [f.freeze_id, undefined] as const), tp)],
        ]),
  );

/** What the PDP knew against what was true: issue 14's fields of the explain route. */
const knewVsTrue = (t: TrustBasis, tp: Record<string, string>): HTMLElement => {
  const line = lagLine(t);
  return h(
    'section',
    { class: 'knew', attrs: { 'aria-label': 'what the PDP knew' } },
    h('h2', null, 'What the PDP knew, what was true'),
    t.finding !== undefined ? h('p', { class: 'finding', attrs: { role: 'alert', 'data-testid': 'finding' } }, FINDING_TEXT[t.finding]) : null,
    h('p', { class: `lag lag-${line.tone}`, attrs: { 'data-testid': 'trust-lag', 'data-lag': t.lag.status } }, line.text),
    h('div', { class: 'grid two' }, summaryBlock('The state the PDP decided on', t.pdp_used, 'Not recorded: no stored transition has the version the PDP named.', 'pdp-used', tp), summaryBlock('The state in force at the decision’s time', t.in_force, 'None: no transition of the session was recorded before it.', 'in-force', tp)),
  );
};

const download = (value: unknown, name: string, text: string): HTMLAnchorElement => {
  const url = URL.createObjectURL(new Blob([`${JSON.stringify(value, null, 2)}\n`], { type: 'application/json' }));
  return h('a', { class: 'download', attrs: { href: url, download: name } }, text);
};

/** The record's inclusion proof in the tamper-evident log, on demand (the log may run elsewhere, or not yet have a checkpoint), checked in the page against the record shown. */
const proof = (ctx: Ctx, eventId: string, tp: Record<string, string>, record: unknown): HTMLElement => {
  const out = h('div', { class: 'proof', attrs: { 'data-testid': 'proof', 'aria-live': 'polite' } });
  const path = `/v1/audit/decisions/${encodeURIComponent(eventId)}/proof${qs(tp)}`;
  const button = h('button', { attrs: { type: 'button' } }, 'Fetch and check the inclusion proof');
  button.addEventListener('click', () => {
    out.replaceChildren(h('p', { class: 'status busy' }, 'fetching the proof…'));
    out.setAttribute('data-state', 'busy');
    ctx.api
      .get<RecordProof>(path, ctx.signal)
      .then(async (p) => {
        const c = await checkProof(p, record);
        out.setAttribute('data-state', c.ok ? 'checked' : 'failed');
        out.replaceChildren(
          h('p', { class: `status ${c.ok ? 'ok' : 'error'}`, attrs: { 'data-testid': 'proof-check' } }, c.ok ? `✓ Checked in this page: ${c.text}.` : `✕ The proof does not hold: ${c.text}.`),
          h(
            'p',
            null,
            `Checkpoint of ${p.checkpoint.origin}, size ${p.checkpoint.size}, signed ${bothTimes(p.checkpoint.signed_at)}. Its signature is not checked here: `,
            h('code', null, `trustfold audit export --session ${String((record as { session_id?: unknown }).session_id ?? 'S')} --bundle DIR`),
            ' then ',
            h('code', null, 'trustfold audit verify --bundle DIR'),
            ' check it offline with the log’s public key.',
          ),
          h('p', null, download(p, `trustfold-proof-${eventId}.json`, 'Download the proof (JSON)')),
          rawJson(p, 'Inclusion proof'),
        );
      })
      .catch((e: unknown) => {
        out.setAttribute('data-state', 'failed');
        const why = e instanceof Error ? e.message : String(e);
        out.replaceChildren(
          h(
            'p',
            { class: 'status error', attrs: { 'data-testid': 'proof-check' } },
            e instanceof ApiError && e.status === 409 ? `Not in a checkpoint yet: ${why}. Try again in a few seconds.` : e instanceof ApiError && e.status === 404 ? `No proof: ${why} (the audit-log role may not run here).` : `No proof: ${why}`,
          ),
        );
      });
  });
  return h('section', null, h('h2', null, 'Proof'), h('p', null, 'The record’s place in the tamper-evident log: ', h('code', null, `GET ${path}`)), button, out);
};

/** The decision as the log holds it: the audit API's record without its `audit` provenance member. */
const recordOf = (d: Explained['decision']): unknown => {
  const { audit: _audit, ...rest } = d as Explained['decision'] & { audit?: unknown };
  return rest;
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
    const tp: Record<string, string> = ctx.can.operator ? { tenant: d.tenant_id } : {};
    const human = d.chain.find((l) => l.kind === 'human');
    const agent = d.chain.findLast((l) => l.kind === 'agent');
    ctx.main.append(
      h('p', { class: 'verdict' }, effectBadge(d.decision.effect), ` ${d.request.tool} ${d.request.action} ${d.request.resource} · `, timeEl(d.occurred_at)),
      h('section', { class: 'story', attrs: { 'aria-label': 'story' } }, h('h2', null, 'Story'), h('p', { attrs: { id: 'story' } }, x.story)),
      knewVsTrue(x.trust, tp),
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
        h('section', null, h('h2', null, 'Delegation chain'), h('ol', { class: 'chain' }, d.chain.map((l) => h('li', null, `${l.kind} `, l.kind === 'human' ? link(routeHref('delegator', l.id, tp), l.id) : l.kind === 'agent' ? link(routeHref('search', undefined, { agent: l.id, ...tp }), l.id) : l.id, `${l.version !== undefined ? ` v${l.version}` : ''}${l.owner !== undefined ? ` (${l.owner})` : ''}`)))),
        h('section', null, h('h2', null, 'Policy'), dl([
          ['policy', `${d.decision.policy_id}${d.decision.policy_version !== undefined ? ` v${d.decision.policy_version}` : ''}`],
          ['rule', d.decision.rule_id],
          ['PDP', d.decision.pdp_id],
          ['trust version seen', d.decision.trust_version !== undefined ? String(d.decision.trust_version) : undefined],
          ['reasons', d.decision.reasons?.join('; ')],
        ])),
        h('section', null, h('h2', null, 'Trust state it met'), x.trust.met === null ? h('p', null, 'No trust state recorded for this session before the decision.') : trustBlock(x.trust.met, tp), x.trust.at_decision_time !== undefined ? [h('h3', null, 'In force at the decision’s time (the PDP’s view was older)'), trustBlock(x.trust.at_decision_time, tp)] : null),
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
      proof(ctx, d.event_id, tp, recordOf(x.decision)),
      rawJson(x),
    );
  })();
};
