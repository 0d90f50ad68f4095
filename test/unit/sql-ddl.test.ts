import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  createMigrationsTableStatement,
  createTableStatements,
  hasStorageSettings,
  ident,
  MIGRATIONS,
  modifyTtlStatement,
  rebuildCopyName,
  rebuildCopySince,
  ttlDaysOf,
} from '../../schemas/clickhouse/ddl.ts';
import { AUDIT_TABLES, DECISIONS, SIGNALS } from '../../schemas/clickhouse/tables.ts';

describe('DDL, single node', () => {
  const [sql = ''] = createTableStatements(DECISIONS, { database: 'tf', ttlDays: 90 });

  test('ReplacingMergeTree on the Kafka offset, ordered for session lookups', () => {
    assert.match(sql, /^CREATE TABLE IF NOT EXISTS `tf`\.`decisions`/);
    assert.match(sql, /ENGINE = ReplacingMergeTree\(kafka_offset\)/);
    assert.match(sql, /ORDER BY \(tenant, session_id, occurred_at, event_id\)/);
  });
  test('the delegator projection comes with the mode a Replacing table needs', () => {
    assert.match(sql, /PROJECTION `by_delegator` \(SELECT _part_offset ORDER BY tenant, delegator, occurred_at\)/);
    assert.match(sql, /deduplicate_merge_projection_mode = 'rebuild'/);
  });
  test('insert dedup window and the configured TTL', () => {
    assert.match(sql, /non_replicated_deduplication_window = 10000/);
    assert.match(sql, /TTL toDateTime\(occurred_at\) \+ toIntervalDay\(90\)/);
    assert.equal(ttlDaysOf(sql), 90);
  });
  test('tables without projections do not carry the projection setting', () => {
    const [s = ''] = createTableStatements(SIGNALS, { database: 'tf', ttlDays: 90 });
    assert.doesNotMatch(s, /deduplicate_merge_projection_mode/);
  });
  test('every column once, in spec order', () => {
    const names = [...sql.matchAll(/^ {2}`(\w+)` /gm)].map((m) => m[1]);
    assert.deepEqual(names, DECISIONS.columns.map((c) => c.name));
  });
  test('bad TTL is refused', () => {
    assert.throws(() => createTableStatements(DECISIONS, { database: 'tf', ttlDays: 0 }), /ttlDays/);
  });
});

describe('DDL, cluster', () => {
  const o = { database: 'tf', ttlDays: 30, cluster: 'audit' };
  test('replicated local table plus a Distributed table sharded by session', () => {
    const [local = '', dist = ''] = createTableStatements(DECISIONS, o);
    assert.match(local, /`tf`\.`decisions_local` ON CLUSTER `audit`/);
    assert.match(local, /ReplicatedReplacingMergeTree\('\/clickhouse\/tables\/\{shard\}\/tf\/decisions_local', '\{replica\}', kafka_offset\)/);
    assert.match(local, /replicated_deduplication_window/);
    assert.doesNotMatch(local, /non_replicated_deduplication_window/);
    assert.match(dist, /`tf`\.`decisions` ON CLUSTER `audit` AS `tf`\.`decisions_local`/);
    assert.match(dist, /Distributed\(`audit`, `tf`, `decisions_local`, cityHash64\(tenant, session_id\)\)/);
  });
  test('TTL changes go to the storage table', () => {
    assert.match(modifyTtlStatement(DECISIONS, o), /ALTER TABLE `tf`\.`decisions_local` ON CLUSTER `audit` MODIFY TTL .*toIntervalDay\(30\)/);
  });
  test('migrations table is replicated too', () => {
    assert.match(createMigrationsTableStatement(o), /ReplicatedReplacingMergeTree/);
  });
});

