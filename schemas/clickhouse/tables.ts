// The audit store's tables, as data: one list of columns per table is the
// source of the DDL (./ddl.ts), of the sink's insert column order and of the
// query side's row mapping (./rows.ts), so the three cannot drift apart.
//
// Absent optional strings are stored as '' (cheaper than Nullable and what
// every filter wants); rows.ts turns '' back into "absent".

export type Column = { name: string; type: string; codec?: string; default?: string };

export type Index = { name: string; expr: string; type: string; granularity: number };

export type TableSpec = {
  name: string;
  columns: readonly Column[];
  orderBy: readonly string[];
  /**
   * ReplacingMergeTree version column: the row with the highest value survives
   * a merge. Absent: a plain MergeTree, nothing collapses (the write-once index,
   * whose reader picks the first copy itself).
   */
  version?: string;
  /** The event-time column TTL is computed from. */
  ttlColumn: string;
  /** Sharding key for the Distributed variant: a session lives on one shard so duplicates meet on merge. */
  shardBy: string;
  indexes: readonly Index[];
  projections: readonly { name: string; select: string }[];
  /**
   * MergeTree settings the table is created with. `index_granularity` cannot be
   * ALTERed: a change of it is a migration that rebuilds the table (ddl.ts, migration 4).
   */
  storageSettings?: readonly string[];
};

const time = "DateTime64(3, 'UTC')";
const lc = 'LowCardinality(String)';

/** Codec of the token's issued/expiry times; set on existing tables by migration 2. */
export const TOKEN_TIME_CODEC = 'DoubleDelta, ZSTD(1)';

const kafkaCoordinates: Column[] = [
  { name: 'kafka_topic', type: lc },
  { name: 'kafka_partition', type: 'UInt32' },
  { name: 'kafka_offset', type: 'UInt64' },
];
/**
 * Codec of the decisions' Kafka offsets (migration 4). A session's decisions sit
 * together in the sort order and arrive on one partition in time order, so
 * their offsets grow: stored as differences.
 */
export const DECISION_OFFSET_CODEC = 'Delta, ZSTD(1)';

/**
 * The decisions table's storage (migration 4). A session's page reads every
 * column of its ~50 rows: granules of 2048 rows instead of 8192, and
 * compressed blocks from 16 KiB (not 64 KiB), mean less decompressed and
 * deserialised around them; the offsets' Delta codec pays for the marks and
 * the smaller blocks on disk.
 */
export const DECISION_STORAGE_SETTINGS = ['index_granularity = 2048', 'min_compress_block_size = 16384', 'max_compress_block_size = 262144'] as const;

/** When the row reached ClickHouse; for lag/latency forensics, never part of the event. */
const ingestedAt: Column = { name: 'ingested_at', type: time, codec: 'Delta, ZSTD(1)', default: 'now64(3)' };

