// The sink's pure write-once rule, month grouping and the block writer that
// isolates whatever record ClickHouse refuses — no network.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { formatQueryParams } from '@clickhouse/client-common';
import fc from 'fast-check';
import { createCodec } from '../../schemas/codec.ts';
import { canonicalJson, contentDigest, eventIdentity, type RecordIdentity, type StoredCopy } from '../../schemas/clickhouse/rows-identity.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { blockToken, byMonths, identityKey, judgeWriteOnce, mapBatch, type TableRows } from '../../services/audit-sink/batch.ts';
import { createBlockWriter, insertFailure } from '../../services/audit-sink/write.ts';
import { chunksOf, LOOKUP_URL_CHARS, urlCharsOf } from '../../services/audit-sink/write-once.ts';
import { isRetriable, TrustfoldError } from '../../services/lib/errors.ts';
import { incident } from '../helpers/audit-incident.ts';

const codec = createCodec();
const inc = incident();
const at = { topic: 'dec', partition: 2 };

const rowsOf = (events: readonly DecisionEvent[], firstOffset = 0): TableRows => {
  const m = mapBatch(codec, 'events', at.topic, at.partition, events.map((e, i) => ({ offset: String(firstOffset + i), key: null, value: codec.encodeEvent(e) })));
  const t = m.tables[0];
  assert.ok(t);
  return t;
};

describe('write-once rule', () => {
  const denied = inc.denied;
  const forged: DecisionEvent = { ...denied, decision: { ...denied.decision, effect: 'allow' } };

  test('content digests ignore key order, see every value', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } }), '{"a":{"d":[1,{"x":1,"y":2}]},"b":1}');
    assert.equal(eventIdentity(denied).digest, eventIdentity({ ...denied }).digest);
    assert.notEqual(eventIdentity(forged).digest, eventIdentity(denied).digest);
    assert.equal(eventIdentity(denied).digest, contentDigest(canonicalJson(denied)));
  });

  test('inside one batch the lowest offset is the first copy; an equal later copy is a duplicate, another a conflict', () => {
    const rows = rowsOf([denied, denied, forged, inc.decisions[0] as DecisionEvent]);
    const v = judgeWriteOnce(rows, at, new Map());
    assert.deepEqual(v.fresh, [0, 3]);
    assert.deepEqual(v.duplicates, [1]);
    assert.deepEqual(v.conflicts.map((c) => [c.index, c.first.kafka.offset]), [[2, '0']]);
    assert.deepEqual(v.replays, []);
  });

  test('against the index: the stored copy wins over anything later, and a re-read of its own offset is a replay, not a conflict', () => {
    const first: StoredCopy = { digest: eventIdentity(denied).digest, kafka: { ...at, offset: '7' } };
    const stored = new Map([[identityKey(eventIdentity(denied)), first]]);
    const replay = judgeWriteOnce(rowsOf([denied], 7), at, stored);
    assert.deepEqual(replay, { fresh: [], duplicates: [], replays: [0], conflicts: [] });
    const later = judgeWriteOnce(rowsOf([forged, denied], 8), at, stored);
    assert.deepEqual(later.fresh, []);
    assert.deepEqual(later.duplicates, [1]);
    assert.deepEqual(later.conflicts, [{ index: 0, first }]);
    // The same offset on another partition is another record.
    const other = judgeWriteOnce(rowsOf([denied], 7), { ...at, partition: 0 }, stored);
    assert.deepEqual(other.duplicates, [0]);
  });

  test('ids are per tenant: another tenant\'s copy of an id is its own first copy', () => {
    const globex = incident('globex').denied;
    const v = judgeWriteOnce(rowsOf([denied, globex]), at, new Map());
    assert.deepEqual(v.fresh, [0, 1]);
  });
});

describe('grouping by month', () => {
  test('blocks touch at most maxMonths months, oldest first, Kafka order inside; tokens name offsets, count and months', () => {
    const times = ['2026-03-02T00:00:00.000Z', '2019-01-31T23:59:59.999Z', '2026-03-30T00:00:00.000Z', '2019-01-01T00:00:00.000Z', '2020-05-05T00:00:00.000Z'];
    const rows = rowsOf(times.map((m, i) => ({ ...inc.denied, event_id: `01976d2a-9e1b-7c3a-8d4e-00000000010${i}`, occurred_at: m })));
    const one = byMonths(rows);
    assert.deepEqual(one.map((g) => g.rows.offsets), [['0', '1', '2', '3', '4']], 'a normal batch stays one block');
    const groups = byMonths(rows, 2);
    assert.deepEqual(groups.map((g) => [g.months, g.rows.offsets]), [[['2019-01', '2020-05'], ['1', '3', '4']], [['2026-03'], ['0', '2']]]);
    assert.ok(groups.every((g) => g.rows.rows.length === g.rows.ids.length));
    assert.equal(blockToken(groups[0]?.rows ?? rows, 'dec', 2), 'decisions|dec|2|1-4|3|2019-01..2020-05');
  });

  test('120 months make ten blocks of a year', () => {
    const rows = rowsOf(Array.from({ length: 120 }, (_, i) => ({ ...inc.denied, event_id: `01976d2a-9e1b-7c3a-8d4e-${String(i).padStart(12, '0')}`, occurred_at: new Date(Date.UTC(2016, i, 15)).toISOString() })));
    assert.deepEqual(byMonths(rows).map((g) => g.months.length), Array.from({ length: 10 }, () => 12));
  });
});

