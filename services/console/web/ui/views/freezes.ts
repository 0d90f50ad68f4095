// Change freezes (SOC): the active ones of a tenant; raising and lifting
// them with freeze:write, each after a confirmation that says what it does.
import { count } from '../../lib/format.ts';
import { describeFreeze, prepareFreeze, type FreezeForm } from '../../lib/freeze.ts';
import { routeHref } from '../../lib/routes.ts';
import type { ActiveFreeze } from '../../lib/types.ts';
import { qs, type Ctx } from '../context.ts';
import { field, h, input, link, statusLine, table, timeEl } from '../dom.ts';

/** A modal that names what will happen; resolves true on confirm. */
const confirmDialog = (title: string, text: string, action: string): Promise<boolean> =>
  new Promise((resolve) => {
    const dialog = h(
      'dialog',
      { class: 'confirm', attrs: { 'aria-labelledby': 'confirm-title' } },
      h('h2', { attrs: { id: 'confirm-title' } }, title),
      h('p', { attrs: { id: 'confirm-text' } }, text),
      h(
        'form',
        { attrs: { method: 'dialog' } },
        h('button', { attrs: { value: 'cancel', type: 'submit' } }, 'Cancel'),
        ' ',
        h('button', { class: 'danger', attrs: { value: 'ok', type: 'submit' } }, action),
      ),
    );
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });

export const renderFreezes = (ctx: Ctx): void => {
  const tenant = ctx.can.operator ? ctx.tenant : ctx.who.tenant;
  const status = statusLine();
  const body = h('tbody', { attrs: { id: 'freeze-rows' } });
  ctx.main.append(h('h1', null, 'Change freezes', tenant !== '' ? h('small', null, ` tenant ${tenant}`) : null), status.el, table(['freeze', 'scope', 'reason', 'ticket', 'raised by', 'since', 'expires', ''], body));
  if (tenant === '') {
    status.set('Freezes belong to a tenant: choose one in the tenant box above.', 'error');
    return;
  }
  const tq = { tenant };

  /** Lists the freezes; returns their ids (undefined when the list could not be read). */
  const load = async (): Promise<string[] | undefined> => {
    status.set('loading…', 'busy');
    try {
      const r = await ctx.api.get<{ freezes: ActiveFreeze[] }>(`/v1/freezes${qs(tq)}`, ctx.signal);
      body.replaceChildren(
        ...r.freezes.map((f) =>
          h(
            'tr',
            { class: f.freeze_id === ctx.route.params['freeze'] ? 'selected' : '', attrs: { 'data-freeze': f.freeze_id, ...(f.freeze_id === ctx.route.params['freeze'] ? { 'aria-current': 'true' } : {}) } },
            h('td', { class: 'id' }, link(routeHref('freezes', undefined, { tenant: ctx.can.operator ? tenant : undefined, freeze: f.freeze_id }), f.freeze_id)),
            h('td', null, describeFreeze({ scope: f.scope }, tenant).replace(/^Freeze /, '').replace(/ in tenant .*$/, '')),
            h('td', null, f.reason),
            h('td', null, f.ticket ?? '—'),
            h('td', null, f.raised_by ?? '—'),
            h('td', { class: 'when' }, timeEl(f.since)),
            h('td', { class: 'when' }, timeEl(f.expires_at)),
            h('td', null, ctx.can.liftFreeze ? h('button', { class: 'danger', attrs: { type: 'button', 'aria-label': `lift ${f.freeze_id}` }, on: { click: () => void lift(f) } }, 'Lift') : null),
          ),
        ),
      );
      if (r.freezes.length === 0) body.append(h('tr', null, h('td', { class: 'empty', attrs: { colspan: '8' } }, 'No active freeze.')));
      status.set(`${count(r.freezes.length)} active (as the projector sees them: a new one shows once folded)`, 'info');
      return r.freezes.map((f) => f.freeze_id);
    } catch (e) {
      if (!ctx.signal.aborted) status.set(`Could not list freezes: ${e instanceof Error ? e.message : String(e)}`, 'error');
      return undefined;
    }
  };
  // A raise or lift goes through Kafka and the projector: list again until it shows (20 s at most, then say so).
  const reloadUntil = async (done: (ids: string[]) => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 20 && !ctx.signal.aborted; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      const ids = await load();
      if (ids !== undefined && done(ids)) return;
    }
    if (!ctx.signal.aborted) status.set(`${what} is not in the projected state after 20 s; is the projector running?`, 'error');
  };

  const lift = async (f: ActiveFreeze): Promise<void> => {
    const sure = await confirmDialog(`Lift ${f.freeze_id}?`, `Lift freeze ${f.freeze_id} in tenant ${tenant}: ${describeFreeze({ scope: f.scope }, tenant).replace(/^Freeze /, '')} — those calls are judged without it again.`, `Lift ${f.freeze_id}`);
    if (!sure) return;
    try {
      await ctx.api.send('DELETE', `/v1/freezes/${encodeURIComponent(f.freeze_id)}${qs(tq)}`);
      status.set(`${f.freeze_id} lifted; the live view shows it leave the sessions as the projector folds it.`, 'info');
      await reloadUntil((ids) => !ids.includes(f.freeze_id), `the lift of ${f.freeze_id}`);
    } catch (e) {
      status.set(`Could not lift ${f.freeze_id}: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  };

  if (ctx.can.raiseFreeze) {
    const formError = statusLine();
    const form = h(
      'form',
      { class: 'raise', attrs: { 'aria-label': 'Raise a freeze' } },
      h('h2', null, 'Raise a freeze'),
      field('freeze id', input('freeze_id', '', { placeholder: 'INC-77 (blank: generated)' })),
      field('resource prefix', input('resource_prefix', '', { placeholder: 'repo:' }), 'blank: every resource'),
      field('actions', input('actions', '', { placeholder: 'delete_file, force_push' }), 'comma separated; blank: every action'),
      field('agent', input('agent_id', '', { placeholder: 'A-17' }), 'blank: every agent'),
      field('reason', input('reason', '', { required: 'required' })),
      field('ticket', input('ticket', '')),
      field('expires in (minutes)', input('expires_in_minutes', '', { inputmode: 'numeric', placeholder: 'blank: until lifted' })),
      h('button', { attrs: { type: 'submit' } }, 'Raise…'),
      formError.el,
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = Object.fromEntries([...new FormData(form).entries()].map(([k, x]) => [k, x.toString()])) as FreezeForm;
      const p = prepareFreeze(v, tenant, Date.now());
      if (!p.ok) return formError.set(p.message, 'error');
      void (async () => {
        if (!(await confirmDialog('Raise this freeze?', p.summary, 'Raise freeze'))) return;
        try {
          const r = await ctx.api.send<{ freeze_id: string }>('POST', `/v1/freezes${qs(tq)}`, p.body);
          formError.set(`${r.freeze_id} raised; it appears on matching live sessions as the projector folds it.`, 'info');
          form.reset();
          await reloadUntil((ids) => ids.includes(r.freeze_id), r.freeze_id);
        } catch (err) {
          formError.set(`Could not raise: ${err instanceof Error ? err.message : String(err)}`, 'error');
        }
      })();
    });
    ctx.main.append(form);
  }
  void load();
};
