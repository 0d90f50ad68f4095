// TRUSTFOLD_INGEST_PREPARE_THREADS reaches the ingest routes' option (services/roles/ingest.ts) through the config.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../services/lib/config.ts';

const base = { TRUSTFOLD_JWT_SECRET: 'config-ingest-test-secret-0123456789-abcdef' };

test('TRUSTFOLD_INGEST_PREPARE_THREADS: default 0, a count is kept, a negative or fractional one is refused naming the variable', () => {
  const d = parseConfig(base);
  assert.ok(d.ok);
  assert.equal(d.value.http.prepareThreads, 0);
  const two = parseConfig({ ...base, TRUSTFOLD_INGEST_PREPARE_THREADS: '2' });
  assert.ok(two.ok);
  assert.equal(two.value.http.prepareThreads, 2);
  for (const bad of ['-1', '1.5', 'many', '17']) {
    const r = parseConfig({ ...base, TRUSTFOLD_INGEST_PREPARE_THREADS: bad });
    assert.ok(!r.ok, bad);
    assert.ok(r.error.some((e) => e.path === 'TRUSTFOLD_INGEST_PREPARE_THREADS'), JSON.stringify(r.error));
  }
});
