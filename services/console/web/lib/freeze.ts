// The SOC's freeze form → the body of `POST /v1/freezes`, and the sentence a
// confirmation shows so nobody freezes more (or less) than they meant.
import { utcText } from './format.ts';

export type FreezeForm = { freeze_id: string; resource_prefix: string; actions: string; agent_id: string; reason: string; ticket: string; expires_in_minutes: string };

export type RaiseBody = {
  freeze_id?: string;
  scope: { resource_prefix?: string; actions?: string[]; agent_id?: string };
  reason: string;
  ticket?: string;
  expires_at?: string;
};

export type Prepared = { ok: true; body: RaiseBody; summary: string } | { ok: false; field: keyof FreezeForm; message: string };

const listOf = (s: string): string[] => [...new Set(s.split(/[\s,]+/).filter((x) => x !== ''))];

export const prepareFreeze = (f: FreezeForm, tenant: string, now: number): Prepared => {
  const reason = f.reason.trim();
  if (reason === '') return { ok: false, field: 'reason', message: 'say why: the reason is shown to everyone the freeze stops' };
  const actions = listOf(f.actions);
  const prefix = f.resource_prefix.trim();
  const agent = f.agent_id.trim();
  let expires_at: string | undefined;
  if (f.expires_in_minutes.trim() !== '') {
    const m = Number(f.expires_in_minutes);
    if (!Number.isInteger(m) || m <= 0) return { ok: false, field: 'expires_in_minutes', message: 'expiry: a whole number of minutes above 0, or blank for none' };
    expires_at = new Date(now + m * 60_000).toISOString();
  }
  const body: RaiseBody = {
    ...(f.freeze_id.trim() !== '' ? { freeze_id: f.freeze_id.trim() } : {}),
    scope: { ...(prefix !== '' ? { resource_prefix: prefix } : {}), ...(actions.length > 0 ? { actions } : {}), ...(agent !== '' ? { agent_id: agent } : {}) },
    reason,
    ...(f.ticket.trim() !== '' ? { ticket: f.ticket.trim() } : {}),
    ...(expires_at !== undefined ? { expires_at } : {}),
  };
  return { ok: true, body, summary: describeFreeze(body, tenant) };
};

/** "Freeze delete_file, force_push on resources starting with "repo:" by any agent in tenant acme, until … UTC." */
export type FreezeScopeLike = { resource_prefix?: string | undefined; actions?: string[] | undefined; agent_id?: string | undefined };

export const describeFreeze = (b: { scope: FreezeScopeLike; expires_at?: string | undefined; freeze_id?: string | undefined }, tenant: string): string => {
  const what = b.scope.actions === undefined ? 'every action' : b.scope.actions.join(', ');
  const where = b.scope.resource_prefix === undefined ? 'on every resource' : `on resources starting with "${b.scope.resource_prefix}"`;
  const who = b.scope.agent_id === undefined ? 'by any agent' : `by agent ${b.scope.agent_id}`;
  const until = b.expires_at === undefined ? 'until lifted' : `until ${utcText(b.expires_at)} UTC`;
  const id = b.freeze_id === undefined ? '' : ` (${b.freeze_id})`;
  return `Freeze${id} ${what} ${where} ${who} in tenant ${tenant}, ${until}.`;
};
