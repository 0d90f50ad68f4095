// Scale-out: one input partition's task — Kafka Streams' stream task. Task p
// owns the sessions keyed to partition p: it folds partition p of decisions
// and signals (the group's assignment) and every global event (global.ts)
// into a world of its own (those sessions + its copy of the global facts),
// and commits, per group of folded batches, one Kafka transaction with its
// own transactional id `<group>-<p>`: the changed states (session-trust
// partition p), the changelog records (changelog partition p, with a marker
// holding how far it folded its input and the global kinds) and the consumed
// offsets of partition p. A new owner's initTransactions with that id aborts
// the old owner's open transaction and fails its later ones: a moved
// partition's old owner cannot publish after the new owner started.
//
// Idempotent delivery (README, "Scaling out" → "Delivery mode"): the states
// go out first with a plain idempotent producer (delivery/idempotent.ts), the
// changelog and offsets follow in a transaction of `<group>-<p>`. The states
// are fenced by the epoch rule instead: `claim` commits the next epoch to
// changelog partition p (exclusive: only the fenced id's owner can commit),
// appends the epoch record to session-trust partition p, then reads what was
// published there past the restored world (reconcile, as the single instance
// does); every state carries the epoch, and readers drop a state whose epoch
// is below an epoch record before it. While it owns p it watches session-trust
// partition p past its epoch record (published.ts) and publishes a session
// again after a zombie's late state of it, so compaction keeps a record
// readers apply.
import type { Batch, Kafka, Producer } from 'kafkajs';
import type { Codec } from '../../../schemas/codec.ts';
import type { Logger } from '../../lib/log.ts';
import { classify, createEpochGate, EPOCH_HEADER, epochRecord } from '../../pdp-client/epoch.ts';
import type { ProjectorStats } from '../api.ts';
import { encodeRecord, EPOCH_CLAIM_KEY, PUBLISHED_MARKER_KEY, type ChangelogRecord } from '../changelog.ts';
import { statesProducer } from '../clients.ts';
import type { Delivery } from '../config.ts';
import { createIdempotentDelivery, type Marks } from '../delivery/idempotent.ts';
import type { GroupDelivery } from '../delivery/types.ts';
import { evolve, sessionKeyOf, tick, viewOf, type FoldConfig, type Transition, type World } from '../evolve.ts';
import { emptyGroup, isEmptyGroup, offsetsByTopic, seal, type Group, type OutMessage, type Sealed } from '../group.ts';
import { admitBatch, type AdmitDeps } from '../input.ts';
import { endOffsetsNow, inputKey, readPublishedAhead, unreadInput, type InputOffset } from '../restore.ts';
import { createResume } from '../resume.ts';
import { emptyTiming } from '../timing.ts';
import { hasErrorType, runTransaction } from '../transaction.ts';
import type { Restored } from './folded.ts';
import { isGlobalEvent, type GlobalEntry, type GlobalReader } from './global.ts';
import type { PublishedReader, PublishedRecord } from './published.ts';

export type TaskDeps = {
  kafka: Kafka;
  partition: number;
  groupId: string;
  changelogTopic: string;
  sessionTrustTopic: string;
  fold: FoldConfig;
  now: () => number;
  codec: Codec;
  logger: Logger;
  admit: AdmitDeps;
  global: GlobalReader;
  /** Counters shared by the instance's tasks. */
  stats: ProjectorStats;
  maxPendingRecords: number;
  /** The task cannot go on: `fenced` when another instance took its transactional id over. */
  onFailure: (fenced: boolean, e: unknown) => void;
  /** Default `transactional`. */
  delivery?: Delivery;
  /** Idempotent: the input topics (what the replay after a claim must fold before sessions ahead are settled). */
  inputTopics?: readonly string[];
  /** Idempotent: races the claim's reads against the instance's stop. */
  untilStopped?: <T>(p: Promise<T>) => Promise<T>;
  /** Idempotent: the instance's reader of session-trust, to repair a zombie's late state (published.ts). */
  published?: PublishedReader;
};

