// The duplicate check with keys made on a preparing thread: the recent-id
// cache and dedupeEvents give the same answers with a caller's tenantIdKey
// as without, and re-adding a known id moves it to the young end.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dedupeEvents } from '../../services/ingest/admit.ts';
import { createRecentIds, tenantIdKey } from '../../services/ingest/recent-ids.ts';

describe('recent ids with keys given', () => {
  const e = (tenant: string, id: string, digest = 'd1') => ({ tenant, id, digest, key: tenantIdKey(tenant, id) });

  test('a re-added id moves to the young end; a new one is evicted first from the old end', () => {
    const r = createRecentIds(2);
    r.addAll([e('acme', 'a'), e('acme', 'b')]);
    r.addAll([e('acme', 'a', 'd2')]); // known: refreshed, digest replaced
    r.addAll([e('acme', 'c')]);
    assert.equal(r.digestOf('acme', 'b'), undefined);
    assert.equal(r.digestOf('acme', 'a'), 'd2');
    assert.equal(r.digestOf('acme', 'c', tenantIdKey('acme', 'c')), 'd1');
    assert.equal(r.size, 2);
  });

  test('entries with and without a key are one entry', () => {
    const r = createRecentIds(10);
    r.addAll([{ tenant: 'acme', id: 'x', digest: 'd1' }]);
    r.addAll([e('acme', 'x', 'd2')]);
    assert.equal(r.size, 1);
    assert.equal(r.digestOf('acme', 'x'), 'd2');
  });

  test('dedupeEvents: the same verdicts with idKey as without', () => {
    const events = [
      { index: 0, tenant: 'acme', id: 'a', digest: 'd1' },
      { index: 1, tenant: 'acme', id: 'a', digest: 'd1' },
      { index: 2, tenant: 'acme', id: 'a', digest: 'other' },
      { index: 3, tenant: 'globex', id: 'a', digest: 'd1' },
      { index: 4, tenant: 'acme', id: 'known', digest: 'd1' },
      { index: 5, tenant: 'acme', id: 'known', digest: 'changed' },
      { index: 6, tenant: 'a","cme', id: 'a', digest: 'd1' },
    ];
    const run = (withKeys: boolean) => {
      const recent = createRecentIds(10);
      recent.addAll([{ tenant: 'acme', id: 'known', digest: 'd1' }]);
      return dedupeEvents(withKeys ? events.map((x) => ({ ...x, idKey: tenantIdKey(x.tenant, x.id) })) : events, recent);
    };
    const a = run(false);
    const b = run(true);
    assert.deepEqual(b.kept.map((x) => x.index), a.kept.map((x) => x.index));
    assert.deepEqual(a.kept.map((x) => x.index), [0, 3, 6]);
    assert.deepEqual(b.rejected, a.rejected);
    assert.deepEqual([b.duplicatesInRequest, b.duplicatesRecent], [1, 1]);
    assert.deepEqual(b.reasons, ['id_conflict', 'id_conflict']);
  });
});
