import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { createLogger, createTextDestination, formatLogLine } from '../../services/lib/log.ts';

const at = new Date(2026, 0, 2, 3, 4, 5, 67).getTime();

describe('log text formatter', () => {
  it('prints time, level, name, message and the other fields as key=value', () => {
    const line = JSON.stringify({ level: 30, time: at, pid: 1, hostname: 'h', name: 'trustfold', msg: 'listening', port: 8080, url: 'http://127.0.0.1:8080' });
    assert.equal(formatLogLine(line), '03:04:05.067 INFO  trustfold: listening port=8080 url=http://127.0.0.1:8080\n');
  });

  it('quotes strings with spaces, equals signs or quotes, and empty strings; objects as JSON', () => {
    const line = JSON.stringify({ level: 40, time: at, msg: 'slow', reason: 'took too long', eq: 'a=b', empty: '', lag: { p99: 3 }, ok: true });
    assert.equal(formatLogLine(line), '03:04:05.067 WARN  slow reason="took too long" eq="a=b" empty="" lag={"p99":3} ok=true\n');
  });

  it("indents an error's stack below the line", () => {
    const line = JSON.stringify({ level: 50, time: at, msg: 'recovery failed', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at x (y.ts:1:1)' } });
    assert.equal(formatLogLine(line), '03:04:05.067 ERROR recovery failed\n    Error: boom\n        at x (y.ts:1:1)\n');
  });

  it('colours only the level when asked', () => {
    const line = JSON.stringify({ level: 50, time: at, msg: 'x' });
    assert.equal(formatLogLine(line, { colour: true }), '03:04:05.067 \u001b[31mERROR\u001b[39m x\n');
  });

  it('passes a line that is not a JSON object through unchanged', () => {
    assert.equal(formatLogLine('not json'), 'not json\n');
    assert.equal(formatLogLine('[1,2]'), '[1,2]\n');
  });

  it('a pino logger over the text destination writes text lines', () => {
    const out: string[] = [];
    const logger = pino({ name: 'svc', level: 'info' }, createTextDestination({ write: (s: string) => out.push(s) }));
    logger.info({ topic: 't1' }, 'consuming');
    logger.debug('not shown');
    assert.equal(out.length, 1);
    assert.match(out[0] ?? '', /^\d\d:\d\d:\d\d\.\d{3} INFO {2}svc: consuming topic=t1\n$/);
  });

  it('createLogger writes JSON unless asked for text', () => {
    assert.equal(typeof createLogger('x', 'silent', false).info, 'function');
    assert.equal(typeof createLogger('x', 'silent', true).info, 'function');
  });
});
