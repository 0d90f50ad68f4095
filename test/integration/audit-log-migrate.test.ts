// The tree table of an earlier version (one row per stored hash, `hash
// UInt256`, nodes at every 4th level) is rebuilt by `ensureTables` into leaf
// rows and hash tiles: the same leaves, roots and proofs afterwards, appends
// continue on the migrated partial tiles, a second start changes nothing, and
// a crash between the two renames is finished at the next start. Embedded
// ClickHouse only (no broker).
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { appendLeaf, emptyFrontier, frontierRoot, hashLeaf, rootOfLeaves, verifyConsistency, verifyInclusion, type Frontier, type NodeHash } from '../../schemas/audit-log/merkle.ts';
import { createProver } from '../../services/audit-log/proofs.ts';
import { createAuditLogStore, OFFSET_INDEX, REFS_TABLE, toHex, TREE_TABLE, type StoredLeaf } from '../../services/audit-log/store.ts';
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
    // By Kafka offset (the offset index): the same leaf as the lookup by reference, for that log and offset.
    for (const [log, b] of Object.entries(logs)) {
      for (const l of [b.leaves[0], b.leaves[5], b.leaves[b.leaves.length - 1]]) {
        if (l === undefined) continue;
        const byRef = (await store.findLeaves(l.tenant, l.kind, l.ref)).find((x) => x.log === log && x.offset === l.offset);
        const at = await store.leafAt(log, l.offset, l.tenant, l.kind, l.ref);
        assert.ok(byRef !== undefined && at !== undefined, `${label}: leaf ${l.index} of ${log} found both ways`);
        assert.deepEqual({ ...at, hash: toHex(at.hash) }, { ...byRef, hash: toHex(byRef.hash) }, `${label}: leaf ${l.index} of ${log} by offset`);
        assert.equal(await store.leafAt(log, l.offset, l.tenant === 'acme' ? 'globex' : 'acme', l.kind, l.ref), undefined, `${label}: another tenant's offset finds nothing`);
        assert.equal(await store.leafAt(log, String(Number(l.offset) + 1), l.tenant, l.kind, l.ref), undefined, `${label}: another offset finds nothing`);
      }
    }
    return store;
  };

  await createAuditLogStore(client, database).ensureTables();
  const tables = async () => (await (await client.query({ query: `SELECT name FROM system.tables WHERE database = '${database}' ORDER BY name`, format: 'JSONEachRow' })).json<{ name: string }>()).map((r) => r.name);
  assert.deepEqual(await tables(), ['audit_log_checkpoints', REFS_TABLE, TREE_TABLE]);
  await check('migrated');

  // A second start is a no-op; a crash between the renames (the old table gone, the new one not yet in place) is finished.
  await createAuditLogStore(client, database).ensureTables();
  await check('restarted');
  await client.command({ query: `RENAME TABLE ${database}.${TREE_TABLE} TO ${database}.${TREE_TABLE}_next` });
  await createAuditLogStore(client, database).ensureTables();
  assert.deepEqual(await tables(), ['audit_log_checkpoints', REFS_TABLE, TREE_TABLE]);
  const store = await check('rename finished');

  // Appends continue on the migrated partial tiles (700 → 1,000: the third level-0 tile completes).
  const more = build(300, () => randomUUID(), logs['dec/0'].frontier);
  await store.append('dec/0', more.leaves, more.created);
  logs['dec/0'] = { leaves: [...logs['dec/0'].leaves, ...more.leaves], frontier: more.frontier, created: [] };
  await check('appended');
  await check('appended, read by a fresh store');
});

// The tile layout as it was before the offset index (migration 4 adds it).
const TILES_DDL = (table: string) => `CREATE TABLE ${table} (
    log LowCardinality(String), row Enum8('leaf' = 1, 'tile' = 2), level UInt8, idx UInt64 CODEC(Delta, ZSTD(1)), width UInt16,
    tenant LowCardinality(String), kind LowCardinality(String), ref_uuid UUID CODEC(NONE), ref_text String CODEC(ZSTD(1)),
    kafka_offset UInt64 CODEC(Delta, ZSTD(1)), hashes_hex String EPHEMERAL, hashes String DEFAULT unhex(hashes_hex) CODEC(NONE)
  ) ENGINE = ReplacingMergeTree(width) ORDER BY (log, row, level, idx) SETTINGS index_granularity = 1024, index_granularity_bytes = 16384`;

test('a tile table without the offset index gets it at start, built for the parts written before: a leaf by offset reads one or two granules', async () => {
  const database = uniqueDatabase('alog_offidx');
  const client = newClient(database);
  await client.command({ query: `CREATE DATABASE ${database}` });
  await client.command({ query: TILES_DDL(`${database}.${TREE_TABLE}`) });
  const b = build(5000, () => randomUUID());
  // As that version wrote them: no lookup aid rows (every leaf said to be a first copy).
  await createAuditLogStore(client, database).append('dec/0', b.leaves.map((l) => ({ ...l, firstCopy: true })), b.created);
  const text = async (query: string) => (await (await client.query({ query, format: 'TabSeparatedRaw' })).text()).trim();
  const indexes = () => text(`SELECT name FROM system.data_skipping_indices WHERE database = '${database}' AND table = '${TREE_TABLE}'`);
  const unindexed = () => text(`SELECT count() FROM system.parts WHERE database = '${database}' AND table = '${TREE_TABLE}' AND active AND rows > 0 AND secondary_indices_compressed_bytes = 0`);
  assert.equal(await indexes(), '');
  assert.equal(await unindexed(), '1', 'the old part has no index data');

  const store = createAuditLogStore(client, database);
  await store.ensureTables();
  assert.equal(await indexes(), OFFSET_INDEX);
  assert.equal(await unindexed(), '0', 'the part written before is indexed');
  await store.ensureTables();
  assert.equal(await indexes(), OFFSET_INDEX, 'a second start changes nothing');

  const l = b.leaves[3777];
  assert.ok(l !== undefined);
  const at = await store.leafAt('dec/0', l.offset, l.tenant, l.kind, l.ref);
  assert.deepEqual(at === undefined ? undefined : { ...at, hash: toHex(at.hash) }, { ...l, hash: toHex(l.hash), log: 'dec/0' });
  // What the offset index keeps for that read: the granule holding the offset (two when a mark range's bound
  // touches the next granule) out of every granule of the table (granules ≤ 1,024 rows and ≤ 16 KiB).
  const plan = await text(`EXPLAIN indexes = 1 SELECT idx FROM ${database}.${TREE_TABLE} WHERE log = 'dec/0' AND row = 'leaf' AND kafka_offset = ${l.offset}`);
  const skip = plan.slice(plan.indexOf(`Name: ${OFFSET_INDEX}`));
  const granules = /Granules: (\d+)\/(\d+)/.exec(skip);
  assert.ok(plan.includes(`Name: ${OFFSET_INDEX}`) && granules !== null, `the offset index is used:\n${plan}`);
  assert.ok(Number(granules[1]) >= 1 && Number(granules[1]) <= 2 && Number(granules[2]) >= 5, `granules kept by the offset index:\n${plan}`);
});
