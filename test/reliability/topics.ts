// Reading back what the topics hold, for the scenarios' closing checks:
// every record up to the end offsets of now, the events decoded, the fresh
// fold of them (what the projector should have published), the latest trust
// state per session, consumer-group progress, and the sessions whose
// published state differs from the fold.
import type { Kafka } from 'kafkajs';
import { createCodec } from '../../schemas/codec.ts';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { evolveAll, initialWorld, viewOf } from '../../services/projector/evolve.ts';
import type { Config } from '../../services/lib/config.ts';
import { ensureTopics, topicLayout } from '../../services/lib/kafka.ts';
import { uniqueName } from '../helpers/kafka.ts';

const codec = createCodec();

/**
 * The session-trust topic, created before the roles create it, with segments
 * larger than a run writes: it is compacted, and once a segment rolls the
 * cleaner drops older versions, so the closing check that each version was
 * published once could no longer see them.
 */
export const createTrustTopicUncompacted = async (kafka: Kafka, config: Pick<Config, 'topics' | 'kafka'>): Promise<void> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const trust = topicLayout({ topics: config.topics, kafka: config.kafka }).find((t) => t.topic === config.topics.sessionTrust);
    if (trust === undefined) throw new Error('no session-trust topic in the layout');
    await ensureTopics(admin, [{ ...trust, configEntries: [...(trust.configEntries ?? []).filter((c) => c.name !== 'segment.bytes'), { name: 'segment.bytes', value: String(1024 * 1024 * 1024) }] }]);
  } finally {
    await admin.disconnect();
  }
};
/** Every record of the topics from the beginning until the end offsets as of now. */
export const readTopics = async (kafka: Kafka, topics: string[], timeoutMs = 120_000): Promise<{ topic: string; partition: number; offset: string; value: Buffer | null }[]> => {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<string, bigint>();
  for (const t of topics) for (const p of await admin.fetchTopicOffsets(t)) ends.set(`${t}/${p.partition}`, BigInt(p.high));
  await admin.disconnect();
  const out: { topic: string; partition: number; offset: string; value: Buffer | null }[] = [];
  const pending = new Set([...ends].filter(([, end]) => end > 0n).map(([k]) => k));
  if (pending.size === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName('rel-read'), maxBytesPerPartition: 8 * 1024 * 1024, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  // A partition is read once a batch reaching its end offset went by. kafkajs
  // reports batches that hold only transaction markers or aborted records too
  // (END_BATCH_PROCESS with their last offset), so a transactional topic, whose
  // last offset is a commit marker, is read to its end as well. (This used to
  // stop after 2.5 s without a new message instead: on a loaded machine that
  // silently returned a prefix of a long topic — published trust states a
  // minute old, "differing from the fresh fold".)
  const reached = (k: string, lastOffset: string): void => {
    const end = ends.get(k);
    if (end !== undefined && BigInt(lastOffset) + 1n >= end) pending.delete(k);
    if (pending.size === 0) done();
  };
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => reached(`${e.payload.topic}/${e.payload.partition}`, e.payload.lastOffset));
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      const k = `${batch.topic}/${batch.partition}`;
      const end = ends.get(k) ?? 0n;
      for (const m of batch.messages) {
        if (BigInt(m.offset) >= end) break;
        out.push({ topic: batch.topic, partition: batch.partition, offset: m.offset, value: m.value });
      }
      const last = batch.messages.at(-1);
      if (last !== undefined) reached(k, last.offset);
    },
  });
  const timer = setTimeout(done, timeoutMs);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  if (pending.size > 0) throw new Error(`could not read ${[...pending].join(', ')} to the end within ${timeoutMs} ms`);
  return out;
};

