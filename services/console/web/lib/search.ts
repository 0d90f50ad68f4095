// The search form ↔ `GET /v1/audit/decisions` query strings: every filter the
// API takes, blanks left out, times given as typed turned into RFC 3339.
export const SEARCH_FILTERS = ['session', 'delegator', 'agent', 'tool', 'action', 'resource', 'effect', 'rule', 'policy', 'jti', 'from', 'to'] as const;
export type SearchFilter = (typeof SEARCH_FILTERS)[number];
export type SearchForm = Partial<Record<SearchFilter | 'order' | 'tenant', string>>;

export type Built = { ok: true; query: string } | { ok: false; field: string; message: string };

/**
 * A time as a person types it: RFC 3339 (`2026-12-01T14:01:57Z`), a
 * datetime-local value (taken as UTC, as the form labels say), or a relative
 * `-15m` / `-2h` / `-7d` from `now`.
 */
export const parseTimeInput = (value: string, now: number): string | undefined => {
  const v = value.trim();
  const rel = /^-(\d{1,6})\s*(s|m|h|d)$/.exec(v);
  if (rel?.[1] !== undefined && rel[2] !== undefined) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(rel[1]) * unit).toISOString();
  }
  const local = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(v) ? `${v.replace(' ', 'T')}Z` : v;
  if (!/^\d{4}-\d{2}-\d{2}T/.test(local)) return undefined;
  const t = Date.parse(local);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
};

/** The query string of a search (without `?`), or which field is wrong. */
export const searchQuery = (form: SearchForm, now: number, extra: Record<string, string> = {}): Built => {
  const q = new URLSearchParams();
  for (const f of SEARCH_FILTERS) {
    const raw = form[f]?.trim() ?? '';
    if (raw === '') continue;
    if (f === 'from' || f === 'to') {
      const iso = parseTimeInput(raw, now);
      if (iso === undefined) return { ok: false, field: f, message: `${f}: "${raw}" is not a time (2026-12-01T14:00:00Z, or -2h)` };
      q.set(f, iso);
    } else q.set(f, raw);
  }
  const from = q.get('from');
  const to = q.get('to');
  if (from !== null && to !== null && from >= to) return { ok: false, field: 'from', message: 'from must be before to' };
  if (form.order === 'desc') q.set('order', 'desc');
  if (form.tenant !== undefined && form.tenant.trim() !== '') q.set('tenant', form.tenant.trim());
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return { ok: true, query: q.toString() };
};

/** The form's values from a route's params (the search view's own URL). */
export const formOf = (params: Record<string, string>): SearchForm => {
  const out: SearchForm = {};
  for (const k of [...SEARCH_FILTERS, 'order', 'tenant'] as const) if (params[k] !== undefined) out[k] = params[k];
  return out;
};

/** Delegator view windows: how far back from now. */
export const WINDOWS = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 } as const;
export type WindowName = keyof typeof WINDOWS | 'all';

export const windowQuery = (w: WindowName, now: number): Record<string, string> =>
  w === 'all' ? {} : { from: new Date(now - WINDOWS[w]).toISOString() };

export type ChosenWindow =
  | { ok: true; query: { from?: string; to?: string }; label: string; preset: WindowName | 'chosen' }
  | { ok: false; field: 'from' | 'to'; message: string };

const PRESET_LABELS: Readonly<Record<WindowName, string>> = { '1h': 'the last hour', '24h': 'the last 24 h', '7d': 'the last 7 days', '30d': 'the last 30 days', all: 'all time' };

/**
 * The delegator view's window from its route: `from` / `to` as typed (RFC
 * 3339, a datetime-local value taken as UTC, or `-2h` from now; either may be
 * blank, open on that side) win over a `window` preset; neither: the last
 * 24 h. A time that does not parse, or from not before to, names the field.
 */
export const chosenWindow = (params: Readonly<Record<string, string | undefined>>, now: number): ChosenWindow => {
  const raw = { from: params['from']?.trim() ?? '', to: params['to']?.trim() ?? '' };
  if (raw.from === '' && raw.to === '') {
    const w = (Object.keys(PRESET_LABELS) as WindowName[]).find((n) => n === params['window']) ?? '24h';
    return { ok: true, query: windowQuery(w, now), label: PRESET_LABELS[w], preset: w };
  }
  const out: { from?: string; to?: string } = {};
  for (const f of ['from', 'to'] as const) {
    if (raw[f] === '') continue;
    const iso = parseTimeInput(raw[f], now);
    if (iso === undefined) return { ok: false, field: f, message: `${f}: "${raw[f]}" is not a time (2026-12-01T14:00:00Z, 2026-12-01 14:00 in UTC, or -2h)` };
    out[f] = iso;
  }
  if (out.from !== undefined && out.to !== undefined && out.from >= out.to) return { ok: false, field: 'from', message: 'from must be before to' };
  const utc = (iso: string): string => `${iso.slice(0, 19).replace('T', ' ')} UTC`;
  const label = out.from !== undefined && out.to !== undefined ? `${utc(out.from)} to ${utc(out.to)}` : out.from !== undefined ? `since ${utc(out.from)}` : `until ${utc(out.to ?? '')}`;
  return { ok: true, query: out, label, preset: 'chosen' };
};