export type Task = {
  readonly partition: number;
  readonly transactionalId: string;
  /** Fences the previous owner: its open transaction is aborted, its next one fails. `connected`: a producer of this transactional id already connected (not initialised). */
  init(connected?: Producer): Promise<void>;
  /**
   * Idempotent delivery only, after `init` and before `open`: claims the next
   * epoch (changelog, fenced), appends its epoch record to session-trust
   * partition p and reads what was published there past the restored world.
   */
  claim(restored: Restored): Promise<void>;
  /** The epoch this task claimed (0: transactional, or not claimed). */
  epoch(): number;
  /** Takes over the partition's restored world (idempotent: the one `claim` reconciled) and replays the global kinds past its marker; returns where to seek the input. */
  open(restored: Restored): InputOffset[];
  isReady(): boolean;
  /** Folds a batch of partition p; false when the task is not (or no longer) folding — the caller pauses the partition. */
  onBatch(batch: Batch, heartbeat?: () => Promise<void>): Promise<boolean>;
  onGlobal(e: GlobalEntry): void;
  onTick(): void;
  sessions(): number;
  /** States folded but not committed yet, and since when the oldest of them waits (wall ms). */
  unpublished(): { count: number; since: number | undefined };
  /** Resolves once everything folded so far committed (or the task failed). */
  flush(): Promise<void>;
  /** Stops folding, lets a running transaction settle, drops what is pending, disconnects. */
  close(): Promise<void>;
};