describe('migrations and identifiers', () => {
  test('versions strictly increase and every statement is idempotent', () => {
    const versions = MIGRATIONS.map((m) => m.version);
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
    assert.equal(new Set(versions).size, versions.length);
    for (const m of MIGRATIONS) {
      // A backfill is idempotent by skipping what the target already holds, or by a target that collapses repeats.
      for (const s of m.statements({ database: 'tf', ttlDays: 1 })) assert.match(s, /IF NOT EXISTS|IF EXISTS|^INSERT INTO [\s\S]* NOT IN \(SELECT|^INSERT INTO `tf`\.`conflicts`/);
    }
  });
  test('migration 1 creates every audit table', () => {
    const all = MIGRATIONS[0]?.statements({ database: 'tf', ttlDays: 1 }).join('\n') ?? '';
    for (const t of AUDIT_TABLES) assert.match(all, new RegExp(`\`tf\`\\.\`${t.name}\``));
  });
  test('migration 3 creates the write-once index (plain MergeTree: nothing collapses it) and the conflicts table, then backfills the index', () => {
    const m = MIGRATIONS.find((x) => x.version === 3);
    assert.ok(m);
    const [index, conflicts, ...rest] = m.statements({ database: 'tf', ttlDays: 30 });
    const backfills = rest.filter((b) => b.startsWith('INSERT INTO `tf`.`record_ids`'));
    assert.equal(rest.filter((b) => b.startsWith('INSERT INTO `tf`.`conflicts`')).length, 3, 'other stored copies become evidence');
    assert.match(index ?? '', /CREATE TABLE IF NOT EXISTS `tf`\.`record_ids`[\s\S]*ENGINE = MergeTree\(\)\nPARTITION BY toYYYYMM\(occurred_at\)\nORDER BY \(tenant, namespace, record_key\)/);
    assert.match(conflicts ?? '', /CREATE TABLE IF NOT EXISTS `tf`\.`conflicts`[\s\S]*ENGINE = ReplacingMergeTree\(detected_at\)/);
    assert.deepEqual(backfills.map((b) => /FROM `tf`\.`(\w+)`/.exec(b)?.[1]), ['decisions', 'signals', 'trust_transitions']);
    const cluster = m.statements({ database: 'tf', ttlDays: 30, cluster: 'c' }).join('\n');
    assert.match(cluster, /ReplicatedMergeTree\('\/clickhouse\/tables\/\{shard\}\/tf\/record_ids_local', '\{replica\}'\)/);
    assert.match(cluster, /ENGINE = Distributed\(`c`, `tf`, `record_ids_local`, cityHash64\(tenant, record_key\)\)/);
  });
  test('migration 2 moves the token times to DoubleDelta on the storage table, like the table spec', () => {
    const m = MIGRATIONS.find((x) => x.version === 2);
    assert.ok(m);
    const [single] = m.statements({ database: 'tf', ttlDays: 1 });
    assert.match(single ?? '', /^ALTER TABLE `tf`\.`decisions`\n/);
    for (const c of ['token_issued_at', 'token_expires_at']) {
      assert.match(single ?? '', new RegExp(`MODIFY COLUMN IF EXISTS \`${c}\` CODEC\\(DoubleDelta, ZSTD\\(1\\)\\)`));
      assert.equal(DECISIONS.columns.find((x) => x.name === c)?.codec, 'DoubleDelta, ZSTD(1)');
    }
    const [clustered] = m.statements({ database: 'tf', ttlDays: 1, cluster: 'c1' });
    assert.match(clustered ?? '', /^ALTER TABLE `tf`\.`decisions_local` ON CLUSTER `c1`/);
  });
  test('migration 4 rebuilds a single node\'s decisions table; a cluster takes what can be ALTERed', () => {
    const m = MIGRATIONS.find((x) => x.version === 4);
    assert.ok(m);
    assert.equal(m.rebuild, DECISIONS);
    assert.deepEqual(m.statements({ database: 'tf', ttlDays: 1 }), []);
    const [codec, settings, ...none] = m.statements({ database: 'tf', ttlDays: 1, cluster: 'c1' });
    assert.equal(none.length, 0);
    assert.equal(codec, 'ALTER TABLE `tf`.`decisions_local` ON CLUSTER `c1` MODIFY COLUMN IF EXISTS `kafka_offset` CODEC(Delta, ZSTD(1))');
    assert.equal(settings, 'ALTER TABLE `tf`.`decisions_local` ON CLUSTER `c1` MODIFY SETTING min_compress_block_size = 16384, max_compress_block_size = 262144');
    // New tables have it all from migration 1.
    const [sql = ''] = createTableStatements(DECISIONS, { database: 'tf', ttlDays: 90 });
    assert.match(sql, /`kafka_offset` UInt64 CODEC\(Delta, ZSTD\(1\)\)/);
    assert.match(sql, /SETTINGS index_granularity = 2048, min_compress_block_size = 16384, max_compress_block_size = 262144, non_replicated_deduplication_window = 10000/);
  });
  test('a stored definition has the storage settings only when it carries every one', () => {
    const stored = (settings: string): string =>
      `CREATE TABLE tf.decisions (\`tenant\` LowCardinality(String)) ENGINE = ReplacingMergeTree(kafka_offset) PARTITION BY toYYYYMM(occurred_at) ORDER BY (tenant, session_id) TTL toDateTime(occurred_at) + toIntervalDay(90) SETTINGS ${settings}`;
    assert.equal(hasStorageSettings(DECISIONS, stored('index_granularity = 8192, non_replicated_deduplication_window = 10000')), false);
    assert.equal(hasStorageSettings(DECISIONS, stored('index_granularity = 20480, min_compress_block_size = 16384, max_compress_block_size = 262144')), false);
    assert.equal(hasStorageSettings(DECISIONS, stored('index_granularity = 2048, min_compress_block_size = 16384')), false);
    assert.equal(hasStorageSettings(DECISIONS, stored('index_granularity = 2048, min_compress_block_size = 16384, max_compress_block_size = 262144, non_replicated_deduplication_window = 10000')), true);
    assert.equal(hasStorageSettings(SIGNALS, stored('index_granularity = 8192')), true, 'a table with no storage settings has them all');
  });
  test('a rebuild copy names the table and its catch-up bound; other tables are not copies', () => {
    const name = rebuildCopyName(DECISIONS, 1780000000000, '0a1b2c3d');
    assert.equal(name, 'decisions_rebuild_1780000000000_0a1b2c3d');
    assert.equal(ident(name), `\`${name}\``);
    assert.equal(rebuildCopySince(DECISIONS, name), 1780000000000);
    assert.equal(rebuildCopySince(SIGNALS, name), undefined);
    for (const other of ['decisions', 'decisions_next', 'decisions_rebuild_x_0a', 'decisions_rebuild_1_']) assert.equal(rebuildCopySince(DECISIONS, other), undefined);
  });
  test('identifiers that are not plain names are refused', () => {
    assert.equal(ident('trustfold_1'), '`trustfold_1`');
    for (const bad of ['a`b', 'a;DROP TABLE x', '1abc', '', 'a b']) assert.throws(() => ident(bad), /plain identifier/);
  });
});
