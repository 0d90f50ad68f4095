// DDL for the audit store, built from ./tables.ts. Pure: statements in, no I/O.
//
// Single node (the embedded engine, or one server): ReplacingMergeTree tables.
// Cluster (config.clickhouse.cluster set): ReplicatedReplacingMergeTree
// `<table>_local` on every node plus a Distributed `<table>` over them, sharded
// by session so every duplicate of an event meets its twin on one shard. The
// query and sink code name `<db>.<table>` in both layouts.
import type { TableSpec } from './tables.ts';
import { AUDIT_TABLES, DECISION_OFFSET_CODEC, DECISION_STORAGE_SETTINGS, DECISIONS, SIGNALS, TOKEN_TIME_CODEC, TRUST_TRANSITIONS, WRITE_ONCE_TABLES } from './tables.ts';

export type DdlOptions = {
  database: string;
  ttlDays: number;
  cluster?: string | undefined;
  /** Rows of recent insert blocks remembered for insert_deduplication_token (single node). */
  dedupWindow?: number;
};

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Identifiers are never user input, but a bad one must fail loudly rather than build odd SQL. */
export const ident = (name: string): string => {
  if (!IDENT.test(name)) throw new Error(`not a plain identifier: ${JSON.stringify(name)}`);
  return `\`${name}\``;
};

export const qualified = (database: string, table: string): string => `${ident(database)}.${ident(table)}`;

const onCluster = (o: DdlOptions): string => (o.cluster !== undefined ? ` ON CLUSTER ${ident(o.cluster)}` : '');

export const MAX_TTL_DAYS = 25_000;

export const ttlExpression = (t: TableSpec, days: number): string => {
  if (!Number.isInteger(days) || days < 1) throw new Error(`ttlDays must be a positive integer, got ${days}`);
  // The TTL is a DateTime (up to 2106-02-07): beyond that it wraps, and every row would expire at insert.
  if (days > MAX_TTL_DAYS) throw new Error(`ttlDays must be at most ${MAX_TTL_DAYS}, got ${days}`);
  return `toDateTime(${t.ttlColumn}) + toIntervalDay(${days})`;
};

const columnSql = (t: TableSpec): string[] =>
  t.columns.map((c) => {
    let s = `${ident(c.name)} ${c.type}`;
    if (c.default !== undefined) s += ` DEFAULT ${c.default}`;
    if (c.codec !== undefined) s += ` CODEC(${c.codec})`;
    return s;
  });

const bodySql = (t: TableSpec): string => {
  const parts = [
    ...columnSql(t),
    ...t.indexes.map((i) => `INDEX ${ident(i.name)} ${i.expr} TYPE ${i.type} GRANULARITY ${i.granularity}`),
    ...t.projections.map((p) => `PROJECTION ${ident(p.name)} (${p.select})`),
  ];
  return `(\n  ${parts.join(',\n  ')}\n)`;
};

const storageSql = (t: TableSpec, o: DdlOptions, engine: string, settings: string[]): string =>
  [
    `ENGINE = ${engine}`,
    `PARTITION BY toYYYYMM(${t.ttlColumn})`,
    `ORDER BY (${t.orderBy.join(', ')})`,
    `TTL ${ttlExpression(t, o.ttlDays)}`,
    `SETTINGS ${settings.join(', ')}`,
  ].join('\n');

/** The storage table's name: the table itself on one node, `<name>_local` under a Distributed table on a cluster. */
export const storageTable = (t: TableSpec, o: Pick<DdlOptions, 'cluster'>): string =>
  o.cluster !== undefined ? `${t.name}_local` : t.name;

export const createTableStatements = (t: TableSpec, o: DdlOptions): string[] => {
  // A projection on a Replacing table must say what happens to it when rows collapse.
  const common = t.projections.length > 0 ? ["deduplicate_merge_projection_mode = 'rebuild'"] : [];
  const kind = t.version !== undefined ? 'ReplacingMergeTree' : 'MergeTree';
  if (o.cluster === undefined) {
    const window = o.dedupWindow ?? 10_000;
    return [
      `CREATE TABLE IF NOT EXISTS ${qualified(o.database, t.name)}\n${bodySql(t)}\n` +
        storageSql(t, o, `${kind}(${t.version ?? ''})`, [...(t.storageSettings ?? []), `non_replicated_deduplication_window = ${window}`, ...common]),
    ];
  }
  const local = storageTable(t, o);
  const zkPath = `/clickhouse/tables/{shard}/${o.database}/${local}`;
  return [
    `CREATE TABLE IF NOT EXISTS ${qualified(o.database, local)}${onCluster(o)}\n${bodySql(t)}\n` +
      storageSql(t, o, `Replicated${kind}('${zkPath}', '{replica}'${t.version !== undefined ? `, ${t.version}` : ''})`, [
        ...(t.storageSettings ?? []),
        `replicated_deduplication_window = ${o.dedupWindow ?? 10_000}`,
        ...common,
      ]),
    `CREATE TABLE IF NOT EXISTS ${qualified(o.database, t.name)}${onCluster(o)} AS ${qualified(o.database, local)}\n` +
      `ENGINE = Distributed(${ident(o.cluster)}, ${ident(o.database)}, ${ident(local)}, ${t.shardBy})`,
  ];
};