/** The decodable events of the topics, per partition in offset order. */
export const readEvents = async (kafka: Kafka, topics: string[]): Promise<TrustfoldEvent[]> => {
  const records = await readTopics(kafka, topics);
  records.sort((a, b) => (a.topic === b.topic ? (a.partition === b.partition ? Number(BigInt(a.offset) - BigInt(b.offset)) : a.partition - b.partition) : a.topic < b.topic ? -1 : 1));
  const events: TrustfoldEvent[] = [];
  for (const r of records) {
    if (r.value === null) continue;
    const d = codec.decodeEvent(r.value);
    if (d.ok) events.push(d.value);
  }
  return events;
};

/** Session trust as a fresh fold of the given events computes it, by tenant/session. */
export const freshFold = (events: TrustfoldEvent[]): Map<string, SessionTrust> => {
  // Signals before decisions of one session would reorder a session's own
  // stream; keep each partition's order by folding one session's events in
  // the order they were read (they share a partition key).
  const folded = evolveAll(initialWorld(), events);
  const out = new Map<string, SessionTrust>();
  for (const s of folded.world.sessions.values()) {
    const v = viewOf(s);
    out.set(`${v.tenant_id}/${v.session_id}`, v);
  }
  return out;
};

/** Latest committed state per session on the compacted topic (highest version wins). */
export const latestTrust = async (kafka: Kafka, topic: string): Promise<{ latest: Map<string, SessionTrust>; records: number; undecodable: number }> => {
  const records = await readTopics(kafka, [topic]);
  const latest = new Map<string, SessionTrust>();
  let undecodable = 0;
  for (const r of records) {
    if (r.value === null) continue;
    const d = codec.decodeTrust(r.value);
    if (!d.ok) {
      undecodable++;
      continue;
    }
    const k = `${d.value.tenant_id}/${d.value.session_id}`;
    const had = latest.get(k);
    if (had === undefined || had.version < d.value.version) latest.set(k, d.value);
  }
  return { latest, records: records.length, undecodable };
};

/** Sum of committed offsets of a group over the topics, and the sum of their end offsets. */
export const groupProgress = async (kafka: Kafka, groupId: string, topics: string[]): Promise<{ committed: number; end: number }> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let committed = 0;
    let end = 0;
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) end += Number(p.high);
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
      for (const p of t?.partitions ?? []) committed += Math.max(0, Number(p.offset));
    }
    return { committed, end };
  } finally {
    await admin.disconnect();
  }
};

/** Per partition: the offset after the last data record (transaction markers excluded). */
export const dataEnds = async (kafka: Kafka, topics: string[]): Promise<Map<string, bigint>> => {
  const out = new Map<string, bigint>();
  for (const r of await readTopics(kafka, topics)) {
    const k = `${r.topic}/${r.partition}`;
    const next = BigInt(r.offset) + 1n;
    if ((out.get(k) ?? 0n) < next) out.set(k, next);
  }
  return out;
};

/** Whether the group committed at least `targets` (topic/partition → offset) everywhere. */
export const groupReached = async (kafka: Kafka, groupId: string, targets: Map<string, bigint>): Promise<boolean> => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = [...new Set([...targets.keys()].map((k) => k.slice(0, k.lastIndexOf('/'))))];
    const committed = new Map<string, bigint>();
    for (const t of await admin.fetchOffsets({ groupId, topics })) {
      for (const p of t.partitions) committed.set(`${t.topic}/${p.partition}`, BigInt(Math.max(0, Number(p.offset))));
    }
    return [...targets].every(([k, want]) => (committed.get(k) ?? 0n) >= want);
  } finally {
    await admin.disconnect();
  }
};

/** Compares the published states with the fresh fold; returns the keys that differ (empty = equal). */
export const trustDifferences = (published: Map<string, SessionTrust>, expected: Map<string, SessionTrust>): string[] => {
  const bad: string[] = [];
  for (const [k, want] of expected) {
    const got = published.get(k);
    if (got === undefined || JSON.stringify(canonical(got)) !== JSON.stringify(canonical(want))) bad.push(k);
  }
  for (const k of published.keys()) if (!expected.has(k)) bad.push(`${k} (not in the fold)`);
  return bad;
};

const canonical = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
};

