// Times as the console prints them: UTC first (what logs and tickets use),
// the reader's local time beside it.
const pad = (n: number): string => String(n).padStart(2, '0');

/** `2026-12-01 14:01:57` in UTC; the input unchanged when it is not a time. */
export const utcText = (iso: string): string => {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
};

/** The same instant on the reader's clock (or the zone given), with the zone's offset. */
export const localText = (iso: string, timeZone?: string): string => {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const parts = new Intl.DateTimeFormat('en-CA', {
    ...(timeZone !== undefined ? { timeZone } : {}),
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'shortOffset',
  }).formatToParts(d);
  const get = (t: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === t)?.value ?? '';
  // ICU spells the zero offset "GMT" or "GMT+0" depending on its version: say UTC±h either way.
  const zone = get('timeZoneName').replace(/^GMT(\+0)?$/, 'UTC').replace(/^GMT/, 'UTC');
  return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}:${get('second')} ${zone}`;
};

/** "UTC · local" in one line, for places with room. */
export const bothTimes = (iso: string, timeZone?: string): string => `${utcText(iso)} UTC · ${localText(iso, timeZone)}`;

/** How long ago, in the largest whole unit: "now", "42 s ago", "3 min ago", "5 h ago", "2 d ago". */
export const ago = (iso: string, now: number): string => {
  const ms = now - Date.parse(iso);
  if (Number.isNaN(ms)) return '';
  if (ms < 1_000) return 'now';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
};

/** Whole seconds, minutes or hours left: "in 59 min", "expired". */
export const timeLeft = (expiresAtMs: number, now: number): string => {
  const s = Math.floor((expiresAtMs - now) / 1000);
  if (s <= 0) return 'expired';
  if (s < 120) return `in ${s} s`;
  if (s < 7200) return `in ${Math.floor(s / 60)} min`;
  return `in ${Math.floor(s / 3600)} h`;
};

/** 10000 → "10 000": counts readable at a glance, the same in every locale. */
export const count = (n: number): string => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
