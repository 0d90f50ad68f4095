// The detect role: reads the decisions topic in its own consumer group, runs
// the pure rules (rules.ts) and turns each detection into an ordinary signal
// (signal.ts) that goes through ingest's admission (`admitEvents`, as a
// caller whose sub is the detector, scope events:write, the detection's
// tenant only) and the same Kafka sink as `POST /v1/events`; from there it
// flows through the fold, the push and the audit like any other signal.
//
// Delivery: a batch's detections are acknowledged by Kafka before its
// offsets are committed (a failed produce is retried until it is, or the role
// stops), so a crash re-folds the batch from the committed offset and
// re-emits the same detections under the same ids (deterministic, signal.ts):
// duplicates, which the fold and the write-once audit drop. Nothing is
// missed. The rules update the state in place; a batch kafkajs delivers again
// (after a failed commit, or a throw before its detections were acknowledged)
// is not folded twice: offsets below what was folded are skipped, and the
// detections of theirs not yet acknowledged are emitted with the new batch.
//
// State: not snapshotted. At start the rules are rebuilt by re-reading the
// decisions from `lookbackMs` before now up to the committed offsets, with
// their detections discarded (they were emitted before the commit). A group
// with no committed offset starts at `lookbackMs` before now. Rules look at
// event time, so the lookback must cover the longest window (config.ts).
// Undecodable records are counted and skipped: the projector and the sink,
// which read the same topic, dead-letter them already.
//
// Context (context.ts): with stale-pdp or token-replay on, the role also
// reads the session-trust topic (trust steps per session) and the signals
// topic (token_issued), and judges each batch once both were read to ends
// fetched at least `settleMs` after the batch's newest occurred_at.
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import type { Caller } from '../lib/auth.ts';
import type { Topics } from '../lib/config.ts';
import { errorMessage } from '../lib/errors.ts';
import type { EventTimeBounds } from '../lib/event-time.ts';
import { partitionKeyOf, retryTransient, topicOf } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { admitEvents } from '../ingest/admit.ts';
import { createRecentIds } from '../ingest/recent-ids.ts';
import type { EventSink } from '../ingest/sink.ts';
import type { DetectConfig } from './config.ts';
import { createContextReader, type ContextReader } from './context.ts';
import { detectAll, EMPTY_CONTEXT, initialRules, needsContext, ruleOf, type Detection, type RuleContext, type RuleName, type RulesState } from './rules.ts';
import { signalOf } from './signal.ts';

export type DetectDeps = {
  kafka: Kafka;
  topics: Topics;
  config: DetectConfig;
  sink: EventSink;
  registry: Registry;
  logger: Logger;
  eventTime: EventTimeBounds;
  codec?: Codec;
  clock?: () => number;
  /** Wait between attempts when Kafka refuses the detections' produce (ms). Default 1000. */
  retryDelayMs?: number;
};

export type DetectStats = { folded: number; rebuilt: number; detections: number; emitted: number; duplicates: number; rejected: number; undecodable: number; contextTimeouts: number };

export type DetectRole = {
  start(): Promise<void>;
  stop(): Promise<void>;
  isRunning(): boolean;
  stats(): DetectStats;
};

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Per partition: the group's committed offset (undefined: none) and the first offset at or after `sinceMs`, and the end. */
const positions = async (admin: Admin, topic: string, groupId: string, sinceMs: number): Promise<Map<number, { committed: bigint | undefined; since: bigint; high: bigint }>> => {
  // Retried: right after a topic or group appears, a broker may not yet lead it or coordinate the group (NOT_COORDINATOR).
  const ends = await retryTransient(() => admin.fetchTopicOffsets(topic));
  const byTime = await retryTransient(() => admin.fetchTopicOffsetsByTimestamp(topic, sinceMs));
  const committed = (await retryTransient(() => admin.fetchOffsets({ groupId, topics: [topic] })))[0]?.partitions ?? [];
  const out = new Map<number, { committed: bigint | undefined; since: bigint; high: bigint }>();
  for (const p of ends) {
    const high = BigInt(p.high);
    const t = byTime.find((x) => x.partition === p.partition);
    const since = t === undefined || BigInt(t.offset) < 0n ? high : BigInt(t.offset);
    const c = committed.find((x) => x.partition === p.partition);
    out.set(p.partition, { committed: c === undefined || BigInt(c.offset) < 0n ? undefined : BigInt(c.offset), since: since < BigInt(p.low) ? BigInt(p.low) : since, high });
  }
  return out;
};