export const MIGRATIONS_TABLE = 'schema_migrations';

export const createDatabaseStatement = (o: DdlOptions): string => `CREATE DATABASE IF NOT EXISTS ${ident(o.database)}${onCluster(o)}`;

export const createMigrationsTableStatement = (o: DdlOptions): string => {
  const engine =
    o.cluster !== undefined
      ? `ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${o.database}/${MIGRATIONS_TABLE}', '{replica}')`
      : 'ReplacingMergeTree';
  return (
    `CREATE TABLE IF NOT EXISTS ${qualified(o.database, MIGRATIONS_TABLE)}${onCluster(o)}\n` +
    `(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))\n` +
    `ENGINE = ${engine} ORDER BY version`
  );
};

export type Migration = {
  version: number;
  name: string;
  statements: (o: DdlOptions) => string[];
  /**
   * After the statements, on a single node: the table is rebuilt into its
   * current definition when the stored one lacks a setting of its
   * storageSettings (services/lib/clickhouse-migrate.ts, rebuildTable).
   */
  rebuild?: TableSpec;
};

/** Whether a table's stored CREATE statement carries every setting of the spec's storageSettings. */
export const hasStorageSettings = (t: TableSpec, createTableQuery: string): boolean => {
  const m = /\bSETTINGS\s+(.*)$/s.exec(createTableQuery);
  const stored = new Set((m?.[1] ?? '').split(',').map((x) => x.trim().replace(/\s+/g, ' ')));
  return (t.storageSettings ?? []).every((s) => stored.has(s));
};

/**
 * The copy a rebuild fills: `<table>_rebuild_<since>_<nonce>`. `since` (ms,
 * the engine's clock) is a bound from before the copy began: after the swap
 * the name is the previous table's, and its rows ingested from `since` on are
 * copied again (those the sink stored while the copy ran). The nonce keeps
 * two instances migrating at once off each other's copy.
 */
export const rebuildCopyName = (t: TableSpec, sinceMs: number, nonce: string): string => `${t.name}_rebuild_${sinceMs}_${nonce}`;

/** `since` of a rebuild copy's name; undefined for a table that is not one of this table's copies. */
export const rebuildCopySince = (t: TableSpec, name: string): number | undefined => {
  const m = /^(.*)_rebuild_(\d+)_[0-9a-f]+$/.exec(name);
  return m?.[1] === t.name && m[2] !== undefined ? Number(m[2]) : undefined;
};

