// Kafka → ClickHouse (the consumer loop; one file with its crash rules, a
// little over 400 lines). Per partition batch: decode and map (./batch.ts), keep
// only the first stored copy of every id (the write-once index, ./write-once.ts;
// later copies are duplicates or conflicts), insert in blocks of at most 12 months with dedup
// tokens made of offset ranges (./write.ts isolates any record ClickHouse
// refuses), send poison to the dead-letter topic, and only then commit the
// offset. A crash anywhere before the commit re-reads the same batch: the
// index and the tokens make its retry a no-op, and ReplacingMergeTree plus the
// query side's dedup cover a re-read whose batch boundaries moved.
import type { ClickHouseClient, ClickHouseSettings } from '@clickhouse/client';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Codec } from '../../schemas/codec.ts';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import { conflictRow, recordIdRow } from '../../schemas/clickhouse/rows-identity.ts';
import type { CellValue } from '../../schemas/clickhouse/rows-write.ts';
import { CONFLICTS, insertColumns, RECORD_IDS, type TableSpec } from '../../schemas/clickhouse/tables.ts';
import type { Topics } from '../lib/config.ts';
import { errorMessage, TrustfoldError } from '../lib/errors.ts';
import { sendToDeadLetter } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import type { HashedLeaf } from '../../schemas/audit-log/leaf-batch.ts';
import { blockToken, byMonths, dedupToken, judgeWriteOnce, MAX_PARTITIONS_PER_INSERT, nextOffset, pick, topicRole, type EncodedRow, type MappedBatch, type Rejected, type TableRows } from './batch.ts';
import { inlineDecoder, threadDecoderPool, type BatchDecoder } from './decode-thread.ts';
import { lookupStoredCopies } from './write-once.ts';
import { createWriteOnceFilter, DEFAULT_FILTER_MAX_BYTES, FilterOverBudget, filterSupported, type CatchUp, type WriteOnceFilter } from './write-once-filter.ts';
import { createBlockWriter } from './write.ts';

export type InsertedBlock = { table: string; topic: string; partition: number; rows: number; token: string };

/**
 * What the write-once judgement made of an accepted record: `stored` (the
 * first copy, inserted now), `duplicate` (same content as the stored copy),
 * `conflict` (other content; kept in the conflicts table), `replay` (these very
 * coordinates were stored before: a re-read after a crash or a rebalance).
 */
export type StoredOutcome = 'stored' | 'duplicate' | 'conflict' | 'replay';
/** An accepted record as the hook sees it: its log leaf (hashed by the decoding threads) and what write-once made of it. */
export type StoredRecord = HashedLeaf & { outcome: StoredOutcome };
/**
 * One partition batch as the sink accepted it: every record that decoded, met
 * the contract and was not refused by ClickHouse, in offset order, as its
 * leaf of the tamper-evident log (docs/audit-log.md, "The leaf rule") —
 * whatever its outcome, so a re-read after a crash hands over the same
 * records as the first read. Dead letters are not in it.
 */
export type StoredBatch = { topic: string; partition: number; records: StoredRecord[] };

