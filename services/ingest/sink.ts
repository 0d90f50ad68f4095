// The durable edge of ingest: records go to Kafka with acks=all from an
// idempotent producer, and `send` resolves only once Kafka has acknowledged
// every record of the call. Nothing is reported accepted that was not acked.
//
// Concurrent requests are group-committed: while one produce request is in
// flight, the records of newer HTTP requests queue up and leave together in
// the next one. kafkajs's idempotent producer serialises requests per broker
// anyway, so coalescing is what turns many small requests into throughput.
//
// Several producers ("lanes") can run side by side to get more than one
// produce request in flight. A record's lane is fixed by its key, with the
// same murmur2 hash that picks its partition (lane = hash mod lanes,
// partition = hash mod partitions): with a lane count that divides the
// partition count each lane owns the partitions ≡ lane (mod lanes), and in any
// case every key — every session — has exactly one lane, so its events leave
// in order, one request at a time, from one idempotent producer.
//
// Failure handling is deliberately blunt. After any failed or timed-out
// produce the producer is retired and a fresh one (new producer id, sequences
// from zero) takes over, so a batch whose fate is unknown can never make the
// broker treat a *different* later batch as a duplicate of it. Chunks whose
// caller is still within its deadline are re-sent (at-least-once; consumers
// dedupe by event_id); callers past their deadline get a retriable error,
// which the HTTP layer turns into 503 + Retry-After.
import { CompressionTypes, type ICustomPartitioner, type IHeaders, type Kafka, type TopicMessages } from 'kafkajs';
import { TrustfoldError, errorMessage } from '../lib/errors.ts';
import { chunkBySize, messageSize, retiringProducer } from '../lib/kafka.ts';
import { murmur2 } from './murmur2.ts';

/** `hash`: murmur2(key), when the caller computed it already (it picks the lane). */
export type OutboundRecord = { topic: string; key: string; value: Buffer; headers?: IHeaders; hash?: number };

export type EventSink = {
  /** Resolves once Kafka acknowledged every record (acks=all); rejects with a retriable TrustfoldError otherwise. */
  send(records: readonly OutboundRecord[]): Promise<void>;
  /** Whether the Kafka cluster answers a metadata request within 1.5 s. */
  ready(): Promise<boolean>;
  /** Drains what is queued (bounded by the produce timeout) and disconnects. */
  close(): Promise<void>;
};

export type BatchOutcome = { records: number; bytes: number; seconds: number; ok: boolean };

export type KafkaSinkOptions = {
  kafka: Kafka;
  /** How long one `send` may take before it fails with `kafka_timeout` (config.http.produceTimeoutMs). */
  timeoutMs: number;
  /**
   * Upper bound of one produce request's payload. Kafka's default
   * message.max.bytes (≈1 MiB) applies per partition batch; 900 kB total keeps
   * even a single-partition batch under it.
   */
  maxBatchBytes?: number;
  /** Pause before re-sending after a failed produce. */
  retryBackoffMs?: number;
  /**
   * Idempotent producers working in parallel, each with one request in flight
   * (default 1). Pick a divisor of the topics' partition count so each
   * producer owns whole partitions.
   */
  producers?: number;
  onBatch?: (outcome: BatchOutcome) => void;
};

type Item = {
  deadline: number;
  pending: number;
  settled: boolean;
  resolve: () => void;
  reject: (e: TrustfoldError) => void;
  timer: NodeJS.Timeout;
};
type Chunk = { item: Item; records: readonly OutboundRecord[]; bytes: number };

const delay = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

export { murmur2 } from './murmur2.ts';

const toPositive = (x: number): number => x & 0x7fffffff;

/** kafkajs's DefaultPartitioner for keyed records, with the fast hash. */
export const keyPartitioner: ICustomPartitioner = () => ({ partitionMetadata, message }) => {
  if (message.partition !== null && message.partition !== undefined) return message.partition;
  if (message.key === null || message.key === undefined) throw new Error('ingest records always carry a key');
  const key = Buffer.isBuffer(message.key) ? message.key.toString() : message.key;
  return toPositive(murmur2(key)) % partitionMetadata.length;
};

type Lane = {
  queue: Chunk[];
  pump(): Promise<void>;
  busy(): boolean;
  onDrained(d: () => void): void;
  disconnect(): Promise<void>;
};

