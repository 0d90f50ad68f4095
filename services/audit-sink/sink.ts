// Kafka → ClickHouse. Per partition batch: decode and map (./batch.ts), insert
// each table's rows with a dedup token made of the batch's offset range, send
// poison to the dead-letter topic, and only then commit the offset. A crash
// anywhere before the commit re-reads the same batch; its insert carries the
// same token and ClickHouse drops it, and ReplacingMergeTree plus the query
// side's dedup cover any re-read whose batch boundaries moved.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import { insertColumns } from '../../schemas/clickhouse/tables.ts';
import type { Topics } from '../lib/config.ts';
import { errorMessage, TrustfoldError } from '../lib/errors.ts';
import { sendToDeadLetter } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { dedupToken, mapBatch, nextOffset, topicRole, type Rejected, type TableRows } from './batch.ts';

export type InsertedBlock = { table: string; topic: string; partition: number; rows: number; token: string };

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
  codec?: Codec;
  /** Which topics to read; default decisions, signals and session trust. */
  subscribe?: readonly string[];
  now?: () => Date;
  fromBeginning?: boolean;
  consumer?: { maxBytesPerPartition?: number; maxBytes?: number; maxWaitTimeInMs?: number; partitionsConsumedConcurrently?: number; sessionTimeoutMs?: number };
  /** Called after a block is durable in ClickHouse and before its offset is committed (tests crash here). */
  afterInsert?: (block: InsertedBlock) => void | Promise<void>;
};

/**
 * Partition batches handled at once. Decoding is JavaScript on the main
 * thread and the insert runs on the engine's own threads, so while one
 * partition's block is being written the next one is decoded; inserts still
 * queue on the one writer connection, each with its own partition's token and
 * commit, so exactly-once is unchanged.
 */
export const DEFAULT_PARTITIONS_CONCURRENTLY = 4;

export type AuditSink = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True between a successful start() and stop(), unless the consumer crashed. */
  isRunning(): boolean;
};

// ClickHouse error codes that mean "this data is bad", not "try again later".
const DATA_ERROR_CODES = new Set([6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 241, 376, 1000]);

const clickhouseCode = (e: unknown): number | undefined => {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const n = Number((e as { code: unknown }).code);
    if (Number.isInteger(n)) return n;
  }
  const m = /Code: (\d+)/.exec(errorMessage(e));
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
};

export const isDataError = (e: unknown): boolean => {
  const code = clickhouseCode(e);
  return code !== undefined && DATA_ERROR_CODES.has(code);
};

type Metrics = {
  rows: Counter<'table'>;
  rowsPerSecond: Gauge;
  deadLetters: Counter<'topic' | 'reason'>;
  lag: Gauge<'topic' | 'partition'>;
  insertSeconds: Histogram<'table'>;
  batches: Counter<'topic'>;
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
  batches: metric(registry, 'trustfold_audit_sink_batches_total', () =>
    new Counter({ name: 'trustfold_audit_sink_batches_total', help: 'Kafka batches handled', labelNames: ['topic'], registers: [registry] })),
});

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
  const codec = deps.codec ?? createCodec();
  const now = deps.now ?? (() => new Date());
  const metrics = createMetrics(deps.registry);
  const rate = createRateWindow(10_000);
  const topics = deps.subscribe ?? [deps.topics.decisions, deps.topics.signals, deps.topics.sessionTrust];
  const insertSettings = deps.cluster !== undefined ? { distributed_foreground_insert: 1 } : {};
  let consumer: Consumer | undefined;
  let producer: Producer | undefined;
  let running = false;

  const insertBlock = async (rows: TableRows, token: string): Promise<void> => {
    const end = metrics.insertSeconds.startTimer({ table: rows.table.name });
    await deps.clickhouse.insert({
      table: qualified(deps.database, rows.table.name),
      values: rows.rows,
      columns: insertColumns(rows.table) as [string, ...string[]],
      format: 'JSONCompactEachRow',
      clickhouse_settings: { insert_deduplicate: 1, insert_deduplication_token: token, ...insertSettings },
    });
    end();
  };

  /**
   * Inserts a table's rows. When ClickHouse rejects the data itself, halves
   * the block until the bad rows stand alone; those become dead letters and
   * every good row is still written. Sub-blocks get tokens of their own
   * offset ranges, so a replay splits the same way and dedups the same way.
   */
  const insertOrIsolate = async (rows: TableRows, topic: string, partition: number, rejected: Rejected[]): Promise<number> => {
    const first = rows.offsets[0];
    const last = rows.offsets[rows.offsets.length - 1];
    if (first === undefined || last === undefined) return 0;
    const token = dedupToken(rows.table.name, topic, partition, first, last);
    try {
      await insertBlock(rows, token);
      return rows.rows.length;
    } catch (e) {
      if (!isDataError(e)) {
        throw new TrustfoldError('clickhouse_unavailable', `insert into ${rows.table.name} failed: ${errorMessage(e)}`, true, { cause: e });
      }
      if (rows.rows.length === 1) {
        rejected.push({ offset: first, key: null, value: null, reason: 'clickhouse_rejected', message: errorMessage(e) });
        return 0;
      }
      const mid = Math.ceil(rows.rows.length / 2);
      const left = { table: rows.table, rows: rows.rows.slice(0, mid), offsets: rows.offsets.slice(0, mid) };
      const right = { table: rows.table, rows: rows.rows.slice(mid), offsets: rows.offsets.slice(mid) };
      return (await insertOrIsolate(left, topic, partition, rejected)) + (await insertOrIsolate(right, topic, partition, rejected));
    }
  };

  const handleBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> => {
    const { topic, partition, messages } = batch;
    const lastMessage = messages[messages.length - 1];
    if (lastMessage === undefined) return;
    const role = topicRole(deps.topics, topic);
    const originals = new Map(messages.map((m) => [m.offset, m]));
    const mapped =
      role === undefined
        ? { tables: [], tombstones: 0, rejected: messages.map((m): Rejected => ({ offset: m.offset, key: m.key, value: m.value, reason: 'wrong_topic', message: `no audit role for topic ${topic}` })) }
        : mapBatch(codec, role, topic, partition, messages.map((m) => ({ offset: m.offset, key: m.key, value: m.value })));

    const rejected = [...mapped.rejected];
    for (const rows of mapped.tables) {
      const inserted = await insertOrIsolate(rows, topic, partition, rejected);
      metrics.rows.inc({ table: rows.table.name }, inserted);
      metrics.rowsPerSecond.set(rate(Date.now(), inserted));
      const token = dedupToken(rows.table.name, topic, partition, rows.offsets[0] ?? '', rows.offsets[rows.offsets.length - 1] ?? '');
      await deps.afterInsert?.({ table: rows.table.name, topic, partition, rows: inserted, token });
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
      if (running) return;
      producer = deps.kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const sessionTimeout = deps.consumer?.sessionTimeoutMs ?? 10_000;
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
        heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 5)),
        allowAutoTopicCreation: false,
      });
      consumer = c;
      c.on(c.events.CRASH, (ev) => {
        running = false;
        deps.log.error({ err: ev.payload.error, restart: ev.payload.restart }, 'audit sink: consumer crashed');
        if (ev.payload.restart) running = true;
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
      await consumer?.disconnect();
      await producer?.disconnect();
      consumer = undefined;
      producer = undefined;
    },
    isRunning: () => running,
  };
};