export type AuditSinkDeps = {
  kafka: Kafka;
  /** The sink's own client: one chdb connection runs one operation at a time, so readers need another. */
  clickhouse: ClickHouseClient;
  database: string;
  /** Set when the tables are Distributed over a cluster: inserts then wait for the shards. */
  cluster?: string | undefined;
  topics: Topics;
  groupId: string;
  registry: Registry;
  log: Logger;
  /**
   * Decode with this codec on the main thread (its own zod validation on
   * every record). Default: ./decode.ts's decoder (Avro, then only the checks
   * Avro cannot make) in a thread of its own (`decodeThread`).
   */
  codec?: Codec;
  /** Decode in worker threads (default true); false: the same decoder on the main thread. */
  decodeThread?: boolean;
  /** How many decoding threads (default DEFAULT_DECODE_THREADS). */
  decodeThreads?: number;
  /** Messages per decode request: a partition batch is decoded in chunks, each stored while the next one decodes. */
  decodeChunk?: number;
  /** Which topics to read; default decisions, signals and session trust. */
  subscribe?: readonly string[];
  now?: () => Date;
  fromBeginning?: boolean;
  consumer?: { maxBytesPerPartition?: number; maxBytes?: number; maxWaitTimeInMs?: number; partitionsConsumedConcurrently?: number; sessionTimeoutMs?: number };
  /** Called after a block is durable in ClickHouse and before its offset is committed (tests crash here). */
  afterInsert?: (block: InsertedBlock) => void | Promise<void>;
  /**
   * Called once per partition batch after all of it is durable (rows, index,
   * conflicts) and before its dead letters and its offset commit: the
   * tamper-evident log's writer appends here (docs/audit-log.md). A throw
   * fails the batch like a failed insert: nothing is committed and the batch
   * is read again, so the hook sees every accepted record at least once.
   */
  onStored?: (batch: StoredBatch) => Promise<void>;
  /**
   * Mirror the write-once index in memory (./write-once-filter.ts) so only ids
   * it may hold are looked up. Default true; it stays off where record_ids is
   * not a plain MergeTree on one server (a cluster, a replicated table).
   */
  writeOnceFilter?: boolean;
  /**
   * A connection of the filter's own: the index is then read beside consuming
   * (batches are looked up until it is ready) rather than before the sink
   * joins its group, and the catch-ups run on it. The embedded engine's
   * connection runs one operation at a time, so this must be another one.
   */
  indexClient?: ClickHouseClient;
  /** The filter's memory budget (default DEFAULT_FILTER_MAX_BYTES); a filter that would outgrow it is dropped. */
  writeOnceFilterMaxBytes?: number;
  /** Called at every group join with the partitions this sink now owns (a partition may have moved away and back). */
  onAssigned?: (assignment: Readonly<Record<string, readonly number[]>>) => void;
};

/**
 * Partition batches handled at once. Decoding runs in the decoding thread and
 * the insert on the engine's own threads, so while one partition's block is
 * being written the next one is decoded; inserts still queue on the one
 * writer connection, each with its own partition's token and commit, so
 * exactly-once is unchanged.
 */
export const DEFAULT_PARTITIONS_CONCURRENTLY = 4;

/** Default decoding threads: two, so that decoding keeps ahead of the engine's insert on a 2-core host. */
export const DEFAULT_DECODE_THREADS = 2;

/** Default messages per decode request (`decodeChunk`). */
export const DEFAULT_DECODE_CHUNK = 8192;

/**
 * Runs `work` while heartbeating the group every `everyMs`: a long insert or
 * decode must not let the session expire (kafkajs heartbeats only when asked).
 * A failed heartbeat here is left to the next explicit one, which throws it
 * into the batch (a rebalance then stops the batch before its commit).
 */
const keepAlive = async <T>(heartbeat: () => Promise<void>, everyMs: number, work: Promise<T>): Promise<T> => {
  const timer = setInterval(() => void heartbeat().catch(() => undefined), everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
};

export type AuditSink = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True between a successful start() and stop(), unless the consumer crashed. */
  isRunning(): boolean;
};

type Metrics = {
  rows: Counter<'table'>;
  rowsPerSecond: Gauge;
  deadLetters: Counter<'topic' | 'reason'>;
  lag: Gauge<'topic' | 'partition'>;
  insertSeconds: Histogram<'table'>;
  lookupSeconds: Histogram;
  decodeWaitSeconds: Histogram;
  batches: Counter<'topic'>;
  duplicates: Counter<'table'>;
  conflicts: Counter<'table'>;
  replays: Counter<'table'>;
  lookupIds: Counter;
  filterKeys: Gauge;
  filterBytes: Gauge;
  filterCatchUpRows: Counter;
  filterCatchUpSeconds: Histogram;
};

const metric = <T>(registry: Registry, name: string, make: () => T): T =>
  (registry.getSingleMetric(name) as T | undefined) ?? make();

