// TrustView: a PDP's live local copy of every session's trust state.
//
// It reads the compacted session-trust topic from the beginning, all
// partitions, and keeps the highest version per session. kafkajs can only
// consume through a group, so each view joins a group of its own (a random id,
// never committing): it is the only member, so it is assigned every
// partition, and if it is ever rebalanced it simply starts again from the
// beginning — harmless, because an update is only taken when its version is
// higher than what the view holds.
//
// `get` never guesses: an unknown session is `{ known: false }`, and so is
// any session while the view has not caught up yet.
import { randomUUID } from 'node:crypto';
import type { Consumer, Kafka } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import { retryTransient, tupleKey } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';

export type TrustLookup =
  | {
      known: true;
      state: SessionTrust;
      version: number;
      /** How long ago the view last heard from the topic (a fetch round), ms: an upper bound on how out of date `state` can be. */
      stalenessMs: number;
      /** When this view received this version (ms, local clock). */
      receivedAt: number;
    }
  | { known: false; reason: 'not_ready' | 'unknown_session'; stalenessMs: number };

export type TrustChangeListener = (state: SessionTrust, previous: SessionTrust | undefined) => void;

export type TrustView = {
  /** Resolves once everything that was in the topic at start is loaded. */
  ready(): Promise<void>;
  isReady(): boolean;
  get(sessionId: string, tenantId: string): TrustLookup;
  /** Every tenant's state of a session id (for operators who did not name a tenant). */
  find(sessionId: string): SessionTrust[];
  /** Every state held, in no particular order. */
  all(): Iterable<SessionTrust>;
  /** Called after each accepted newer version; returns an unsubscribe function. */
  onChange(listener: TrustChangeListener): () => void;
  size(): number;
  close(): Promise<void>;
};

export type TrustViewOptions = {
  kafka: Kafka;
  /** The compacted session-trust topic. */
  topic: string;
  codec?: Codec;
  logger?: Logger;
  now?: () => number;
  /** Prefix of the view's private consumer group. */
  groupPrefix?: string;
  /** Longest a fetch waits for new data; also bounds staleness when idle. Default 250 ms. */
  maxWaitTimeInMs?: number;
  /**
   * Read records of open (and aborted) transactions too. Default false.
   *
   * Safe — and what to use — only against a projector in the `idempotent`
   * delivery mode: every state it publishes is final (no transaction can take
   * it back) and a version is never reissued with a different content. A
   * `transactional` projector writes states inside transactions; after an abort
   * it re-folds from its changelog, and the same version number can then carry
   * another state (batches of several partitions interleave differently, wall
   * clock expiries land elsewhere). A view reading uncommitted would keep the
   * aborted content and ignore the committed one (same version), so keep the
   * default there. Against an idempotent projector, read_committed costs
   * nothing either (no transactions on the topic) unless a transactional
   * predecessor left a transaction open: then read_committed waits for its
   * timeout, read_uncommitted does not.
   */
  readUncommitted?: boolean;
};

type Entry = { state: SessionTrust; receivedAt: number };

const keyOf = (tenantId: string, sessionId: string): string => tupleKey(tenantId, sessionId);

export const createTrustView = async (opts: TrustViewOptions): Promise<TrustView> => {
  const codec = opts.codec ?? createCodec();
  const now = opts.now ?? Date.now;
  const entries = new Map<string, Entry>();
  const tenantsBySession = new Map<string, Set<string>>();
  const listeners = new Set<TrustChangeListener>();
  let lastHeard = now();
  let caughtUp = false;

  const admin = opts.kafka.admin();
  await admin.connect();
  const targets = new Map<number, bigint>();
  try {
    for (const p of await retryTransient(() => admin.fetchTopicOffsets(opts.topic))) {
      if (BigInt(p.high) > BigInt(p.low)) targets.set(p.partition, BigInt(p.high));
    }
  } finally {
    await admin.disconnect();
  }

  let markReady!: () => void;
  const readyPromise = new Promise<void>((r) => (markReady = r));
  const checkReady = (): void => {
    if (!caughtUp && targets.size === 0) {
      caughtUp = true;
      markReady();
    }
  };

  const consumer: Consumer = opts.kafka.consumer({
    groupId: `${opts.groupPrefix ?? 'trustfold-trust-view'}-${randomUUID()}`,
    maxWaitTimeInMs: opts.maxWaitTimeInMs ?? 250,
    readUncommitted: opts.readUncommitted ?? false,
  });
  consumer.on(consumer.events.FETCH, () => {
    lastHeard = now();
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    lastHeard = now();
    const target = targets.get(e.payload.partition);
    if (target !== undefined && BigInt(e.payload.lastOffset) + 1n >= target) {
      targets.delete(e.payload.partition);
      checkReady();
    }
  });

  const accept = (state: SessionTrust): void => {
    const key = keyOf(state.tenant_id, state.session_id);
    const prev = entries.get(key);
    if (prev !== undefined && prev.state.version >= state.version) return; // never go back
    entries.set(key, { state, receivedAt: now() });
    let tenants = tenantsBySession.get(state.session_id);
    if (tenants === undefined) tenantsBySession.set(state.session_id, (tenants = new Set()));
    tenants.add(state.tenant_id);
    for (const l of listeners) {
      try {
        l(state, prev?.state);
      } catch (e) {
        opts.logger?.error({ err: (e as Error).message }, 'trust view listener failed');
      }
    }
  };

  await consumer.connect();
  await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        if (m.value === null) continue; // a tombstone: nothing to show
        const r = codec.decodeTrust(m.value);
        if (!r.ok) {
          opts.logger?.warn({ partition: batch.partition, offset: m.offset, reason: r.error.message }, 'skipping unreadable trust record');
          continue;
        }
        accept(r.value);
      }
    },
  });
  checkReady();

  return {
    ready: () => readyPromise,
    isReady: () => caughtUp,
    get(sessionId, tenantId) {
      const stalenessMs = Math.max(0, now() - lastHeard);
      if (!caughtUp) return { known: false, reason: 'not_ready', stalenessMs };
      const e = entries.get(keyOf(tenantId, sessionId));
      if (e === undefined) return { known: false, reason: 'unknown_session', stalenessMs };
      return { known: true, state: e.state, version: e.state.version, stalenessMs, receivedAt: e.receivedAt };
    },
    find(sessionId) {
      const out: SessionTrust[] = [];
      for (const t of tenantsBySession.get(sessionId) ?? []) {
        const e = entries.get(keyOf(t, sessionId));
        if (e !== undefined) out.push(e.state);
      }
      return out;
    },
    *all() {
      for (const e of entries.values()) yield e.state;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    size: () => entries.size,
    async close() {
      listeners.clear();
      await consumer.disconnect();
    },
  };
};
