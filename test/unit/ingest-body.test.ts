import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatOf, lineColumnOf, locateJsonError, parseBody } from '../../services/ingest/body.ts';
import { createRecentIds } from '../../services/ingest/recent-ids.ts';
import { uuidv7 } from '../../schemas/ids.ts';

describe('parseBody (JSON)', () => {
  test('an array yields its items', () => {
    const r = parseBody('[{"a":1},{"b":2}]', 'json', 10);
    assert.deepEqual(r, { ok: true, value: [{ a: 1 }, { b: 2 }] });
  });
  test('one object is a batch of one', () => {
    assert.deepEqual(parseBody('{"a":1}', 'json', 10), { ok: true, value: [{ a: 1 }] });
  });
  test('a scalar is not a batch', () => {
    const r = parseBody('42', 'json', 10);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.error.kind, 'not_an_array');
  });
  test('malformed JSON names line, column and position', () => {
    const text = '[\n  {"a": 1},\n  {"b": }\n]';
    const r = parseBody(text, 'json', 10);
    assert.ok(!r.ok && r.error.kind === 'malformed');
    assert.equal(r.error.line, 3);
    assert.equal(r.error.column, 9);
    assert.equal(r.error.position, text.indexOf('}\n]'));
    assert.match(r.error.message, /line 3, column 9/);
  });
  test('truncated JSON points at the end', () => {
    const r = parseBody('[{"a":1},', 'json', 10);
    assert.ok(!r.ok && r.error.kind === 'malformed');
    assert.equal(r.error.position, 9);
  });
  test('more events than the limit is refused before validation', () => {
    const r = parseBody('[1,2,3]', 'json', 2);
    assert.ok(!r.ok && r.error.kind === 'too_many_events');
    assert.equal(r.error.count, 3);
    assert.match(r.error.message, /limit is 2/);
  });
});

describe('parseBody (NDJSON)', () => {
  test('one event per line; blank lines and CRLF are fine', () => {
    const r = parseBody('{"a":1}\r\n\n{"b":2}\n', 'ndjson', 10);
    assert.deepEqual(r, { ok: true, value: [{ a: 1 }, { b: 2 }] });
  });
  test('a bad line is named by its line number in the body', () => {
    const body = '{"a":1}\n\n{"b":2}\n{"c":tru}\n';
    const r = parseBody(body, 'ndjson', 10);
    assert.ok(!r.ok && r.error.kind === 'malformed');
    assert.equal(r.error.line, 4);
    assert.equal(r.error.column, 9); // where "true" stops being spelled
    assert.equal(r.error.position, body.indexOf('tru}') + 3);
  });
  test('the limit counts lines, not bytes', () => {
    const r = parseBody('{}\n{}\n{}', 'ndjson', 2);
    assert.ok(!r.ok && r.error.kind === 'too_many_events');
  });
});

describe('locateJsonError', () => {
  const cases: [string, number][] = [
    ['{"a":}', 5],
    ['[1,2', 4],
    ['[1,2]x', 5],
    ['nul', 3],
    ['["a\n"]', 3],
    ['{"a" 1}', 5],
    ['[01]', 2],
    ['"\\x"', 2],
    ['', 0],
  ];
  for (const [text, at] of cases) {
    test(`${JSON.stringify(text)} breaks at ${at}`, () => {
      assert.throws(() => JSON.parse(text));
      assert.equal(locateJsonError(text), at);
    });
  }
  test('lineColumnOf counts from 1', () => {
    assert.deepEqual(lineColumnOf('ab\ncd', 4), { line: 2, column: 2 });
    assert.deepEqual(lineColumnOf('ab', 0), { line: 1, column: 1 });
  });
});

test('formatOf picks NDJSON by media type, JSON otherwise', () => {
  assert.equal(formatOf('application/x-ndjson; charset=utf-8'), 'ndjson');
  assert.equal(formatOf('application/jsonl'), 'ndjson');
  assert.equal(formatOf('application/json'), 'json');
  assert.equal(formatOf(undefined), 'json');
});

describe('recent ids', () => {
  const e = (tenant: string, id: string, digest = 'd1') => ({ tenant, id, digest });
  test('evicts the least recently seen entry beyond capacity', () => {
    const r = createRecentIds(2);
    r.addAll([e('acme', 'a'), e('acme', 'b')]);
    assert.equal(r.digestOf('acme', 'a'), 'd1'); // refreshes a
    r.addAll([e('acme', 'c')]);
    assert.equal(r.digestOf('acme', 'b'), undefined);
    assert.equal(r.digestOf('acme', 'a'), 'd1');
    assert.equal(r.digestOf('acme', 'c'), 'd1');
    assert.equal(r.size, 2);
  });
  test('is keyed by (tenant, id): one tenant\'s id is not another\'s, and no pair collides with another', () => {
    const r = createRecentIds(10);
    r.addAll([e('acme', 'x', 'digest-a'), e('a","cme', 'x', 'digest-b')]);
    assert.equal(r.digestOf('globex', 'x'), undefined);
    assert.equal(r.digestOf('acme', 'x'), 'digest-a');
    assert.equal(r.digestOf('a","cme', 'x'), 'digest-b');
    assert.equal(r.digestOf('acme","x', ''), undefined);
  });
});

test('locateJsonError walks 20 000 nested brackets without a stack overflow', () => {
  const deep = '['.repeat(20_000);
  assert.equal(locateJsonError(deep), 20_000);
  assert.equal(locateJsonError(`${deep}${']'.repeat(20_000)}x`), 40_000);
  const r = parseBody(`{"a":1}\n${'{"a":'.repeat(20_000)}`, 'ndjson', 10);
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.error.kind === 'malformed' && r.error.line, 2);
});

test('uuidv7 is a version-7 RFC 9562 UUID ordered by time', () => {
  const a = uuidv7(1_000);
  const b = uuidv7(2_000);
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(a < b);
  assert.notEqual(uuidv7(1_000), uuidv7(1_000));
});
