// Request bodies of POST /v1/events: a JSON array (or one JSON object) or
// NDJSON, one event per line. A malformed body is a value naming where it
// broke — line, column and byte-free character position — so a gateway
// author can find the bad record in a 10 000-event batch.
import { err, ok, type Result } from '../../schemas/result.ts';

export type BodyFormat = 'json' | 'ndjson';

export type BodyError =
  | { kind: 'malformed'; message: string; reason: string; line: number; column: number; position: number }
  | { kind: 'too_many_events'; message: string; count: number; limit: number }
  | { kind: 'not_an_array'; message: string };

const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonlines', 'application/jsonlines']);
export const NDJSON_CONTENT_TYPES = [...NDJSON_TYPES];

export const formatOf = (contentType: string | undefined): BodyFormat => {
  const mime = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return NDJSON_TYPES.has(mime) ? 'ndjson' : 'json';
};

/** 1-based line and column of a 0-based character offset. */
export const lineColumnOf = (text: string, offset: number): { line: number; column: number } => {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: end - lineStart + 1 };
};

/**
 * The offset where a JSON text stops being valid. V8's messages carry a
 * position for some errors and not others, so on the (rare) failure path we
 * re-scan the text ourselves. Only called after JSON.parse has thrown.
 */
export const locateJsonError = (text: string): number => {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  class Stop extends Error {}
  const fail = (): never => {
    throw new Stop();
  };
  const literal = (word: string) => {
    for (let k = 0; k < word.length; k++) {
      if (text[i] !== word[k]) fail();
      i++;
    }
  };
  const string = () => {
    i++; // opening quote
    for (;;) {
      if (i >= n) fail();
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        const e = text[i];
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) {
            if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) {
              i += k;
              fail();
            }
          }
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fail();
      } else i++;
    }
  };
  const number = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '' || m[0] === '-') fail();
    i += m?.[0].length ?? 0;
  };
  // Iterative, with an explicit stack of open containers: a body of 20 000
  // nested brackets must not overflow the call stack (a 500) on its way to a 400.
  const OBJECT = 0;
  const ARRAY = 1;
  const open: number[] = [];
  const key = () => {
    ws();
    if (text[i] !== '"') fail();
    string();
    ws();
    if (text[i] !== ':') fail();
    i++;
  };
  const value = (): void => {
    for (;;) {
      ws();
      const c = text[i];
      if (c === '{' || c === '[') {
        i++;
        ws();
        if (text[i] === (c === '{' ? '}' : ']')) i++;
        else {
          open.push(c === '{' ? OBJECT : ARRAY);
          if (c === '{') key();
          continue;
        }
      } else if (c === '"') string();
      else if (c === 't') literal('true');
      else if (c === 'f') literal('false');
      else if (c === 'n') literal('null');
      else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) number();
      else fail();
      // A value ended: close what it ends, or go on to the next member.
      for (;;) {
        const top = open[open.length - 1];
        if (top === undefined) return;
        ws();
        if (text[i] === ',') {
          i++;
          if (top === OBJECT) key();
          break;
        }
        if (text[i] === (top === OBJECT ? '}' : ']')) {
          i++;
          open.pop();
        } else fail();
      }
    }
  };
  try {
    value();
    ws();
    return i < n ? i : n;
  } catch (e) {
    if (e instanceof Stop) return Math.min(i, n);
    throw e;
  }
};

const malformed = (text: string, offset: number, cause: string, lineOffset = 0, lineNo?: number): BodyError => {
  const { line, column } = lineColumnOf(text, offset);
  const at = { line: lineNo ?? line, column, position: lineOffset + offset };
  // V8 messages quote the input; keep only the part before the quote.
  const reason = (cause.split(', "')[0] ?? cause).replace(/ in JSON at position \d+.*$/, '');
  return {
    kind: 'malformed',
    reason,
    message: `malformed JSON at line ${at.line}, column ${at.column} (position ${at.position}): ${reason}`,
    ...at,
  };
};

const parseJson = (text: string): Result<unknown, string> => {
  try {
    return ok(JSON.parse(text) as unknown);
  } catch (e) {
    return err((e as Error).message);
  }
};

/**
 * Splits a body into raw (unvalidated) events. `limit` is checked before an
 * NDJSON line is parsed, so an oversized batch costs a line count, not a parse.
 */
export const parseBody = (text: string, format: BodyFormat, limit: number): Result<unknown[], BodyError> => {
  if (format === 'json') {
    const r = parseJson(text);
    if (!r.ok) return err(malformed(text, locateJsonError(text), r.error));
    const items = Array.isArray(r.value) ? (r.value as unknown[]) : r.value !== null && typeof r.value === 'object' ? [r.value] : undefined;
    if (items === undefined) return err({ kind: 'not_an_array', message: 'expected a JSON array of events (or one event object)' });
    if (items.length > limit) return err(tooMany(items.length, limit));
    return ok(items);
  }
  const lines: { text: string; start: number; no: number }[] = [];
  let start = 0;
  let no = 1;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const raw = text.slice(start, end);
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() !== '') lines.push({ text: line, start, no });
    start = end + 1;
    no++;
  }
  if (lines.length > limit) return err(tooMany(lines.length, limit));
  const items: unknown[] = new Array<unknown>(lines.length);
  for (let k = 0; k < lines.length; k++) {
    const l = lines[k];
    if (l === undefined) continue;
    const r = parseJson(l.text);
    if (!r.ok) return err(malformed(l.text, locateJsonError(l.text), r.error, l.start, l.no));
    items[k] = r.value;
  }
  return ok(items);
};

const tooMany = (count: number, limit: number): BodyError => ({
  kind: 'too_many_events',
  message: `${count} events in one request; the limit is ${limit} (TRUSTFOLD_MAX_EVENTS_PER_REQUEST) — split the batch`,
  count,
  limit,
});