const createMetrics = (registry: Registry): Metrics => ({
  rows: metric(registry, 'trustfold_audit_sink_rows_total', () =>
    new Counter({ name: 'trustfold_audit_sink_rows_total', help: 'Rows inserted into ClickHouse', labelNames: ['table'], registers: [registry] })),
  rowsPerSecond: metric(registry, 'trustfold_audit_sink_rows_per_second', () =>
    new Gauge({ name: 'trustfold_audit_sink_rows_per_second', help: 'Rows inserted per second over the last 10 s', registers: [registry] })),
  deadLetters: metric(registry, 'trustfold_audit_sink_dead_letters_total', () =>
    new Counter({ name: 'trustfold_audit_sink_dead_letters_total', help: 'Messages sent to the dead-letter topic', labelNames: ['topic', 'reason'], registers: [registry] })),
  lag: metric(registry, 'trustfold_audit_sink_consumer_lag', () =>
    new Gauge({ name: 'trustfold_audit_sink_consumer_lag', help: 'Messages behind the high watermark after the last batch', labelNames: ['topic', 'partition'], registers: [registry] })),
  insertSeconds: metric(registry, 'trustfold_audit_sink_insert_seconds', () =>
    new Histogram({ name: 'trustfold_audit_sink_insert_seconds', help: 'ClickHouse insert duration', labelNames: ['table'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] })),
  lookupSeconds: metric(registry, 'trustfold_audit_sink_lookup_seconds', () =>
    new Histogram({ name: 'trustfold_audit_sink_lookup_seconds', help: 'Write-once index lookup duration, per table of a chunk', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] })),
  decodeWaitSeconds: metric(registry, 'trustfold_audit_sink_decode_wait_seconds', () =>
    new Histogram({ name: 'trustfold_audit_sink_decode_wait_seconds', help: 'Time the sink waited for a decoded chunk (decoding not hidden behind inserts)', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] })),
  batches: metric(registry, 'trustfold_audit_sink_batches_total', () =>
    new Counter({ name: 'trustfold_audit_sink_batches_total', help: 'Kafka batches handled', labelNames: ['topic'], registers: [registry] })),
  duplicates: metric(registry, 'trustfold_audit_sink_duplicates_total', () =>
    new Counter({ name: 'trustfold_audit_sink_duplicates_total', help: 'Later copies of a stored id with the same content (dropped)', labelNames: ['table'], registers: [registry] })),
  conflicts: metric(registry, 'trustfold_audit_sink_conflicts_total', () =>
    new Counter({ name: 'trustfold_audit_sink_conflicts_total', help: 'Later copies of a stored id with other content (kept as evidence, never as the record)', labelNames: ['table'], registers: [registry] })),
  replays: metric(registry, 'trustfold_audit_sink_replays_total', () =>
    new Counter({ name: 'trustfold_audit_sink_replays_total', help: 'Records read again after a crash or rebalance, already stored (skipped)', labelNames: ['table'], registers: [registry] })),
  lookupIds: metric(registry, 'trustfold_audit_sink_lookup_ids_total', () =>
    new Counter({ name: 'trustfold_audit_sink_lookup_ids_total', help: 'Ids looked up in the write-once index (with the filter on: only those it may hold)', registers: [registry] })),
  filterKeys: metric(registry, 'trustfold_audit_sink_filter_keys', () =>
    new Gauge({ name: 'trustfold_audit_sink_filter_keys', help: 'Index rows added to the in-memory write-once filter (a row read again counts again)', registers: [registry] })),
  filterBytes: metric(registry, 'trustfold_audit_sink_filter_bytes', () =>
    new Gauge({ name: 'trustfold_audit_sink_filter_bytes', help: 'Memory of the in-memory write-once filter', registers: [registry] })),
  filterCatchUpSeconds: metric(registry, 'trustfold_audit_sink_filter_catch_up_seconds', () =>
    new Histogram({ name: 'trustfold_audit_sink_filter_catch_up_seconds', help: 'Reading the index rows made visible since the last catch-up, per chunk', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] })),
  filterCatchUpRows: metric(registry, 'trustfold_audit_sink_filter_catch_up_rows_total', () =>
    new Counter({ name: 'trustfold_audit_sink_filter_catch_up_rows_total', help: 'Index rows the filter read back from record_ids (every instance\'s, including this one\'s)', registers: [registry] })),
});

/** Rows the decoding threads encoded (a table's rows are all one kind or all the other). */
const isEncoded = (values: readonly CellValue[][] | readonly EncodedRow[]): values is readonly EncodedRow[] => typeof values[0] === 'string';