/** Errors that mean another producer owns the transactional id now. */
export const isFenced = (e: unknown): boolean => hasErrorType(e, 'PRODUCER_FENCED') || hasErrorType(e, 'INVALID_PRODUCER_EPOCH') || hasErrorType(e, 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED');

export const createTask = (deps: TaskDeps): Task => {
  const { partition: p, fold, now, codec, stats } = deps;
  const transactionalId = `${deps.groupId}-${p}`;
  const logger = deps.logger.child({ partition: p });
  let producer: Producer | undefined;
  let world: World | undefined;
  let ready = false;
  let failed = false;
  let closed = false;
  /** Next input offset to fold, per input topic-partition (`inputKey`): anything below was folded (a re-read after a rejoin is skipped). */
  const next = new Map<string, bigint>();
  /** Next offset of the global kinds folded, per signals partition. */
  const globalNext = new Map<number, bigint>();
  /** What the last committed marker holds. */
  let recorded = { consumed: new Map<string, InputOffset>(), global: new Map<number, string>() };
  let pending: Group = emptyGroup();
  let pendingGlobal = new Map<number, string>();
  let inFlight: Promise<void> | undefined;
  /** The running transaction's states and when its oldest was folded. */
  let inFlightStates = 0;
  let inFlightSince: number | undefined;
  let pendingSince: number | undefined;
  let pumpScheduled = false;
  let drained: (() => void)[] = [];

  // ---- idempotent delivery only
  const idempotent = (deps.delivery ?? 'transactional') === 'idempotent';
  /** The states' producer (step (1), not transactional); `producer` owns the transactional id (changelog + offsets). */
  let statesOut: Producer | undefined;
  let epoch = 0;
  /** The world `claim` restored (and compared the published states with). */
  let claimed: World | undefined;
  const marks: Marks = { covered: new Map(), folded: new Map(), epochs: new Map() };
  const resume = createResume({ codec, logger, stats });
  /** Input partitions (inputKey → end offset at the claim) and signals partitions (→ end offset) to fold before the sessions ahead are settled. */
  let replayTargets = new Map<string, bigint>();
  let globalTargets = new Map<number, bigint>();
  /** Stops watching partition p of session-trust (published.ts). */
  let unwatch: (() => void) | undefined;
  const out: GroupDelivery | undefined = idempotent
    ? createIdempotentDelivery({
        groupId: deps.groupId,
        sessionTrustTopic: deps.sessionTrustTopic,
        changelogTopic: deps.changelogTopic,
        logger,
        timing: emptyTiming(),
        producer: () => statesOut,
        logProducer: () => producer,
        marks,
        acknowledged: (g) => {
          stats.published += g.changed.length;
          inFlightStates = 0;
          inFlightSince = undefined;
        },
        invalidate: (_reason, e) => fail(e ?? new Error(_reason)),
        onIdle: () => {
          if (inFlight === undefined) pump();
        },
        task: { partition: p, epoch: () => epoch, global: () => [...globalNext].map(([partition, o]) => ({ partition, offset: String(o) })) },
      })
    : undefined;

  const collect = (t: Transition): void => {
    world = t.world;
    const changed = idempotent ? resume.reconciled(t.world, t.changed) : t.changed;
    if (changed.length > 0 && pendingSince === undefined) pendingSince = now();
    for (const s of changed) pending.changed.push(s);
    for (const k of t.touched) pending.touched.add(k);
  };

  /** Idempotent, after a claim with states ahead: once the replay folded everything the previous owner could have, the sessions it left behind what was published move past it. */
  const maybeSettle = (): void => {
    if (!idempotent || resume.size() === 0 || world === undefined || replayTargets.size > 0) return;
    for (const [q, end] of globalTargets) if (deps.global.position(q) < end) return;
    const w = world;
    resume.settle(w, (key, nextState) => {
      if (pendingSince === undefined) pendingSince = now();
      pending.changed.push(viewOf(nextState));
      pending.touched.add(key);
    });
    schedulePump();
  };

  const fail = (e: unknown): void => {
    if (failed || closed) return;
    failed = true;
    ready = false;
    const fenced = isFenced(e);
    logger.error({ err: e instanceof Error ? e.message : String(e), fenced }, fenced ? 'projector task fenced: another instance owns this partition' : 'projector task failed');
    deps.onFailure(fenced, e);
  };

  const settleDrained = (): void => {
    const waiting = drained;
    drained = [];
    for (const w of waiting) w();
  };

  /**
   * Idempotent: partition p of session-trust past this task's epoch record. A
   * state of an older epoch there (a zombie's, refused by every reader) would
   * stay the newest record of its session's key, and compaction would delete
   * this task's states of it before it: publish the session's current state
   * again (same version, same content — readers that have it change nothing).
   * An epoch record above this task's means it was taken over itself: stop.
   */
  const watchPublished = (from: bigint): void => {
    const reader = deps.published;
    if (reader === undefined) return;
    const gate = createEpochGate({ start: new Map([[p, { offset: from, epoch }]]) });
    unwatch = reader.watch(p, from, (r: PublishedRecord) => {
      if (gate.epochAt(p, BigInt(r.offset) + 1n) > epoch) {
        // A real new owner fences this task's next round; one that never comes means a forged record (README, "Delivery mode").
        logger.warn({ offset: r.offset, epoch, above: gate.epochAt(p, BigInt(r.offset) + 1n) }, 'an epoch record above this task\'s: taken over, or forged; no more repairs');
        unwatch?.();
        unwatch = undefined;
        return;
      }
      const v = gate.judge(p, r.offset, r);
      const c = classify(r);
      if (v.kind !== 'refused' || v.reason !== 'stale_epoch' || c.kind !== 'state' || c.epoch >= epoch || r.value === null) return;
      const d = codec.decodeTrust(r.value);
      if (!d.ok) return;
      logger.warn({ session: d.value.session_id, tenant: d.value.tenant_id, offset: r.offset, staleEpoch: c.epoch, staleVersion: d.value.version }, 'a taken-over owner published after this epoch began; publishing the session again');
      const key = sessionKeyOf(d.value.tenant_id, d.value.session_id);
      // Claimed but not open yet: open publishes it (with those the claim's read found).
      if (!ready) staleAtClaim.add(key);
      else if (republish(key)) schedulePump();
    });
  };

  /** Publishes a session's current state again (same version, same content); false when it is not known (its first state will follow). */
  const republish = (key: string): boolean => {
    const current = world?.sessions.get(key);
    if (current === undefined || current.version === 0 || !ready || failed || closed) return false;
    stats.repaired++;
    if (pendingSince === undefined) pendingSince = now();
    pending.changed.push(viewOf(current));
    pending.touched.add(key); // a group is sealed only when it touched something
    return true;
  };
  /** Idempotent: sessions whose newest record in the claim's read was a taken-over owner's late state (republished at open). */
  let staleAtClaim = new Set<string>();
  /** When `open` ran, until the first round after it is committed (logged: the takeover's last step). */
  let openedAt: number | undefined;
  /** After open: when the first input batch was folded and when the first round's transaction began (ms after open). */
  let firstBatchMs: number | undefined;
  let firstRoundMs: number | undefined;

  /** Idempotent: a sealed group placed on partition p, its states stamped with the epoch. */
  const placed = (sealed: Sealed): Sealed => {
    const here = (m: OutMessage): OutMessage => ({ ...m, partition: p });
    return { ...sealed, states: sealed.states.map((m) => ({ ...m, partition: p, headers: { ...m.headers, [EPOCH_HEADER]: String(epoch) } })), sessions: sealed.sessions.map(here), facts: sealed.facts.map(here) };
  };

  const pumpIdempotent = (o: GroupDelivery): void => {
    if (failed || closed || world === undefined || producer === undefined || statesOut === undefined || (isEmptyGroup(pending) && pendingGlobal.size === 0)) {
      if (o.backlog() === 0 || failed || closed) settleDrained();
      return;
    }
    if (o.full()) return; // the recorder pumps again when done
    const { g } = takePending();
    // Sealed now, synchronously (the global positions too: `task.global`, read by deliver).
    inFlight = o.deliver(g, placed(seal(world, g, codec.encodeTrust))).then(() => {
      inFlight = undefined;
      pump();
    }, deliveryFailed);
  };

  /** The pending group and its global positions, handed to a delivery: its states count as in flight from now. */
  const takePending = (): { g: Group; gGlobal: Map<number, string> } => {
    const g = pending;
    const gGlobal = pendingGlobal;
    pending = emptyGroup();
    pendingGlobal = new Map();
    inFlightStates = g.changed.length;
    inFlightSince = pendingSince;
    pendingSince = undefined;
    return { g, gGlobal };
  };

  const deliveryFailed = (e: unknown): void => {
    inFlight = undefined;
    fail(e);
    settleDrained();
  };

  const pump = (): void => {
    pumpScheduled = false;
    if (inFlight !== undefined) return;
    if (out !== undefined) return pumpIdempotent(out);
    if (failed || closed || world === undefined || producer === undefined || (isEmptyGroup(pending) && pendingGlobal.size === 0)) return settleDrained();
    const { g, gGlobal } = takePending();
    // Sealed now, synchronously: the states, the changelog records of the world at this instant, the marker, the offsets.
    const sealed = seal(world, g, codec.encodeTrust);
    const consumed = new Map(recorded.consumed);
    for (const [k, o] of g.offsets) consumed.set(k, o);
    const global = new Map(recorded.global);
    for (const [q, o] of gGlobal) global.set(q, o);
    const marker: ChangelogRecord = {
      kind: 'published',
      value: { partitions: [], consumed: [...consumed.values()], global: [...global].map(([partition, offset]) => ({ partition, offset })) },
    };
    const here = (m: OutMessage): OutMessage => ({ ...m, partition: p });
    const topicMessages: { topic: string; messages: OutMessage[] }[] = [];
    if (sealed.states.length > 0) topicMessages.push({ topic: deps.sessionTrustTopic, messages: sealed.states.map(here) });
    topicMessages.push({ topic: deps.changelogTopic, messages: [...sealed.sessions, ...sealed.facts, { key: PUBLISHED_MARKER_KEY, value: encodeRecord(marker) }].map(here) });
    const prod = producer;
    if (openedAt !== undefined && firstRoundMs === undefined) firstRoundMs = now() - openedAt;
    inFlight = runTransaction(prod, deps.groupId, topicMessages, offsetsByTopic(sealed.offsets)).then(
      (steps) => {
        recorded = { consumed, global };
        stats.published += g.changed.length;
        if (openedAt !== undefined) {
          // The takeover's last step (README, "Scaling out" → failover): open → its first committed round.
          logger.info({ ms: now() - openedAt, firstBatchMs, firstRoundMs, states: g.changed.length, steps }, 'projector task committed its first round');
          openedAt = undefined;
        }
        inFlight = undefined;
        inFlightStates = 0;
        inFlightSince = undefined;
        pump();
      },
      deliveryFailed,
    );
  };

  const schedulePump = (): void => {
    if (pumpScheduled || inFlight !== undefined) return;
    pumpScheduled = true;
    setImmediate(pump);
  };

  const foldGlobal = (e: GlobalEntry): void => {
    if (world === undefined || e.offset < (globalNext.get(e.partition) ?? 0n)) return;
    collect(evolve(world, e.event, fold, e.appendedAt));
    globalNext.set(e.partition, e.offset + 1n);
    pendingGlobal.set(e.partition, String(e.offset + 1n));
  };

  return {
    partition: p,
    transactionalId,
    async init(connected) {
      producer = connected ?? statesProducer(deps.kafka, 'transactional', transactionalId);
      const prod = producer;
      if (connected === undefined) await prod.connect();
      // Revoked while connecting: do not fence the partition's new owner.
      if (closed) {
        await prod.disconnect().catch(() => undefined);
        throw new Error(`partition ${p} revoked while opening`);
      }
      // initTransactions (kafkajs does it at the first transaction): bumps the epoch, aborts the old owner's open transaction.
      await (await prod.transaction()).abort();
      if (idempotent) {
        const so = statesProducer(deps.kafka, 'idempotent', transactionalId);
        statesOut = so;
        await so.connect();
      }
    },
    async claim(restored) {
      const wait = deps.untilStopped ?? (<T>(x: Promise<T>) => x);
      const prod = producer;
      const so = statesOut;
      if (!idempotent || prod === undefined || so === undefined) throw new Error(`partition ${p}: claim needs the idempotent delivery and init`);
      const w = restored.world;
      const marker = restored.marker;
      const mine = (marker?.partitions ?? []).filter((x) => x.partition === p);
      marks.covered = new Map(mine.map((x) => [x.partition, x.offset]));
      marks.epochs = new Map(mine.map((x) => [x.partition, x.epoch ?? 0]));
      marks.folded = new Map((marker?.consumed ?? []).map((c) => [inputKey(c.topic, c.partition), c]));
      const restoreDeps = { kafka: deps.kafka, groupId: deps.groupId, logger, codec, untilStopped: wait };
      let e = restored.claimedEpoch;
      let seen = 0;
      let epochAt: string | undefined;
      let stale: Set<string>;
      let ahead: Awaited<ReturnType<typeof readPublishedAhead>>;
      for (let round = 0; ; round++) {
        // (a) The epoch, exclusively: only the owner of the fenced transactional id can commit it.
        e = Math.max(e, seen) + 1;
        const claimRecord: ChangelogRecord = { kind: 'epoch', value: { epoch: e } };
        await runTransaction(prod, deps.groupId, [{ topic: deps.changelogTopic, messages: [{ key: EPOCH_CLAIM_KEY, value: encodeRecord(claimRecord), partition: p }] }], []);
        // (b) Its epoch record, before anything is read back: a state of an older epoch appended after it is dropped by every reader.
        const [md] = await so.send({ topic: deps.sessionTrustTopic, acks: -1, messages: [{ ...epochRecord(e), partition: p }] });
        epoch = e;
        epochAt = md?.baseOffset ?? md?.offset;
        // (c) What was published on partition p past the restored world (read to the end now: after the epoch record).
        stale = new Set<string>();
        seen = 0;
        ahead = await readPublishedAhead(restoreDeps, deps.sessionTrustTopic, marks.covered, w, {
          partitions: [p],
          epochs: marks.epochs,
          staleNewest: stale,
          epochSeen: (x) => (seen = Math.max(seen, x)),
        });
        // An epoch record above the one just claimed that no claim made: a newer owner fenced this task (the next claim fails), or it is forged — claim above it, once.
        if (seen <= e || round > 0) break;
        logger.error({ epoch: e, seen }, 'an epoch record above the one just claimed: claiming above it');
      }
      if (seen > e) logger.error({ epoch: e, seen }, 'an epoch record above this task\'s claim: readers refuse its states until a claim goes above it');
      staleAtClaim = stale;
      resume.restored(ahead);
      if (ahead.size > 0) {
        const unread = await unreadInput(restoreDeps, deps.inputTopics ?? [], marks.folded);
        replayTargets = new Map([...unread].filter(([k]) => k.endsWith(`\u0000${p}`)));
        globalTargets = await endOffsetsNow(deps.kafka, deps.global.topic);
      }
      claimed = w;
      if (epochAt !== undefined) watchPublished(BigInt(epochAt) + 1n);
      logger.info({ epoch: e, publishedAhead: ahead.size, staleNewest: stale.size, replayTo: [...replayTargets].map(([k, end]) => `${k.replace('\u0000', '/')}@${end}`) }, 'projector task claimed its epoch');
    },
    epoch: () => epoch,
    open(restored) {
      const w = claimed ?? restored.world;
      claimed = undefined;
      world = w;
      const marker = restored.marker;
      recorded = {
        consumed: new Map((marker?.consumed ?? []).map((c) => [inputKey(c.topic, c.partition), c])),
        global: new Map((marker?.global ?? []).map((g) => [g.partition, g.offset])),
      };
      for (const [k, o] of recorded.consumed) next.set(k, BigInt(o.offset));
      for (const [q, o] of recorded.global) globalNext.set(q, BigInt(o));
      // The global kinds read since the recorded positions, by broker time across partitions (offset order within one).
      const replay = deps.global.partitions().flatMap((q) => deps.global.since(q, globalNext.get(q) ?? 0n));
      replay.sort((a, b) => ((a.appendedAt ?? '') < (b.appendedAt ?? '') ? -1 : (a.appendedAt ?? '') > (b.appendedAt ?? '') ? 1 : a.partition - b.partition || (a.offset < b.offset ? -1 : 1)));
      collect(tick(w, now(), fold));
      for (const e of replay) foldGlobal(e);
      ready = true;
      openedAt = now();
      for (const key of staleAtClaim) republish(key);
      staleAtClaim = new Set();
      maybeSettle();
      schedulePump();
      logger.info({ restored: restored.records, sessions: w.sessions.size, globalReplayed: replay.length, consumedAt: [...recorded.consumed.values()].map((o) => `${o.topic}/${o.partition}@${o.offset}`) }, 'projector task opened');
      return [...recorded.consumed.values()];
    },
    isReady: () => ready && !failed && !closed,
    async onBatch(batch, heartbeat) {
      if (!ready || failed || closed || world === undefined) return false;
      while (inFlight !== undefined && pending.changed.length + pending.touched.size >= deps.maxPendingRecords) {
        // Backpressure holds kafkajs's loop, which is where it heartbeats: a slow transaction must not cost the membership.
        await heartbeat?.().catch(() => undefined);
        await inFlight;
        if (!ready || failed || closed) return false;
      }
      const key = inputKey(batch.topic, batch.partition);
      if (openedAt !== undefined && firstBatchMs === undefined) firstBatchMs = now() - openedAt;
      const valid = await admitBatch(batch, next.get(key) ?? -1n, deps.admit);
      if (!ready || failed || closed || world === undefined) return false;
      // From here to the end: synchronous, so no group is sealed halfway through a batch.
      collect(tick(world, now(), fold));
      // The global kinds of this partition reach the world through the global reader, like every other partition's.
      for (const v of valid) if (!isGlobalEvent(v.event)) collect(evolve(world, v.event, fold, v.appendedAt));
      const last = batch.messages.at(-1);
      if (last !== undefined && BigInt(last.offset) + 1n > (next.get(key) ?? 0n)) {
        const o = BigInt(last.offset) + 1n;
        next.set(key, o);
        pending.offsets.set(key, { topic: batch.topic, partition: batch.partition, offset: String(o) });
        const target = replayTargets.get(key);
        if (target !== undefined && o >= target) {
          replayTargets.delete(key);
          maybeSettle();
        }
      }
      stats.batches++;
      schedulePump();
      return true;
    },
    onGlobal(e) {
      if (!ready || failed || closed || world === undefined) return; // replayed from the reader's log at open
      collect(tick(world, now(), fold));
      foldGlobal(e);
      maybeSettle();
      schedulePump();
    },
    onTick() {
      if (!ready || failed || closed || world === undefined) return;
      collect(tick(world, now(), fold));
      if (!isEmptyGroup(pending)) schedulePump();
    },
    sessions: () => world?.sessions.size ?? 0,
    unpublished: () => ({ count: inFlightStates + pending.changed.length, since: inFlightSince ?? pendingSince }),
    flush: () =>
      new Promise<void>((resolve) => {
        if (failed || closed || (inFlight === undefined && isEmptyGroup(pending) && pendingGlobal.size === 0 && (out?.backlog() ?? 0) === 0)) return resolve();
        drained.push(resolve);
        schedulePump();
      }),
    async close() {
      ready = false;
      closed = true;
      unwatch?.();
      unwatch = undefined;
      while (inFlight !== undefined) await inFlight;
      for (let t = out?.tail(); t !== undefined; t = out?.tail()) await t;
      settleDrained();
      pending = emptyGroup();
      pendingGlobal = new Map();
      out?.reset();
      const prod = producer;
      const so = statesOut;
      producer = undefined;
      statesOut = undefined;
      world = undefined;
      await prod?.disconnect().catch(() => undefined);
      await so?.disconnect().catch(() => undefined);
    },
  };
};