/**
 * Append only: a released migration is never edited, a change is a new
 * version. Every statement is idempotent (IF NOT EXISTS / IF EXISTS), so two
 * instances migrating at once, or a crash half-way, end in the same schema.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'audit tables: decisions, signals, trust_transitions',
    statements: (o) => AUDIT_TABLES.flatMap((t) => createTableStatements(t, o)),
  },
  {
    version: 2,
    name: 'decisions: DoubleDelta codec on token_issued_at / token_expires_at',
    // Metadata only: new parts are written with the codec, old parts take it when they are next merged.
    // (Tables created after this change already have it from migration 1; the ALTER is then a no-op.)
    statements: (o) => [
      `ALTER TABLE ${qualified(o.database, storageTable(DECISIONS, o))}${onCluster(o)}\n` +
        ['token_issued_at', 'token_expires_at'].map((c) => `  MODIFY COLUMN IF EXISTS ${ident(c)} CODEC(${TOKEN_TIME_CODEC})`).join(',\n'),
    ],
  },
  {
    version: 3,
    name: 'write-once audit: record_ids index and conflicts evidence, backfilled from the stored records',
    // The backfill takes, per id, the copy a reader showed first (lowest Kafka coordinates); its digest is
    // unknown (computed by the sink, not by SQL), written as zeros: a later copy of such an id is then a
    // conflict whatever its content, kept as evidence and never stored as the record.
    statements: (o) => {
      const zeros = "toFixedString(repeat('0', 64), 64)";
      const backfill = (from: string, namespace: string, key: string, time: string): string =>
        `INSERT INTO ${qualified(o.database, 'record_ids')} (tenant, namespace, record_key, digest, occurred_at, kafka_topic, kafka_partition, kafka_offset)\n` +
        `SELECT tenant, '${namespace}', ${key} AS k, ${zeros}, ${time}, kafka_topic, kafka_partition, kafka_offset\n` +
        `FROM ${qualified(o.database, from)}\n` +
        `WHERE (tenant, k) GLOBAL NOT IN (SELECT tenant, record_key FROM ${qualified(o.database, 'record_ids')} WHERE namespace = '${namespace}')\n` +
        `ORDER BY tenant, k, kafka_topic, kafka_partition, kafka_offset\nLIMIT 1 BY tenant, k`;
      // Every other stored copy of an indexed id becomes evidence, so a responder sees that the id had several.
      // Idempotent: the conflicts table collapses rows of the same copy (its Kafka coordinates).
      const evidence = (from: string, namespace: string, key: string): string =>
        `INSERT INTO ${qualified(o.database, 'conflicts')} (tenant, namespace, record_key, first_topic, first_partition, first_offset, first_digest, copy_digest, copy, kafka_topic, kafka_partition, kafka_offset)\n` +
        `SELECT s.tenant, '${namespace}', s.k, i.kafka_topic, i.kafka_partition, i.kafka_offset, i.digest, ${zeros}, '{"stored_before_write_once":true}', s.kafka_topic, s.kafka_partition, s.kafka_offset\n` +
        `FROM (SELECT tenant, ${key} AS k, kafka_topic, kafka_partition, kafka_offset FROM ${qualified(o.database, from)}) AS s\n` +
        `INNER JOIN (SELECT tenant, record_key, digest, kafka_topic, kafka_partition, kafka_offset FROM ${qualified(o.database, 'record_ids')} WHERE namespace = '${namespace}') AS i\n` +
        `ON s.tenant = i.tenant AND s.k = i.record_key\n` +
        `WHERE (s.kafka_topic, s.kafka_partition, s.kafka_offset) != (i.kafka_topic, i.kafka_partition, i.kafka_offset)`;
      const sources: [string, string, string, string][] = [
        [DECISIONS.name, 'event', 'toString(event_id)', 'occurred_at'],
        [SIGNALS.name, 'event', 'toString(event_id)', 'occurred_at'],
        [TRUST_TRANSITIONS.name, 'trust', "concat(toString(version), ':', session_id)", 'updated_at'],
      ];
      return [
        ...WRITE_ONCE_TABLES.flatMap((t) => createTableStatements(t, o)),
        ...sources.map(([from, ns, key, time]) => backfill(from, ns, key, time)),
        ...sources.map(([from, ns, key]) => evidence(from, ns, key)),
      ];
    },
  },
  {
    version: 4,
    name: 'decisions: granules of 2048 rows, compressed blocks of 16–256 KiB, Delta on kafka_offset (rebuilt)',
    // A single node's table is rebuilt (rebuild): the granularity is fixed at creation. A cluster's replicated
    // tables are not rebuilt here; they take the codec and block sizes (metadata: new parts and merges) and keep
    // their granules until rebuilt by an operator. Tables created after this change have all of it from migration 1.
    statements: (o) =>
      o.cluster === undefined
        ? []
        : [
            `ALTER TABLE ${qualified(o.database, storageTable(DECISIONS, o))}${onCluster(o)} MODIFY COLUMN IF EXISTS ${ident('kafka_offset')} CODEC(${DECISION_OFFSET_CODEC})`,
            `ALTER TABLE ${qualified(o.database, storageTable(DECISIONS, o))}${onCluster(o)} MODIFY SETTING ${DECISION_STORAGE_SETTINGS.filter((s) => !s.startsWith('index_granularity')).join(', ')}`,
          ],
    rebuild: DECISIONS,
  },
];

/** A digest of zeros: the id was stored before the write-once check existed (migration 3). */
export const UNKNOWN_DIGEST = '0'.repeat(64);

/** TTL is configuration, not a migration: reconciled at every start (see migrate.ts). */
export const modifyTtlStatement = (t: TableSpec, o: DdlOptions): string =>
  `ALTER TABLE ${qualified(o.database, storageTable(t, o))}${onCluster(o)} MODIFY TTL ${ttlExpression(t, o.ttlDays)}`;

/** The TTL in days a table was created or altered with, read from its CREATE statement. */
export const ttlDaysOf = (createTableQuery: string): number | undefined => {
  const m = /TTL\s+toDateTime\(\w+\)\s*\+\s*toIntervalDay\((\d+)\)/.exec(createTableQuery);
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
};
