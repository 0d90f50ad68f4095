// The tree table of an earlier version (one row per stored hash, `hash
// UInt256`, nodes at every 4th level) is rebuilt by `ensureTables` into leaf
// rows and hash tiles: the same leaves, roots and proofs afterwards, appends
// continue on the migrated partial tiles, a second start changes nothing, and
// a crash between the two renames is finished at the next start. Embedded
// ClickHouse only (no broker).
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { appendLeaf, emptyFrontier, frontierRoot, hashLeaf, rootOfLeaves, verifyConsistency, verifyInclusion, type Frontier, type NodeHash } from '../../services/audit-log/merkle.ts';
import { createProver } from '../../services/audit-log/proofs.ts';
import { createAuditLogStore, toHex, TREE_TABLE, type StoredLeaf } from '../../services/audit-log/store.ts';
import { closeTestClickHouse, newClient, uniqueDatabase } from '../helpers/clickhouse.ts';

after(closeTestClickHouse);

// The layout before tiles, as the first versions created it.
const OLD_DDL = (table: string) => `CREATE TABLE ${table} (
    log LowCardinality(String), level UInt8, idx UInt64, hash UInt256,
    tenant LowCardinality(String), kind LowCardinality(String), ref String, kafka_offset UInt64
  ) ENGINE = ReplacingMergeTree ORDER BY (log, level, idx) SETTINGS index_granularity = 256`;

type Built = { leaves: StoredLeaf[]; frontier: Frontier; created: NodeHash[] };
const build = (n: number, ref: (i: number) => string, from: Frontier = emptyFrontier()): Built => {
  let frontier = from;
  const leaves: StoredLeaf[] = [];
  const created: NodeHash[] = [];
  for (let i = from.size; i < from.size + n; i++) {
    const hash = hashLeaf(createHash('sha256').update(`leaf ${i}`).digest());
    leaves.push({ index: i, hash, tenant: i % 3 === 0 ? 'acme' : 'globex', kind: 'decision', ref: ref(i), offset: String(10 + 2 * i) });
    frontier = appendLeaf(frontier, hash, (x) => created.push(x));
  }
  return { leaves, frontier, created };
};

test('an old tree table is migrated to leaf rows and tiles: same leaves, roots and proofs; appends continue; a crash between the renames is finished', async () => {
  const database = uniqueDatabase('alog_migrate');
  const client = newClient(database);
  await client.command({ query: `CREATE DATABASE ${database}` });
  await client.command({ query: OLD_DDL(`${database}.${TREE_TABLE}`) });
  const uuids = Array.from({ length: 700 }, () => randomUUID());
  const logs = {
    // 700 leaves: two full level-0 tiles, a partial one, two level-8 nodes.
    'dec/0': build(700, (i) => uuids[i] ?? ''),
    // Trust transitions: references that are not UUIDs.
    'trust/1': build(37, (i) => `S-${i % 5}#${i}`),
  };
  const cell = (h: Uint8Array) => BigInt(`0x${toHex(h)}`).toString();
  for (const [log, b] of Object.entries(logs)) {
    const values = [
      ...b.leaves.map((l) => ({ log, level: 0, idx: l.index, hash: cell(l.hash), tenant: l.tenant, kind: l.kind, ref: l.ref, kafka_offset: l.offset })),
      ...b.created.filter((x) => x.level > 0 && x.level % 4 === 0).map((x) => ({ log, level: x.level, idx: x.index, hash: cell(x.hash), tenant: '', kind: '', ref: '', kafka_offset: '0' })),
    ];
    // Twice: copies a merge has not collapsed yet are counted once.
    await client.insert({ table: `${database}.${TREE_TABLE}`, values, format: 'JSONEachRow' });
    await client.insert({ table: `${database}.${TREE_TABLE}`, values: values.slice(0, 50), format: 'JSONEachRow' });
  }

  const check = async (label: string) => {
    const store = createAuditLogStore(client, database);
    const prover = createProver(store);
    for (const [log, b] of Object.entries(logs)) {
      const got = await store.leaves(log);
      assert.deepEqual(
        got.map((l) => ({ ...l, hash: toHex(l.hash) })),
        b.leaves.map((l) => ({ ...l, hash: toHex(l.hash) })),
        `${label}: the leaves of ${log}`,
      );
      const size = b.frontier.size;
      const root = frontierRoot(b.frontier);
      assert.equal(toHex(await prover.root(log, size)), toHex(root), `${label}: root of ${log}`);
      assert.equal(toHex(frontierRoot(await store.frontierAt(log, size))), toHex(root), `${label}: frontier of ${log}`);
      for (const index of [0, 1, 255, 256, size - 1, Math.floor(size / 2)]) {
        const leaf = b.leaves[index];
        if (leaf === undefined) continue;
        assert.ok(verifyInclusion(index, size, leaf.hash, await prover.inclusion(log, index, size), root).ok, `${label}: proof of leaf ${index} of ${log}`);
      }
      // Consistency across tile boundaries, against roots computed from the leaf hashes themselves.
      const sizes = [1, 2, 255, 256, 257, 511, 512, 600, size].filter((x) => x <= size);
      for (let i = 0; i + 1 < sizes.length; i++) {
        const [a, z] = [sizes[i] ?? 1, sizes[i + 1] ?? 1];
        const rootAt = (n: number) => rootOfLeaves(b.leaves.slice(0, n).map((l) => l.hash));
        assert.ok(verifyConsistency(a, z, await prover.consistency(log, a, z), rootAt(a), rootAt(z)).ok, `${label}: consistency ${a} → ${z} of ${log}`);
      }
      assert.deepEqual((await store.logHead(log)).size, size);
    }
    const found = await store.findLeaves('acme', 'decision', uuids[3] ?? '');
    assert.deepEqual(found.map((l) => [l.log, l.index, toHex(l.hash)]), [['dec/0', 3, toHex(logs['dec/0'].leaves[3]?.hash ?? new Uint8Array())]]);
    assert.deepEqual((await store.findLeaves(undefined, 'decision', 'S-1#6')).map((l) => [l.log, l.index]), [['trust/1', 6]]);
    assert.deepEqual(await store.findLeaves('globex', 'decision', uuids[3] ?? ''), [], 'another tenant finds nothing');
    return store;
  };

  await createAuditLogStore(client, database).ensureTables();
  const tables = async () => (await (await client.query({ query: `SELECT name FROM system.tables WHERE database = '${database}' ORDER BY name`, format: 'JSONEachRow' })).json<{ name: string }>()).map((r) => r.name);
  assert.deepEqual(await tables(), ['audit_log_checkpoints', TREE_TABLE]);
  await check('migrated');

  // A second start is a no-op; a crash between the renames (the old table gone, the new one not yet in place) is finished.
  await createAuditLogStore(client, database).ensureTables();
  await check('restarted');
  await client.command({ query: `RENAME TABLE ${database}.${TREE_TABLE} TO ${database}.${TREE_TABLE}_next` });
  await createAuditLogStore(client, database).ensureTables();
  assert.deepEqual(await tables(), ['audit_log_checkpoints', TREE_TABLE]);
  const store = await check('rename finished');

  // Appends continue on the migrated partial tiles (700 → 1,000: the third level-0 tile completes).
  const more = build(300, () => randomUUID(), logs['dec/0'].frontier);
  await store.append('dec/0', more.leaves, more.created);
  logs['dec/0'] = { leaves: [...logs['dec/0'].leaves, ...more.leaves], frontier: more.frontier, created: [] };
  await check('appended');
  await check('appended, read by a fresh store');
});