export const createKafkaSink = (opts: KafkaSinkOptions): EventSink => {
  const maxBatchBytes = opts.maxBatchBytes ?? 900_000;
  const backoffMs = opts.retryBackoffMs ?? 200;
  const laneCount = Math.max(1, Math.floor(opts.producers ?? 1));
  let closed = false;

  const settle = (item: Item, e?: TrustfoldError) => {
    if (item.settled) return;
    item.settled = true;
    clearTimeout(item.timer);
    if (e) item.reject(e);
    else item.resolve();
  };

  const createLane = (): Lane => {
    const queue: Chunk[] = [];
    let pumping = false;
    const producer = retiringProducer(opts.kafka, keyPartitioner);
    const drained: (() => void)[] = [];

    const takeBatch = (): Chunk[] => {
      const batch: Chunk[] = [];
      let bytes = 0;
      while (queue.length > 0) {
        const next = queue[0];
        if (next === undefined) break;
        if (next.item.settled) {
          queue.shift();
          continue;
        }
        if (batch.length > 0 && bytes + next.bytes > maxBatchBytes) break;
        queue.shift();
        batch.push(next);
        bytes += next.bytes;
      }
      return batch;
    };

    const toTopicMessages = (batch: readonly Chunk[]): TopicMessages[] => {
      const byTopic = new Map<string, TopicMessages>();
      for (const c of batch) {
        for (const r of c.records) {
          let t = byTopic.get(r.topic);
          if (!t) byTopic.set(r.topic, (t = { topic: r.topic, messages: [] }));
          t.messages.push(r.headers ? { key: r.key, value: r.value, headers: r.headers } : { key: r.key, value: r.value });
        }
      }
      return [...byTopic.values()];
    };

    const produce = async (batch: readonly Chunk[]): Promise<void> => {
      const deadline = Math.min(...batch.map((c) => c.item.deadline));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TrustfoldError('kafka_timeout', `Kafka did not acknowledge within ${opts.timeoutMs} ms`, true)),
          Math.max(1, deadline - Date.now()),
        );
      });
      try {
        const work = (async () => {
          const p = await producer.get();
          await p.sendBatch({ topicMessages: toTopicMessages(batch), acks: -1, compression: CompressionTypes.None, timeout: opts.timeoutMs });
        })();
        work.catch(() => undefined); // the race below reports it; never an unhandled rejection
        await Promise.race([work, timeout]);
      } finally {
        clearTimeout(timer);
      }
    };

    const pump = async (): Promise<void> => {
      if (pumping) return;
      pumping = true;
      try {
        for (;;) {
          const batch = takeBatch();
          if (batch.length === 0) break;
          const started = process.hrtime.bigint();
          const records = batch.reduce((n, c) => n + c.records.length, 0);
          const bytes = batch.reduce((n, c) => n + c.bytes, 0);
          try {
            await produce(batch);
            opts.onBatch?.({ records, bytes, seconds: Number(process.hrtime.bigint() - started) / 1e9, ok: true });
            for (const c of batch) {
              c.item.pending--;
              if (c.item.pending === 0) settle(c.item);
            }
          } catch (e) {
            opts.onBatch?.({ records, bytes, seconds: Number(process.hrtime.bigint() - started) / 1e9, ok: false });
            producer.retire();
            const now = Date.now();
            const live = batch.filter((c) => !c.item.settled && c.item.deadline > now + backoffMs);
            for (const c of batch) {
              if (!live.includes(c)) {
                settle(c.item, e instanceof TrustfoldError ? e : new TrustfoldError('kafka_unavailable', `Kafka produce failed: ${errorMessage(e)}`, true, { cause: e }));
              }
            }
            queue.unshift(...live);
            if (live.length > 0) await delay(backoffMs);
          }
        }
      } finally {
        pumping = false;
        if (queue.length === 0) for (const d of drained.splice(0)) d();
      }
    };

    return {
      queue,
      pump,
      busy: () => pumping || queue.length > 0,
      onDrained: (d) => void drained.push(d),
      disconnect: () => producer.close(),
    };
  };

  const lanes: Lane[] = Array.from({ length: laneCount }, createLane);
  const laneOf = (r: OutboundRecord): number => (laneCount === 1 ? 0 : toPositive(r.hash ?? murmur2(r.key)) % laneCount);

  const send = (records: readonly OutboundRecord[]): Promise<void> => {
    if (records.length === 0) return Promise.resolve();
    if (closed) return Promise.reject(new TrustfoldError('kafka_unavailable', 'ingest is shutting down', true));
    return new Promise<void>((resolve, reject) => {
      const item: Item = {
        deadline: Date.now() + opts.timeoutMs,
        pending: 0,
        settled: false,
        resolve,
        reject,
        timer: setTimeout(() => {
          settle(item, new TrustfoldError('kafka_timeout', `Kafka did not acknowledge within ${opts.timeoutMs} ms`, true));
        }, opts.timeoutMs),
      };
      // Split by lane (keeping each lane's records in request order), then into chunks under maxBatchBytes.
      const perLane: OutboundRecord[][] = laneCount === 1 ? [records as OutboundRecord[]] : lanes.map(() => []);
      if (laneCount > 1) for (const r of records) perLane[laneOf(r)]?.push(r);
      const touched: Lane[] = [];
      perLane.forEach((rs, i) => {
        const lane = lanes[i];
        if (rs.length === 0 || lane === undefined) return;
        touched.push(lane);
        for (const c of chunkBySize(rs, messageSize, maxBatchBytes)) {
          lane.queue.push({ item, records: c.items, bytes: c.bytes });
          item.pending++;
        }
      });
      for (const lane of touched) void lane.pump();
    });
  };

  return {
    send,
    ready: async () => {
      // A metadata round trip to the cluster, bounded: "Kafka reachable" as /readyz means it.
      let timer: NodeJS.Timeout | undefined;
      const admin = opts.kafka.admin();
      const probe = admin.connect().then(() => admin.describeCluster()).then((c) => c.brokers.length > 0);
      probe.catch(() => undefined);
      try {
        return await Promise.race([probe, new Promise<boolean>((res) => (timer = setTimeout(() => res(false), 1_500)))]);
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
        void admin.disconnect().catch(() => undefined);
      }
    },
    close: async () => {
      closed = true;
      await Promise.all(
        lanes.map(async (lane) => {
          if (lane.busy()) await Promise.race([new Promise<void>((res) => lane.onDrained(res)), delay(opts.timeoutMs)]);
          await lane.disconnect();
        }),
      );
    },
  };
};