describe('block writer', () => {
  const rows = rowsOf(Array.from({ length: 8 }, (_, i) => ({ ...inc.denied, event_id: `01976d2a-9e1b-7c3a-8d4e-00000000020${i}` })));
  const codeError = (code: number) => Object.assign(new Error(`Code: ${code}. DB::Exception: something`), { code: String(code) });

  const fake = (fail: (offsets: readonly string[]) => Error | undefined, healthy = true) => {
    const calls: string[][] = [];
    const writer = createBlockWriter({
      insert: async (b) => {
        calls.push(b.offsets);
        const e = fail(b.offsets);
        if (e !== undefined) throw e;
      },
      healthy: async () => healthy,
      token: (b) => b.offsets.join(','),
      sleep: async () => undefined,
    });
    return { writer, calls };
  };

  test('a failed insert is said in the one error vocabulary: the server\'s (no code, or a code no record can cause) and unknown codes retriable, the data\'s not', () => {
    const said = (e: unknown) => {
      const f = insertFailure('decisions', e);
      return [f.code, isRetriable(f)];
    };
    assert.deepEqual(said(new Error('ECONNREFUSED')), ['clickhouse_unavailable', true]);
    assert.deepEqual(said(codeError(242)), ['clickhouse_unavailable', true]);
    assert.deepEqual(said(codeError(27)), ['clickhouse_query_failed', false]);
    assert.deepEqual(said(codeError(252)), ['clickhouse_query_failed', true]);
    assert.match(insertFailure('decisions', codeError(27)).message, /^insert into decisions failed: Code: 27/);
  });

  test('a data error is isolated at once: the bad row is rejected, every other row written', async () => {
    const { writer } = fake((o) => (o.includes('5') ? codeError(27) : undefined));
    const r = await writer.write(rows);
    assert.deepEqual([...r.inserted].sort(), ['0', '1', '2', '3', '4', '6', '7']);
    assert.deepEqual(r.rejected.map((x) => x.offset), ['5']);
    assert.match(r.rejected[0]?.message ?? '', /^Code: 27\./, 'the dead letter carries ClickHouse\'s own message');
  });

  test('a data error is never tried again: each block is inserted once on the way down to the bad row', async () => {
    const { calls } = await (async () => {
      const f = fake((o) => (o.includes('5') ? codeError(27) : undefined));
      await f.writer.write(rows);
      return f;
    })();
    assert.equal(calls.filter((c) => c.length === 8).length, 1);
    assert.equal(calls.filter((c) => c.length === 1 && c[0] === '5').length, 1);
  });

  test('an unknown error that persists (e.g. 252) is retried, then isolated: one record cannot stop the partition', async () => {
    const { writer, calls } = fake((o) => (o.includes('2') ? codeError(252) : undefined));
    const r = await writer.write(rows);
    assert.deepEqual(r.rejected.map((x) => x.offset), ['2']);
    assert.equal(r.inserted.size, 7);
    assert.equal(calls.filter((c) => c.length === 1 && c[0] === '2').length, 3, 'the lone row: one try and two retries');
    assert.equal(calls.filter((c) => c.length === 8).length, 3, 'the whole block: one try and two retries');
  });

  test('an unknown error that clears on retry loses nothing', async () => {
    let failures = 1;
    const { writer } = fake(() => (failures-- > 0 ? codeError(252) : undefined));
    const r = await writer.write(rows);
    assert.equal(r.inserted.size, 8);
    assert.deepEqual(r.rejected, []);
  });

  test('the server\'s errors are never blamed on records: thrown as retriable', async () => {
    for (const [fail, healthy] of [
      [() => new Error('socket hang up'), true],
      [() => codeError(252), true], // every row fails the same way: the server
      [(o: readonly string[]) => (o.includes('3') ? codeError(252) : undefined), false], // ClickHouse does not answer
    ] as const) {
      const { writer } = fake(fail, healthy);
      await assert.rejects(writer.write(rows), (e: unknown) => e instanceof TrustfoldError && e.retriable && e.code === 'clickhouse_unavailable');
    }
  });
});

describe('write-once lookups', () => {
  const idOf = (key: string): RecordIdentity => ({ tenant: 't', namespace: 'event', key, digest: '0'.repeat(64), time: '2026-12-01 00:00:00.000', canonical: '' });
  /** The URL the HTTP client would send the keys in: the client's own parameter formatting, then form encoding. */
  const urlLength = (ids: readonly RecordIdentity[]): number => new URLSearchParams({ param_keys: formatQueryParams({ value: ids.map((i) => i.key) }) }).toString().length;

  test('a decode chunk of 8,192 UUIDs is one lookup', () => {
    const ids = Array.from({ length: 8192 }, () => idOf(randomUUID()));
    const chunks = chunksOf(ids);
    assert.equal(chunks.length, 1);
    assert.ok(urlLength(ids) <= LOOKUP_URL_CHARS, `${urlLength(ids)} URL characters`);
  });

  test('keys of any characters: each lookup stays within the URL budget, and every id is asked for once, in order', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 300 }), { minLength: 1, maxLength: 400 }), fc.integer({ min: 200, max: 20_000 }), (keys, budget) => {
        const ids = keys.map(idOf);
        const chunks = chunksOf(ids, budget);
        assert.deepEqual(chunks.flat(), ids);
        for (const c of chunks) {
          const bound = c.reduce((n, i) => n + urlCharsOf(i.key), 0);
          assert.ok(urlLength(c) <= bound + 20, `formatted ${urlLength(c)} > counted ${bound}`);
          assert.ok(c.length === 1 || bound <= budget);
        }
      }),
    );
  });
});