/**
 * One insert of one table's rows. Rows as cells (the index and the evidence
 * tables) go through the client's insert, which JSON-encodes each; rows the
 * decoding threads already encoded (EncodedRow, the record tables) are joined
 * into the very body that insert would send for their cells — its `INSERT …
 * FORMAT JSONCompactEachRow` statement, one line per row — and sent with exec:
 * the client's insert takes JSON formats only as values to encode (a stream
 * of them in object mode included), never as text. Over HTTP both send the
 * statement in the URL and the rows as the body; the embedded engine joins
 * both to one statement; a refused row fails either way with the same
 * ClickHouseError (test/integration/audit-sink-insert.test.ts).
 */
export const insertRows = async (
  clickhouse: ClickHouseClient,
  database: string,
  table: TableSpec,
  values: readonly CellValue[][] | readonly EncodedRow[],
  clickhouse_settings: ClickHouseSettings,
): Promise<void> => {
  if (values.length === 0) return;
  const columns = insertColumns(table) as [string, ...string[]];
  if (isEncoded(values)) {
    const r = await clickhouse.exec({
      query: `INSERT INTO ${qualified(database, table.name)} (${columns.join(', ')}) FORMAT JSONCompactEachRow`,
      values: Readable.from([`${values.join('\n')}\n`]),
      clickhouse_settings,
    });
    // Nothing useful comes back; read it to the end so the connection is free again (as insert does).
    r.stream.resume();
    await finished(r.stream);
    return;
  }
  await clickhouse.insert({ table: qualified(database, table.name), values: values as CellValue[][], columns, format: 'JSONCompactEachRow', clickhouse_settings });
};

/** Runs tasks one after another: the write-once check and the inserts it decides must not interleave. */
const createSerial = () => {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>): Promise<T> => {
    const run = tail.then(task, task);
    tail = run.catch(() => undefined);
    return run;
  };
};

/** Rows per second over a sliding window, from timestamps of completed inserts. */
const createRateWindow = (windowMs: number) => {
  const samples: { at: number; rows: number }[] = [];
  return (at: number, rows: number): number => {
    samples.push({ at, rows });
    while (samples.length > 0 && (samples[0]?.at ?? at) < at - windowMs) samples.shift();
    const total = samples.reduce((s, x) => s + x.rows, 0);
    return total / (windowMs / 1000);
  };
};

