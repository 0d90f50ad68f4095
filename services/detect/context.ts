// What the rules look up beyond a decision (RuleContext, rules.ts), read
// from two topics beside the decisions:
//   - session-trust (compacted, keyed by session): each session's newest
//     `maxSteps` trust steps (version, updated_at), for stale-pdp;
//   - signals: `token_issued` (jti → agent, user, expiry), for token-replay.
// The store is plain, bounded data (least recently touched session or token
// evicted); the reader feeds it from one consumer of a throwaway group that
// never commits: session-trust from the beginning (one state per session
// after compaction, the recent steps before it), signals from
// `tokenLookbackMs` before start.
//
// `sync(t)`: the rules judge a decision against what these topics held at
// wall time t (its occurred_at + the settle time): the end offsets are fetched
// no earlier than t and read to. A decision and the transition in force at
// its time travel on different topics and partitions, so no Kafka order
// relates them; this wait is what does.
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { retryTransient, tupleKey } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { createEpochGate } from '../pdp-client/epoch.ts';
import { admitTrust } from '../pdp-client/trust-view.ts';
import type { IssuedToken, RuleContext, TrustStepLite } from './rules.ts';

export type ContextLimits = { maxSessions: number; maxSteps: number; maxTokens: number };

export type ContextStore = RuleContext & {
  /** A published trust state; `record` (Kafka key and offset) is checked as TrustView does (admitTrust). Returns false when refused. */
  applyTrust(state: Pick<SessionTrust, 'tenant_id' | 'session_id' | 'version' | 'updated_at'>, record?: { key: string | null; offset: string }): boolean;
  /** Any event of the signals topic; only `token_issued` is kept (the first one of a jti: a later one cannot rewrite who the token was issued to). */
  applySignal(e: TrustfoldEvent): void;
  sizes(): { sessions: number; tokens: number; refused: number };
};

/** LRU touch: a Map keeps insertion order, so re-inserting moves a key to the end. */
const touch = <V>(m: Map<string, V>, k: string, v: V, max: number): void => {
  m.delete(k);
  m.set(k, v);
  while (m.size > max) {
    const oldest = m.keys().next();
    if (oldest.done === true) break;
    m.delete(oldest.value);
  }
};

export const createContextStore = (limits: ContextLimits): ContextStore => {
  const steps = new Map<string, TrustStepLite[]>();
  const tokens = new Map<string, IssuedToken>();
  let refused = 0;
  return {
    applyTrust(state, record) {
      const key = tupleKey(state.tenant_id, state.session_id);
      const held = steps.get(key);
      if (record !== undefined && !admitTrust(state, record, held?.at(-1)?.version).ok) {
        refused++;
        return false;
      }
      const list = [...(held ?? [])];
      if (!list.some((s) => s.version === state.version)) {
        list.push({ version: state.version, updated_at: state.updated_at });
        list.sort((a, b) => a.version - b.version);
      }
      touch(steps, key, list.slice(-limits.maxSteps), limits.maxSessions);
      return true;
    },
    applySignal(e) {
      if (e.type !== 'signal' || e.kind !== 'token_issued') return;
      const key = tupleKey(e.tenant_id, e.jti);
      const known = tokens.get(key);
      touch(tokens, key, known ?? { agent_id: e.agent_id, user_id: e.user_id, expires_at: e.expires_at, event_id: e.event_id }, limits.maxTokens);
    },
    trustSteps: (tenant, session) => steps.get(tupleKey(tenant, session)),
    issuedToken: (tenant, jti) => tokens.get(tupleKey(tenant, jti)),
    sizes: () => ({ sessions: steps.size, tokens: tokens.size, refused }),
  };
};

export type ContextReader = {
  store: ContextStore;
  /** Reads session-trust from the beginning and signals from `tokenLookbackMs` ago, up to the ends at start. */
  start(): Promise<void>;
  /**
   * Resolves once both topics were read to end offsets fetched at or after
   * `notBeforeMs` (waiting until then, at most `settleMs`); false when the
   * readers did not get there within `timeoutMs` (the caller judges with what
   * was read).
   */
  sync(notBeforeMs: number): Promise<boolean>;
  stop(): Promise<void>;
};