export const DECISIONS: TableSpec = {
  name: 'decisions',
  columns: [
    { name: 'tenant', type: lc },
    { name: 'session_id', type: 'String' },
    { name: 'occurred_at', type: time, codec: 'DoubleDelta, ZSTD(1)' },
    { name: 'event_id', type: 'UUID' },
    { name: 'delegator', type: 'String' },
    { name: 'agent_id', type: lc },
    { name: 'agent_version', type: lc },
    { name: 'agent_owner', type: lc },
    { name: 'chain_kinds', type: `Array(${lc})` },
    { name: 'chain_ids', type: 'Array(String)' },
    { name: 'chain_versions', type: 'Array(String)' },
    { name: 'chain_owners', type: 'Array(String)' },
    { name: 'token_jti', type: 'String' },
    { name: 'token_scopes', type: `Array(${lc})` },
    { name: 'token_audience', type: lc },
    // Token times move with the session's calls: DoubleDelta takes them from ~5.9 to well under 1 B each (migration 2).
    { name: 'token_issued_at', type: `Nullable(${time})`, codec: TOKEN_TIME_CODEC },
    { name: 'token_expires_at', type: `Nullable(${time})`, codec: TOKEN_TIME_CODEC },
    { name: 'token_trust_level', type: lc },
    { name: 'token_consent_ref', type: 'String' },
    { name: 'token_policy_version', type: lc },
    { name: 'intent_task_class', type: lc },
    { name: 'intent_statement', type: 'String', codec: 'ZSTD(3)' },
    { name: 'tool', type: lc },
    { name: 'action', type: lc },
    { name: 'resource', type: 'String' },
    { name: 'args_digest', type: 'String', codec: 'ZSTD(1)' },
    { name: 'effect', type: "Enum8('allow' = 1, 'deny' = 2, 'step_up' = 3)" },
    { name: 'policy_id', type: lc },
    { name: 'policy_version', type: lc },
    { name: 'rule_id', type: lc },
    { name: 'reasons', type: 'Array(String)', codec: 'ZSTD(3)' },
    { name: 'trust_version', type: 'Nullable(UInt64)' },
    { name: 'pdp_id', type: lc },
    { name: 'latency_us', type: 'Nullable(UInt32)' },
    { name: 'outcome_status', type: lc },
    { name: 'outcome_detail', type: 'String' },
    { name: 'model', type: lc },
    { name: 'prompt_digest', type: 'String' },
    { name: 'output_digest', type: 'String' },
    { name: 'tool_schema_digest', type: 'String' },
    { name: 'emitted_by', type: lc },
    ...kafkaCoordinates.map((c) => (c.name === 'kafka_offset' ? { ...c, codec: DECISION_OFFSET_CODEC } : c)),
    ingestedAt,
  ],
  orderBy: ['tenant', 'session_id', 'occurred_at', 'event_id'],
  version: 'kafka_offset',
  ttlColumn: 'occurred_at',
  shardBy: 'cityHash64(tenant, session_id)',
  storageSettings: DECISION_STORAGE_SETTINGS,
  indexes: [
    // Point lookups by id (GET /decisions/:event_id) have no sort-key prefix.
    { name: 'idx_event_id', expr: 'event_id', type: 'bloom_filter(0.001)', granularity: 1 },
    { name: 'idx_jti', expr: 'token_jti', type: 'bloom_filter(0.01)', granularity: 4 },
    { name: 'idx_resource', expr: 'resource', type: 'bloom_filter(0.01)', granularity: 4 },
    { name: 'idx_agent', expr: 'agent_id', type: 'set(256)', granularity: 4 },
    { name: 'idx_rule', expr: 'rule_id', type: 'set(256)', granularity: 4 },
  ],
  // The second access path: rows of one delegator over time, without a second copy of the data.
  projections: [{ name: 'by_delegator', select: 'SELECT _part_offset ORDER BY tenant, delegator, occurred_at' }],
};

export const SIGNALS: TableSpec = {
  name: 'signals',
  columns: [
    { name: 'tenant', type: lc },
    /** '' for signals that address a user or a freeze rather than a session. */
    { name: 'session_id', type: 'String' },
    { name: 'occurred_at', type: time, codec: 'DoubleDelta, ZSTD(1)' },
    { name: 'event_id', type: 'UUID' },
    { name: 'kind', type: lc },
    /** Whom it addresses when not a session: user_id, freeze_id, or the token's user. */
    { name: 'subject', type: 'String' },
    /** The signal's own id: signal_id, freeze_id, request_id, jti. */
    { name: 'ref', type: 'String' },
    { name: 'severity', type: lc },
    { name: 'tier', type: lc },
    /** The whole event as JSON: signals are few next to decisions, and every kind has its own fields. */
    { name: 'payload', type: 'String', codec: 'ZSTD(3)' },
    { name: 'emitted_by', type: lc },
    ...kafkaCoordinates,
    ingestedAt,
  ],
  orderBy: ['tenant', 'session_id', 'occurred_at', 'event_id'],
  version: 'kafka_offset',
  ttlColumn: 'occurred_at',
  shardBy: 'cityHash64(tenant, session_id)',
  indexes: [
    { name: 'idx_event_id', expr: 'event_id', type: 'bloom_filter(0.001)', granularity: 1 },
    { name: 'idx_subject', expr: 'subject', type: 'bloom_filter(0.01)', granularity: 1 },
    { name: 'idx_ref', expr: 'ref', type: 'bloom_filter(0.01)', granularity: 1 },
  ],
  projections: [],
};

