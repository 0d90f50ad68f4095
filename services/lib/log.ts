import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLOURS: Readonly<Record<number, string>> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
// Shown by their place in the line (or not at all), never as key=value.
const FRAMED_KEYS = new Set(['level', 'time', 'msg', 'name', 'pid', 'hostname', 'err']);

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const formatValue = (v: unknown): string => {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  return typeof v === 'string' && (s === '' || /[\s="]/.test(s)) ? JSON.stringify(s) : s;
};

const clock = (time: unknown): string => {
  if (typeof time !== 'number') return '--:--:--.---';
  const d = new Date(time);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
};

/**
 * One pino JSON line as a line a person reads: `HH:MM:SS.mmm LEVEL name: msg key=value …`,
 * an error's stack on the lines after it. A line that is not a JSON object is returned as it is.
 */
export const formatLogLine = (line: string, opts: { colour?: boolean } = {}): string => {
  const trimmed = line.replace(/\n$/, '');
  let record: unknown;
  try {
    record = JSON.parse(trimmed);
  } catch {
    return `${trimmed}\n`;
  }
  if (!isRecord(record)) return `${trimmed}\n`;
  const level = typeof record['level'] === 'number' ? record['level'] : 30;
  const levelName = (LEVEL_NAMES[level] ?? `L${level}`).padEnd(5);
  const colour = LEVEL_COLOURS[level];
  const shownLevel = opts.colour === true && colour !== undefined ? `\u001b[${colour}m${levelName}\u001b[39m` : levelName;
  const name = typeof record['name'] === 'string' ? ` ${record['name']}:` : '';
  const msg = typeof record['msg'] === 'string' ? ` ${record['msg']}` : '';
  const fields = Object.entries(record)
    .filter(([k]) => !FRAMED_KEYS.has(k))
    .map(([k, v]) => ` ${k}=${formatValue(v)}`)
    .join('');
  const err = record['err'];
  let errText = '';
  if (isRecord(err)) {
    const message = typeof err['message'] === 'string' ? err['message'] : '';
    errText = typeof err['stack'] === 'string' ? `\n    ${err['stack'].split('\n').join('\n    ')}` : message !== '' ? ` err=${formatValue(message)}` : '';
  } else if (err !== undefined) {
    errText = ` err=${formatValue(err)}`;
  }
  return `${clock(record['time'])} ${shownLevel}${name}${msg}${fields}${errText}\n`;
};

/** A pino destination that writes each JSON line to `out` as text. Synchronous, so no log line is lost at exit. */
export const createTextDestination = (out: { write(s: string): unknown }, opts: { colour?: boolean } = {}): DestinationStream => ({
  write: (chunk: string): void => {
    for (const line of chunk.split('\n')) if (line !== '') out.write(formatLogLine(line, opts));
  },
});

/**
 * Logs to stdout: readable text when stdout is a terminal (a person is reading),
 * JSON lines everywhere else (a collector is). `LOG_LEVEL` is read once by the config, not here.
 */
export const createLogger = (name: string, level = 'info', text: boolean = process.stdout.isTTY === true): Logger =>
  text ? pino({ name, level }, createTextDestination(process.stdout, { colour: true })) : pino({ name, level });