export type ContextReaderDeps = {
  kafka: Kafka;
  topics: { sessionTrust: string; signals: string };
  /** Which topics to read: trust steps (stale-pdp), tokens (token-replay). */
  read: { trust: boolean; tokens: boolean };
  limits: ContextLimits;
  settleMs: number;
  timeoutMs: number;
  tokenLookbackMs: number;
  groupId: string;
  logger: Logger;
  codec?: Codec;
  clock?: () => number;
};

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const createContextReader = (deps: ContextReaderDeps): ContextReader => {
  const codec = deps.codec ?? createCodec();
  const clock = deps.clock ?? Date.now;
  const store = createContextStore(deps.limits);
  const topics = [...(deps.read.trust ? [deps.topics.sessionTrust] : []), ...(deps.read.tokens ? [deps.topics.signals] : [])];
  /** Next offset to read, per `topic/partition`. */
  const positions = new Map<string, bigint>();
  let waiters: (() => void)[] = [];
  let admin: Admin | undefined;
  let consumer: Consumer | undefined;
  let syncedAt = Number.NEGATIVE_INFINITY;

  const advance = (topic: string, partition: number, next: bigint): void => {
    const k = `${topic}/${partition}`;
    if ((positions.get(k) ?? -1n) < next) positions.set(k, next);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const ends = async (): Promise<Map<string, { low: bigint; high: bigint }>> => {
    const out = new Map<string, { low: bigint; high: bigint }>();
    const a = admin;
    if (a === undefined) throw new Error('context reader not started');
    for (const t of topics) for (const p of await retryTransient(() => a.fetchTopicOffsets(t))) out.set(`${t}/${p.partition}`, { low: BigInt(p.low), high: BigInt(p.high) });
    return out;
  };

  const reached = async (targets: Map<string, { low: bigint; high: bigint }>, timeoutMs: number): Promise<boolean> => {
    const done = (): boolean => [...targets].every(([k, t]) => t.high <= t.low || (positions.get(k) ?? t.low) >= t.high);
    const deadline = clock() + timeoutMs;
    while (!done()) {
      const left = deadline - clock();
      if (left <= 0) return false;
      await Promise.race([new Promise<void>((r) => waiters.push(r)), delay(Math.min(left, 100))]);
    }
    return true;
  };

  return {
    store,
    start: async () => {
      if (topics.length === 0) return;
      admin = deps.kafka.admin();
      await admin.connect();
      const a = admin;
      const signalStart = new Map<number, bigint>();
      if (deps.read.tokens) {
        for (const p of await retryTransient(() => a.fetchTopicOffsetsByTimestamp(deps.topics.signals, clock() - deps.tokenLookbackMs))) {
          if (BigInt(p.offset) >= 0n) signalStart.set(p.partition, BigInt(p.offset));
        }
      }
      const atStart = await ends();
      for (const [k, t] of atStart) {
        const [topic, partition] = [k.slice(0, k.lastIndexOf('/')), Number(k.slice(k.lastIndexOf('/') + 1))];
        const from = topic === deps.topics.signals ? (signalStart.get(partition) ?? t.high) : t.low;
        positions.set(k, from < t.low ? t.low : from);
      }
      const epochs = createEpochGate();
      const c = deps.kafka.consumer({ groupId: `${deps.groupId}-context-${randomUUID()}`, maxWaitTimeInMs: 100, maxBytesPerPartition: 4 * 1024 * 1024 });
      consumer = c;
      c.on(c.events.END_BATCH_PROCESS, (e) => advance(e.payload.topic, e.payload.partition, BigInt(e.payload.lastOffset) + 1n));
      await c.connect();
      await c.subscribe({ topics, fromBeginning: true });
      await c.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            if (m.value === null) continue;
            if (batch.topic === deps.topics.sessionTrust) {
              // The epoch rule first, as TrustView applies it (pdp-client/epoch.ts): a taken-over owner's late state is no step.
              const verdict = epochs.judge(batch.partition, m.offset, m);
              if (verdict.kind === 'refused') deps.logger.warn({ partition: batch.partition, offset: m.offset, reason: verdict.reason, why: verdict.why }, 'detect: refused a trust record');
              if (verdict.kind !== 'state') continue;
              const r = codec.decodeTrust(m.value);
              if (r.ok) store.applyTrust(r.value, { key: m.key === null ? null : m.key.toString('utf8'), offset: m.offset });
            } else {
              const r = codec.decodeEvent(m.value);
              if (r.ok) store.applySignal(r.value);
            }
          }
        },
      });
      for (const [partition, offset] of signalStart) c.seek({ topic: deps.topics.signals, partition, offset: String(offset) });
      if (!(await reached(atStart, 10 * deps.timeoutMs + 60_000))) throw new Error('detect: the session-trust and signals topics could not be read to their ends at start');
      syncedAt = clock();
      deps.logger.info({ ...store.sizes(), topics }, 'detect: context loaded');
    },
    sync: async (notBeforeMs) => {
      if (topics.length === 0 || syncedAt >= notBeforeMs) return true;
      const wait = Math.min(notBeforeMs - clock(), deps.settleMs);
      if (wait > 0) await delay(wait);
      const fetchedAt = clock();
      const ok = await reached(await ends(), deps.timeoutMs);
      if (ok) syncedAt = Math.max(syncedAt, fetchedAt);
      return ok;
    },
    stop: async () => {
      await consumer?.disconnect();
      await admin?.disconnect();
    },
  };
};