export const TRUST_TRANSITIONS: TableSpec = {
  name: 'trust_transitions',
  columns: [
    { name: 'tenant', type: lc },
    { name: 'session_id', type: 'String' },
    { name: 'version', type: 'UInt64' },
    { name: 'updated_at', type: time, codec: 'DoubleDelta, ZSTD(1)' },
    { name: 'tier', type: lc },
    { name: 'delegator', type: 'String' },
    { name: 'agent_id', type: lc },
    { name: 'caused_by', type: 'UUID' },
    { name: 'ended', type: 'Bool' },
    /** The SessionTrust record as the projector published it. */
    { name: 'state', type: 'String', codec: 'ZSTD(3)' },
    ...kafkaCoordinates,
    ingestedAt,
  ],
  orderBy: ['tenant', 'session_id', 'version'],
  version: 'kafka_offset',
  ttlColumn: 'updated_at',
  shardBy: 'cityHash64(tenant, session_id)',
  indexes: [{ name: 'idx_delegator', expr: 'delegator', type: 'bloom_filter(0.01)', granularity: 1 }],
  projections: [],
};

export const AUDIT_TABLES = [DECISIONS, SIGNALS, TRUST_TRANSITIONS] as const;

/**
 * What the write-once check keys a record by. `event`: decisions and signals
 * share one id space, (tenant, event_id). `trust`: a trust transition is
 * (tenant, session, version), written `<version>:<session>`.
 */
export const RECORD_NAMESPACES = ['event', 'trust'] as const;
export type RecordNamespace = (typeof RECORD_NAMESPACES)[number];

/** Which record a write-once row is about: (tenant, namespace, key). */
const recordIdentity: Column[] = [
  { name: 'tenant', type: lc },
  { name: 'namespace', type: lc },
  { name: 'record_key', type: 'String' },
];
const DIGEST = 'FixedString(64)';

/**
 * The write-once index: one row per record the sink stored, the first copy's
 * Kafka coordinates and content digest. The sink consults it before every
 * insert, so a later copy of an id is never stored as the record (migration 3).
 */
export const RECORD_IDS: TableSpec = {
  name: 'record_ids',
  columns: [
    ...recordIdentity,
    /** sha256 of the record's canonical JSON: equal digests = a harmless duplicate. */
    { name: 'digest', type: DIGEST },
    { name: 'occurred_at', type: time, codec: 'DoubleDelta, ZSTD(1)' },
    ...kafkaCoordinates,
    ingestedAt,
  ],
  orderBy: ['tenant', 'namespace', 'record_key'],
  ttlColumn: 'occurred_at',
  shardBy: 'cityHash64(tenant, record_key)',
  indexes: [],
  projections: [],
};

/**
 * Evidence: a later copy of a stored id whose content differs. Never read as
 * the record; shown beside it (GET /v1/audit/decisions/:id, `audit.conflicts`)
 * and counted (`trustfold_audit_sink_conflicts_total`). Keyed by the copy's
 * Kafka coordinates, so a re-read of the same copy collapses into one row.
 */
export const CONFLICTS: TableSpec = {
  name: 'conflicts',
  columns: [
    ...recordIdentity,
    /** Where the first (stored) copy is. */
    ...kafkaCoordinates.map((c) => ({ ...c, name: c.name.replace('kafka_', 'first_') })),
    { name: 'first_digest', type: DIGEST },
    { name: 'copy_digest', type: DIGEST },
    /** The refused copy, as canonical JSON. */
    { name: 'copy', type: 'String', codec: 'ZSTD(3)' },
    ...kafkaCoordinates,
    { name: 'detected_at', type: time, default: 'now64(3)' },
  ],
  orderBy: ['tenant', 'namespace', 'record_key', 'kafka_topic', 'kafka_partition', 'kafka_offset'],
  version: 'detected_at',
  ttlColumn: 'detected_at',
  shardBy: 'cityHash64(tenant, record_key)',
  indexes: [],
  projections: [],
};

/** Tables of migration 3 and later: not part of migration 1's statement list. */
export const WRITE_ONCE_TABLES = [RECORD_IDS, CONFLICTS] as const;

/** Every table the TTL setting applies to. */
export const STORED_TABLES = [...AUDIT_TABLES, ...WRITE_ONCE_TABLES] as const;

/** The columns a writer supplies (everything but DEFAULT columns), in table order. */
export const insertColumns = (t: TableSpec): string[] => t.columns.filter((c) => c.default === undefined).map((c) => c.name);