export const createDetectRole = (deps: DetectDeps): DetectRole => {
  const { kafka, topics, config, sink, logger } = deps;
  const codec = deps.codec ?? createCodec();
  const clock = deps.clock ?? Date.now;
  const recent = createRecentIds(100_000);
  const topic = topics.decisions;
  const state: RulesState = initialRules();
  /** Per partition of the decisions topic: the next offset not yet folded (and emitted) live. */
  const foldedTo = new Map<number, bigint>();
  const pending = new Map<number, Detection[]>();
  let consumer: Consumer | undefined;
  let running = false;
  let stopping = false;
  const st: DetectStats = { folded: 0, rebuilt: 0, detections: 0, emitted: 0, duplicates: 0, rejected: 0, undecodable: 0, contextTimeouts: 0 };
  const wanted = needsContext(config.rules);
  const reader: ContextReader | undefined =
    wanted.trust || wanted.tokens
      ? createContextReader({
          kafka,
          topics,
          read: wanted,
          limits: { maxSessions: config.context.maxSessions, maxSteps: config.context.maxSteps, maxTokens: config.context.maxTokens },
          settleMs: config.context.settleMs,
          timeoutMs: config.context.timeoutMs,
          tokenLookbackMs: config.context.tokenLookbackMs,
          groupId: config.groupId,
          logger,
          codec,
          clock,
        })
      : undefined;
  const ctx: RuleContext = reader?.store ?? EMPTY_CONTEXT;

  const detections = new Counter({ name: 'trustfold_detect_detections_total', help: 'detections by rule (live, not counting the rebuild at start)', labelNames: ['rule'], registers: [deps.registry] });
  const signals = new Counter({
    name: 'trustfold_detect_signals_total',
    help: 'signals the detections became, by rule and outcome (emitted: acknowledged by Kafka; duplicate: ingest admission already had the id; rejected: refused by admission)',
    labelNames: ['rule', 'outcome'],
    registers: [deps.registry],
  });
  const folded = new Counter({ name: 'trustfold_detect_decisions_total', help: 'decisions the rules folded live since start', registers: [deps.registry] });
  const undecodable = new Counter({ name: 'trustfold_detect_undecodable_total', help: 'decisions-topic records that did not decode (skipped; the projector and the sink dead-letter them)', registers: [deps.registry] });
  new Gauge({ name: 'trustfold_detect_rebuilt_decisions', help: 'decisions re-read at start to rebuild the rule state', registers: [deps.registry], collect() { this.set(st.rebuilt); } });
  const contextTimeouts = new Counter({
    name: 'trustfold_detect_context_timeouts_total',
    help: 'batches judged before the session-trust and signals topics were read to their ends (TRUSTFOLD_DETECT_CONTEXT_TIMEOUT_MS passed)',
    registers: [deps.registry],
  });
  new Gauge({
    name: 'trustfold_detect_context_size',
    help: 'what the rules can look up: sessions with trust steps, tokens issued, trust records refused',
    labelNames: ['kind'],
    registers: [deps.registry],
    collect() {
      const z = reader?.store.sizes() ?? { sessions: 0, tokens: 0, refused: 0 };
      this.set({ kind: 'sessions' }, z.sessions);
      this.set({ kind: 'tokens' }, z.tokens);
      this.set({ kind: 'refused_trust_records' }, z.refused);
    },
  });
  // Per PDP, over the decisions in the rule state (the lookback rebuilt at start, then live): what GET /v1/audit/pdps computes from the audit.
  const pdpGauge = (name: string, help: string, pick: (p: RulesState['stalePdp']['pdps'][string]) => number): Gauge =>
    new Gauge({
      name,
      help,
      labelNames: ['tenant', 'pdp_id'],
      registers: [deps.registry],
      collect() {
        this.reset();
        for (const p of Object.values(state.stalePdp.pdps)) this.set({ tenant: p.tenant_id, pdp_id: p.pdp_id }, pick(p));
      },
    });
  pdpGauge('trustfold_detect_pdp_decisions', 'decisions per PDP in the stale-pdp rule state (since start, including the rebuilt lookback)', (p) => p.decisions);
  pdpGauge('trustfold_detect_pdp_stale_decisions', 'decisions per PDP made on a trust version older than the one in force beyond the grace', (p) => p.stale);
  pdpGauge('trustfold_detect_pdp_worst_lag_versions', 'worst versions behind of a stale decision, per PDP', (p) => p.worst_lag_versions);
  pdpGauge('trustfold_detect_pdp_worst_lag_ms', 'worst milliseconds behind of a stale decision, per PDP', (p) => p.worst_lag_ms);
  pdpGauge('trustfold_detect_pdp_last_seen_seconds', "the newest decision's occurred_at per PDP (Unix seconds)", (p) => Date.parse(p.last_seen) / 1000);

  const decisionOf = (value: Buffer | null): DecisionEvent | undefined => {
    if (value === null) return undefined;
    const r = codec.decodeEvent(value);
    if (!r.ok) {
      st.undecodable++;
      undecodable.inc();
      return undefined;
    }
    return r.value.type === 'decision' ? r.value : undefined;
  };

  /** Through ingest's admission, one caller per (detector, tenant); resolves once Kafka acknowledged every admitted signal. */
  const emit = async (found: readonly Detection[]): Promise<void> => {
    const groups = new Map<string, Detection[]>();
    for (const d of found) {
      const k = JSON.stringify([d.detector, d.tenant_id]);
      groups.set(k, [...(groups.get(k) ?? []), d]);
    }
    for (const group of groups.values()) {
      const first = group[0];
      if (first === undefined) continue;
      const rule = ruleOf(first.detector) as RuleName;
      const caller: Caller = { sub: first.detector, tenant: first.tenant_id, scopes: new Set(['events:write']), expiresAt: Number.MAX_SAFE_INTEGER };
      const raw = group.map((d) => signalOf(d, config.severities[rule]));
      const admission = admitEvents(raw, { caller, recent, nowMs: clock(), bounds: deps.eventTime });
      for (const [i, r] of admission.rejected.entries()) {
        logger.warn({ rule, event_id: r.event_id, reason: admission.reasons[i], errors: r.errors }, 'detection refused by ingest admission');
      }
      const dups = admission.duplicatesInRequest + admission.duplicatesRecent;
      if (admission.events.length > 0) {
        await sink.send(admission.events.map((e) => ({ topic: topicOf(topics, e), key: partitionKeyOf(e), value: codec.encodeEvent(e) })));
        recent.addAll(admission.events.map((e, i) => ({ tenant: e.tenant_id, id: e.event_id, digest: admission.digests[i] ?? '' })));
      }
      st.emitted += admission.events.length;
      st.duplicates += dups;
      st.rejected += admission.rejected.length;
      signals.inc({ rule, outcome: 'emitted' }, admission.events.length);
      if (dups > 0) signals.inc({ rule, outcome: 'duplicate' }, dups);
      if (admission.rejected.length > 0) signals.inc({ rule, outcome: 'rejected' }, admission.rejected.length);
    }
  };

  /** Folds [from, to) of each partition into `state`, detections discarded. */
  const rebuild = async (ranges: Map<number, { from: bigint; to: bigint }>): Promise<void> => {
    for (const [p, r] of ranges) if (r.from >= r.to) ranges.delete(p);
    if (ranges.size === 0) return;
    const reader = kafka.consumer({ groupId: `${config.groupId}-rebuild-${randomUUID()}`, maxWaitTimeInMs: 200 });
    await reader.connect();
    const remaining = new Set(ranges.keys());
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const off = reader.on(reader.events.END_BATCH_PROCESS, (e) => {
      const r = ranges.get(e.payload.partition);
      if (e.payload.topic === topic && r !== undefined && BigInt(e.payload.lastOffset) + 1n >= r.to) remaining.delete(e.payload.partition);
      if (remaining.size === 0) resolve();
    });
    try {
      await reader.subscribe({ topic, fromBeginning: true });
      await reader.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const r = ranges.get(batch.partition);
          if (r === undefined) return;
          for (const m of batch.messages) {
            const o = BigInt(m.offset);
            if (o < r.from || o >= r.to) continue;
            const d = decisionOf(m.value);
            if (d === undefined) continue;
            detectAll(config.rules, state, d, ctx);
            st.rebuilt++;
          }
        },
      });
      for (const [partition, r] of ranges) if (r.from > 0n) reader.seek({ topic, partition, offset: String(r.from) });
      await done;
    } finally {
      off();
      await reader.disconnect();
    }
  };

  return {
    start: async () => {
      const admin = kafka.admin();
      await admin.connect();
      const ranges = new Map<number, { from: bigint; to: bigint }>();
      try {
        const pos = await positions(admin, topic, config.groupId, clock() - config.lookbackMs);
        const fresh = [...pos].filter(([, p]) => p.committed === undefined);
        if (fresh.length > 0) await retryTransient(() => admin.setOffsets({ groupId: config.groupId, topic, partitions: fresh.map(([partition, p]) => ({ partition, offset: String(p.since) })) }));
        for (const [partition, p] of pos) if (p.committed !== undefined) ranges.set(partition, { from: p.since < p.committed ? p.since : p.committed, to: p.committed });
      } finally {
        await admin.disconnect();
      }
      await reader?.start();
      await rebuild(ranges);
      logger.info({ rebuilt: st.rebuilt, rules: Object.keys(config.rules) }, 'detect: rule state rebuilt');

      // A restarted instance rejoins after a crashed one's session times out: 10 s, not kafkajs' 30 s, and longer than a batch's longest context wait.
      const sessionTimeout = Math.max(10_000, config.context.settleMs + config.context.timeoutMs + 3_000);
      const c = kafka.consumer({ groupId: config.groupId, maxWaitTimeInMs: 200, sessionTimeout, rebalanceTimeout: sessionTimeout, heartbeatInterval: Math.floor(sessionTimeout / 5) });
      consumer = c;
      await c.connect();
      await c.subscribe({ topic, fromBeginning: false });
      await c.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, heartbeat, resolveOffset }) => {
          const last = batch.messages[batch.messages.length - 1];
          if (last === undefined) return;
          const p = batch.partition;
          const from = foldedTo.get(p) ?? -1n;
          const next = state;
          // Detections of offsets already folded whose emit did not complete (the batch threw): emitted with this one.
          const found: Detection[] = [...(pending.get(p) ?? [])];
          const carried = found.length;
          let n = 0;
          const decisions = batch.messages.map((m) => (BigInt(m.offset) < from ? undefined : decisionOf(m.value)));
          if (reader !== undefined) {
            let newest = Number.NEGATIVE_INFINITY;
            for (const d of decisions) if (d !== undefined) newest = Math.max(newest, Date.parse(d.occurred_at));
            if (Number.isFinite(newest) && !(await reader.sync(newest + config.context.settleMs))) {
              st.contextTimeouts++;
              contextTimeouts.inc();
              logger.warn({ partition: batch.partition, offset: last.offset }, 'detect: trust and signals not read to their ends in time; judging with what was read');
            }
            await heartbeat();
          }
          let beat = Date.now();
          for (const d of decisions) {
            if (d === undefined) continue;
            const out = detectAll(config.rules, next, d, ctx)[1];
            found.push(...out);
            n++;
            // A long batch must not outlive the group session (the member would be dropped and its commit refused).
            if (Date.now() - beat > 1_000) {
              await heartbeat().catch(() => undefined); // a rebalance shows at the commit; the fold is not abandoned half way
              beat = Date.now();
            }
          }
          if (BigInt(last.offset) + 1n > from) foldedTo.set(p, BigInt(last.offset) + 1n);
          pending.set(p, found);
          for (;;) {
            try {
              await emit(found);
              break;
            } catch (e) {
              if (stopping) throw e;
              logger.warn({ err: errorMessage(e), detections: found.length }, 'detect: produce failed; retrying the batch');
              await delay(deps.retryDelayMs ?? 1_000);
              await heartbeat();
            }
          }
          pending.delete(p);
          st.folded += n;
          folded.inc(n);
          st.detections += found.length - carried;
          for (const d of found.slice(carried)) detections.inc({ rule: ruleOf(d.detector) });
          resolveOffset(last.offset);
          await c.commitOffsets([{ topic, partition: batch.partition, offset: String(BigInt(last.offset) + 1n) }]);
        },
      });
      running = true;
      c.on(c.events.CRASH, (e) => {
        logger.error({ err: errorMessage(e.payload.error), restart: e.payload.restart }, 'detect consumer crashed');
        if (e.payload.restart !== true) running = false;
      });
    },
    stop: async () => {
      stopping = true;
      running = false;
      await consumer?.disconnect();
      await reader?.stop();
    },
    isRunning: () => running,
    stats: () => ({ ...st }),
  };
};