export const createAuditSink = (deps: AuditSinkDeps): AuditSink => {
  const decodeChunk = Math.max(1, deps.decodeChunk ?? DEFAULT_DECODE_CHUNK);
  const sessionTimeout = deps.consumer?.sessionTimeoutMs ?? 10_000;
  const heartbeatInterval = Math.max(100, Math.floor(sessionTimeout / 5));
  let decoder: BatchDecoder | undefined;
  const now = deps.now ?? (() => new Date());
  const metrics = createMetrics(deps.registry);
  const rate = createRateWindow(10_000);
  const serial = createSerial();
  const topics = deps.subscribe ?? [deps.topics.decisions, deps.topics.signals, deps.topics.sessionTrust];
  const insertSettings = deps.cluster !== undefined ? { distributed_foreground_insert: 1 } : {};
  let consumer: Consumer | undefined;
  let stopping = false;
  let producer: Producer | undefined;
  let running = false;
  let filter: WriteOnceFilter | undefined;
  let loading: Promise<void> | undefined;

  /** Brings the filter up to the index: every instance's rows visible now (nothing to do with the filter off). */
  const catchUp = async (): Promise<void> => {
    if (filter === undefined) return;
    const end = metrics.filterCatchUpSeconds.startTimer();
    try {
      counted(filter, await filter.catchUp());
    } catch (e) {
      if (!(e instanceof FilterOverBudget)) throw e;
      dropFilter(e);
    } finally {
      end();
    }
  };

  /** A catch-up's rows, and the filter's size after it, in the metrics. */
  const counted = (f: WriteOnceFilter, c: CatchUp): void => {
    metrics.filterCatchUpRows.inc(c.rows);
    metrics.filterKeys.set(f.keys());
    metrics.filterBytes.set(f.bytes());
  };

  /** A filter past its budget is let go: from now on every id is looked up, as with the filter off. */
  const dropFilter = (e: FilterOverBudget): void => {
    filter = undefined;
    metrics.filterKeys.set(0);
    metrics.filterBytes.set(0);
    deps.log.warn({ keys: e.keys, bytes: e.bytes, budget: e.budget }, 'audit sink: write-once filter off, past its memory budget (TRUSTFOLD_AUDIT_WRITE_ONCE_FILTER_MB); every id is looked up in record_ids');
  };

  const insertValues = async (table: TableSpec, values: readonly CellValue[][] | readonly EncodedRow[], token: string): Promise<void> => {
    if (values.length === 0) return;
    const end = metrics.insertSeconds.startTimer({ table: table.name });
    await insertRows(deps.clickhouse, deps.database, table, values, {
      insert_deduplicate: 1,
      insert_deduplication_token: token,
      max_partitions_per_insert_block: String(MAX_PARTITIONS_PER_INSERT),
      ...insertSettings,
    });
    end();
  };

  /** Bookkeeping inserts (index, evidence): one month or one small block, so any failure is the server's. */
  const insertOrRetry = async (table: TableSpec, values: CellValue[][], token: string): Promise<void> => {
    if (values.length === 0) return;
    try {
      await insertValues(table, values, token);
    } catch (e) {
      throw new TrustfoldError('clickhouse_unavailable', `insert into ${table.name} failed: ${errorMessage(e)}`, true, { cause: e });
    }
  };

  const healthy = async (): Promise<boolean> => {
    try {
      await (await deps.clickhouse.query({ query: 'SELECT 1', format: 'JSONEachRow' })).json();
      return true;
    } catch {
      return false;
    }
  };

  /**
   * One table's rows of one partition batch, write-once: the index says which
   * ids were stored before; only first copies are inserted, in blocks of a
   * bounded number of months (the rows, then their index entries, so a crash in between re-inserts an
   * identical row instead of losing one); conflicting copies go to the
   * evidence table. Returns the rows inserted.
   */
  const storeWriteOnce = async (rows: TableRows, topic: string, partition: number, rejected: Rejected[], heartbeat: () => Promise<void>, outcomes: Map<string, StoredOutcome>): Promise<number> => {
    await catchUp();
    const endLookup = metrics.lookupSeconds.startTimer();
    const asked = filter === undefined ? rows.ids : filter.candidates(rows.ids);
    metrics.lookupIds.inc(asked.length);
    const stored = await lookupStoredCopies(deps.clickhouse, deps.database, asked);
    endLookup();
    const verdict = judgeWriteOnce(rows, { topic, partition }, stored);
    const mark = (indexes: readonly number[], outcome: StoredOutcome): void => {
      for (const i of indexes) outcomes.set(rows.offsets[i] ?? '', outcome);
    };
    mark(verdict.duplicates, 'duplicate');
    mark(verdict.replays, 'replay');
    mark(verdict.conflicts.map((c) => c.index), 'conflict');
    const writer = createBlockWriter({
      insert: (block, token) => insertValues(block.table, block.rows, token),
      healthy,
      token: (block) => blockToken(block, topic, partition),
    });
    let inserted = 0;
    for (const { rows: block } of byMonths(pick(rows, verdict.fresh))) {
      const r = await writer.write(block);
      for (const x of r.rejected) rejected.push({ offset: x.offset, key: null, value: null, reason: 'clickhouse_rejected', message: x.message });
      const done = pick(block, block.offsets.flatMap((o, i) => (r.inserted.has(o) ? [i] : [])));
      for (const o of done.offsets) outcomes.set(o, 'stored');
      inserted += done.rows.length;
      await insertOrRetry(
        RECORD_IDS,
        done.ids.map((id, i) => recordIdRow(id, { topic, partition, offset: done.offsets[i] ?? '' })),
        blockToken({ ...done, table: RECORD_IDS }, topic, partition),
      );
      await heartbeat();
    }
    const conflicts = pick(rows, verdict.conflicts.map((c) => c.index));
    await insertOrRetry(
      CONFLICTS,
      verdict.conflicts.map((c, i) => {
        const id = conflicts.ids[i];
        if (id === undefined) throw new TrustfoldError('internal', 'conflict without its record', false);
        return conflictRow(id, { topic, partition, offset: conflicts.offsets[i] ?? '' }, c.first);
      }),
      blockToken({ ...conflicts, table: CONFLICTS }, topic, partition),
    );
    metrics.duplicates.inc({ table: rows.table.name }, verdict.duplicates.length);
    metrics.conflicts.inc({ table: rows.table.name }, verdict.conflicts.length);
    metrics.replays.inc({ table: rows.table.name }, verdict.replays.length);
    for (const c of verdict.conflicts) {
      deps.log.warn(
        { table: rows.table.name, topic, partition, offset: rows.offsets[c.index], key: rows.ids[c.index]?.key, first: c.first.kafka },
        'audit sink: a later copy of a stored id differs; kept as evidence, not as the record',
      );
    }
    return inserted;
  };

  /** Reads the whole index into a new filter, if record_ids allows one (./write-once-filter.ts); undefined: the filter stays off. */
  const loadFilter = async (client: ClickHouseClient): Promise<WriteOnceFilter | undefined> => {
    const support = await filterSupported(client, deps.database, deps.cluster);
    if (!support.ok) {
      deps.log.info({ why: support.why }, 'audit sink: write-once filter off; every id is looked up in record_ids');
      return undefined;
    }
    const f = createWriteOnceFilter(client, deps.database, { maxBytes: deps.writeOnceFilterMaxBytes ?? DEFAULT_FILTER_MAX_BYTES });
    const c = await f.catchUp((n) => deps.log.info({ rows: n }, 'audit sink: reading the write-once index into memory')).catch((e: unknown) => {
      if (!(e instanceof FilterOverBudget)) throw e;
      dropFilter(e);
      return undefined;
    });
    if (c === undefined) return undefined;
    counted(f, c);
    deps.log.info({ rows: c.rows, ms: Math.round(c.ms), bytes: f.bytes(), watermark: c.watermark }, 'audit sink: write-once filter ready');
    return f;
  };

  /**
   * The filter, before the first batch or beside consuming. With `indexClient`
   * (a connection of its own) the index is read while batches are judged by
   * lookups, and the filter is put in place through the serial queue — between
   * two chunks, never inside one, so the next chunk's catch-up brings it from
   * the load's snapshot to the present before it is asked anything.
   */
  const startFilter = async (): Promise<void> => {
    if (deps.indexClient === undefined) {
      filter = await loadFilter(deps.clickhouse);
      return;
    }
    loading ??= loadFilter(deps.indexClient)
      .then((f) => serial(async () => {
        filter = f;
      }))
      .catch((e: unknown) => deps.log.warn({ err: e }, 'audit sink: the write-once index could not be read; every id is looked up until the next start'))
      .finally(() => {
        loading = undefined;
      });
  };

  const handleBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> => {
    const { topic, partition, messages } = batch;
    const lastMessage = messages[messages.length - 1];
    if (lastMessage === undefined) return;
    const role = topicRole(deps.topics, topic);
    const originals = new Map(messages.map((m) => [m.offset, m]));
    const rejected: Rejected[] = [];
    const leaves: HashedLeaf[] = [];
    const outcomes = new Map<string, StoredOutcome>();
    // Every chunk is asked for at once: the decoding thread answers in order, so chunk k+1 decodes while chunk k is stored.
    const chunks: Promise<MappedBatch>[] = [];
    if (role === undefined) {
      chunks.push(Promise.resolve({ tables: [], tombstones: 0, leaves: [], rejected: messages.map((m): Rejected => ({ offset: m.offset, key: m.key, value: m.value, reason: 'wrong_topic', message: `no audit role for topic ${topic}` })) }));
    } else {
      const d = decoder ?? (decoder = inlineDecoder(deps.codec));
      for (let i = 0; i < messages.length; i += decodeChunk) {
        const part = messages.slice(i, i + decodeChunk).map((m) => ({ offset: m.offset, key: m.key, value: m.value }));
        chunks.push(d.decode(role, topic, partition, part, deps.onStored !== undefined));
      }
    }
    // A failed chunk fails the batch (read again); the chunks after it must not be left as unhandled rejections.
    for (const c of chunks) c.catch(() => undefined);
    for (const chunk of chunks) {
      const endWait = metrics.decodeWaitSeconds.startTimer();
      const mapped = await keepAlive(heartbeat, heartbeatInterval, chunk);
      endWait();
      rejected.push(...mapped.rejected);
      leaves.push(...mapped.leaves);
      for (const rows of mapped.tables) {
        const inserted = await keepAlive(heartbeat, heartbeatInterval, serial(() => storeWriteOnce(rows, topic, partition, rejected, heartbeat, outcomes)));
        metrics.rows.inc({ table: rows.table.name }, inserted);
        metrics.rowsPerSecond.set(rate(Date.now(), inserted));
        const token = dedupToken(rows.table.name, topic, partition, rows.offsets[0] ?? '', rows.offsets[rows.offsets.length - 1] ?? '');
        await deps.afterInsert?.({ table: rows.table.name, topic, partition, rows: inserted, token });
        await heartbeat();
      }
    }
    if (deps.onStored !== undefined) {
      // A record ClickHouse refused has no outcome: it is a dead letter, not a stored record.
      const records = leaves.flatMap((l): StoredRecord[] => {
        const outcome = outcomes.get(l.offset);
        return outcome === undefined ? [] : [{ ...l, outcome }];
      });
      await keepAlive(heartbeat, heartbeatInterval, deps.onStored({ topic, partition, records }));
      await heartbeat();
    }
    if (rejected.length > 0) {
      if (producer === undefined) throw new TrustfoldError('internal', 'dead-letter producer not connected', true);
      for (const r of rejected) {
        const original = originals.get(r.offset);
        await sendToDeadLetter(
          producer,
          deps.topics.deadLetter,
          { topic, partition, offset: r.offset, key: original?.key ?? r.key, value: original?.value ?? r.value, reason: r.reason, message: r.message, consumer: deps.groupId },
          now(),
        );
        metrics.deadLetters.inc({ topic, reason: r.reason });
        deps.log.warn({ topic, partition, offset: r.offset, reason: r.reason, message: r.message }, 'audit sink: dead-lettered');
      }
    }
    // Offsets are committed only now: every row of the batch is in ClickHouse or in the dead-letter topic.
    resolveOffset(lastMessage.offset);
    if (isRunning() && !isStale()) {
      await consumer?.commitOffsets([{ topic, partition, offset: nextOffset(lastMessage.offset) }]);
    }
    metrics.batches.inc({ topic });
    const lag = Number(BigInt(batch.highWatermark) - BigInt(nextOffset(lastMessage.offset)));
    metrics.lag.set({ topic, partition: String(partition) }, Math.max(0, lag));
    await heartbeat();
  };

  return {
    start: async () => {
      stopping = false;
      if (running) return;
      producer = deps.kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      if (deps.writeOnceFilter !== false && filter === undefined) await startFilter();
      decoder ??= deps.codec !== undefined || deps.decodeThread === false ? inlineDecoder(deps.codec) : threadDecoderPool(deps.log, deps.decodeThreads ?? DEFAULT_DECODE_THREADS);
      const c = deps.kafka.consumer({
        groupId: deps.groupId,
        maxBytesPerPartition: deps.consumer?.maxBytesPerPartition ?? 8 * 1024 * 1024,
        maxBytes: deps.consumer?.maxBytes ?? 32 * 1024 * 1024,
        maxWaitTimeInMs: deps.consumer?.maxWaitTimeInMs ?? 200,
        // A killed sink holds its partitions until its session expires; 10 s
        // (kafkajs: 30 s) bounds how long a replacement waits. A block insert
        // heartbeats when it completes, well inside that.
        sessionTimeout,
        rebalanceTimeout: Math.max(sessionTimeout, 10_000),
        heartbeatInterval,
        allowAutoTopicCreation: false,
      });
      consumer = c;
      c.on(c.events.GROUP_JOIN, (ev) => deps.onAssigned?.(ev.payload.memberAssignment));
      c.on(c.events.CRASH, (ev) => {
        running = false;
        deps.log.error({ err: ev.payload.error, restart: ev.payload.restart }, 'audit sink: consumer crashed');
        // kafkajs restarts the consumer itself, unless stop() has begun.
        if (ev.payload.restart && !stopping) running = true;
      });
      await c.connect();
      await c.subscribe({ topics: [...topics], fromBeginning: deps.fromBeginning ?? true });
      await c.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: deps.consumer?.partitionsConsumedConcurrently ?? DEFAULT_PARTITIONS_CONCURRENTLY,
        eachBatch: handleBatch,
      });
      running = true;
      deps.log.info({ topics, groupId: deps.groupId }, 'audit sink: consuming');
    },
    stop: async () => {
      running = false;
      stopping = true;
      await consumer?.disconnect();
      await producer?.disconnect();
      await decoder?.close();
      consumer = undefined;
      producer = undefined;
      decoder = undefined;
    },
    isRunning: () => running,
  };
};
