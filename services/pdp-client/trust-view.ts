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
//
// A record is refused (counted, not applied; see admitTrust) when its Kafka
// key is not its own session's, or its version is not one the projector can
// have published: more than `maxVersionStep` ahead of the version held, or,
// for a session not held yet, beyond the record's own offset + 1 (every
// version of a session is a record before it on the same partition, and
// compaction keeps offsets). One forged record can then never pin a session.
// Before those checks every record passes the epoch rule (epoch.ts): a state
// of a projector instance whose partition was taken over before it (a paused
// "zombie" in the idempotent scale-out mode) is refused (`stale_epoch`).
import type { Kafka } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import { readFromStart } from '../lib/catch-up.ts';
import { sessionKey, tupleKey } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import { createEpochGate, EPOCH_REFUSALS, type EpochRefusal } from './epoch.ts';

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

export const REFUSAL_REASONS = ['key_mismatch', 'version_jump', 'version_beyond_offset', ...EPOCH_REFUSALS] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/**
 * A record the view did not apply, and why. An epoch refusal (epoch.ts) of a
 * record that is no state (a malformed epoch record) has empty tenant and
 * session and version 0; `why` says what was wrong.
 */
export type RefusedRecord = { reason: RefusalReason; partition: number; offset: string; key: string | null; tenant_id: string; session_id: string; version: number; why?: string };

/** Default bound on how far one record may move a session's version ahead of the one held. */
export const DEFAULT_MAX_VERSION_STEP = 1000;

export type Admission = { ok: true; newer: boolean } | { ok: false; reason: RefusalReason };

/**
 * Whether a trust record may be applied, pure. The projector keys every state
 * by its own (tenant, session), numbers a session's versions 1, 2, 3, … and
 * publishes each one, in order, to the session's partition; a restore moves a
 * session at most just past what it published. So:
 *   - the key must be the payload's session key;
 *   - a version may be at most `maxStep` ahead of the one held;
 *   - a session not held yet cannot have more versions than its partition has
 *     records up to this one (version ≤ offset + 1; compaction keeps offsets).
 * Anything else did not come from the projector, and a version that would
 * pin the session (2^31) is exactly what these bounds refuse. `newer: false`
 * = a version the view already has (or went past): nothing to do.
 */
export const admitTrust = (
  state: Pick<SessionTrust, 'tenant_id' | 'session_id' | 'version'>,
  record: { key: string | null; offset: string },
  held: number | undefined,
  maxStep = DEFAULT_MAX_VERSION_STEP,
): Admission => {
  if (record.key !== sessionKey(state.tenant_id, state.session_id)) return { ok: false, reason: 'key_mismatch' };
  if (held !== undefined) {
    if (state.version <= held) return { ok: true, newer: false };
    return state.version - held > maxStep ? { ok: false, reason: 'version_jump' } : { ok: true, newer: true };
  }
  return BigInt(state.version) > BigInt(record.offset) + 1n ? { ok: false, reason: 'version_beyond_offset' } : { ok: true, newer: true };
};

export type TrustView = {
  /** Resolves once everything that was in the topic at start is loaded. */
  ready(): Promise<void>;
  isReady(): boolean;
  get(sessionId: string, tenantId: string): TrustLookup;
  /** Every tenant's state of a session id (for operators who did not name a tenant). */
  find(sessionId: string): SessionTrust[];
  /** Every state held, in no particular order. */
  all(): Iterable<SessionTrust>;
  /** Every state of one tenant (an index: a tenant's SSE snapshot does not walk the other tenants). */
  ofTenant(tenantId: string): Iterable<SessionTrust>;
  /** Called after each accepted newer version; returns an unsubscribe function. */
  onChange(listener: TrustChangeListener): () => void;
  size(): number;
  /** Records refused so far, by reason (see admitTrust). */
  refused(): Record<RefusalReason, number>;
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
  /** How far one record may move a session's version ahead of the one held (default 1000). */
  maxVersionStep?: number;
  /** Called for every refused record (after it is counted). */
  onRefused?: (r: RefusedRecord) => void;
  /** How far one epoch record may raise a partition's epoch (default 1000; services/pdp-client/epoch.ts). */
  maxEpochStep?: number;
};

type Entry = { state: SessionTrust; receivedAt: number };

const keyOf = (tenantId: string, sessionId: string): string => tupleKey(tenantId, sessionId);

export const createTrustView = async (opts: TrustViewOptions): Promise<TrustView> => {
  const codec = opts.codec ?? createCodec();
  const now = opts.now ?? Date.now;
  const entries = new Map<string, Entry>();
  const tenantsBySession = new Map<string, Set<string>>();
  const sessionsByTenant = new Map<string, Set<string>>();
  const listeners = new Set<TrustChangeListener>();
  let lastHeard = now();

  // A group of its own, never committing: it is assigned every partition.
  const { consumer, catchUp } = await readFromStart(opts.kafka, {
    topic: opts.topic,
    groupPrefix: opts.groupPrefix ?? 'trustfold-trust-view',
    config: { maxWaitTimeInMs: opts.maxWaitTimeInMs ?? 250, readUncommitted: opts.readUncommitted ?? false },
  });
  consumer.on(consumer.events.FETCH, () => {
    lastHeard = now();
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, () => {
    lastHeard = now();
  });

  const refusals = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  const refuse = (refused: RefusedRecord): void => {
    refusals[refused.reason]++;
    opts.logger?.warn(refused, 'trust view: refused a trust record');
    opts.onRefused?.(refused);
  };
  // The epoch rule (epoch.ts): a state of an owner whose partition was taken over before it is never applied.
  const epochs = createEpochGate(opts.maxEpochStep === undefined ? {} : { maxStep: opts.maxEpochStep });

  const accept = (state: SessionTrust, record: { partition: number; offset: string; key: Buffer | null }, epochRefusal?: { reason: EpochRefusal; why: string }): void => {
    const key = keyOf(state.tenant_id, state.session_id);
    const prev = entries.get(key);
    const recordKey = record.key === null ? null : record.key.toString('utf8');
    const at = { partition: record.partition, offset: record.offset, key: recordKey, tenant_id: state.tenant_id, session_id: state.session_id, version: state.version };
    if (epochRefusal !== undefined) return refuse({ ...at, reason: epochRefusal.reason, why: epochRefusal.why });
    const admission = admitTrust(state, { key: recordKey, offset: record.offset }, prev?.state.version, opts.maxVersionStep);
    if (!admission.ok) return refuse({ ...at, reason: admission.reason });
    if (!admission.newer) return; // never go back
    entries.set(key, { state, receivedAt: now() });
    let tenants = tenantsBySession.get(state.session_id);
    if (tenants === undefined) tenantsBySession.set(state.session_id, (tenants = new Set()));
    tenants.add(state.tenant_id);
    let sessions = sessionsByTenant.get(state.tenant_id);
    if (sessions === undefined) sessionsByTenant.set(state.tenant_id, (sessions = new Set()));
    sessions.add(state.session_id);
    for (const l of listeners) {
      try {
        l(state, prev?.state);
      } catch (e) {
        opts.logger?.error({ err: (e as Error).message }, 'trust view listener failed');
      }
    }
  };

  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        if (m.value === null) continue; // a tombstone: nothing to show
        const verdict = epochs.judge(batch.partition, m.offset, m);
        if (verdict.kind === 'epoch') continue; // an epoch record: no state
        const r = codec.decodeTrust(m.value);
        if (!r.ok) {
          if (verdict.kind === 'refused') refuse({ reason: verdict.reason, why: verdict.why, partition: batch.partition, offset: m.offset, key: m.key === null ? null : m.key.toString('utf8'), tenant_id: '', session_id: '', version: 0 });
          else opts.logger?.warn({ partition: batch.partition, offset: m.offset, reason: r.error.message }, 'skipping unreadable trust record');
          continue;
        }
        accept(r.value, { partition: batch.partition, offset: m.offset, key: m.key }, verdict.kind === 'refused' ? verdict : undefined);
      }
    },
  });
  return {
    ready: () => catchUp.done,
    isReady: catchUp.isDone,
    get(sessionId, tenantId) {
      const stalenessMs = Math.max(0, now() - lastHeard);
      if (!catchUp.isDone()) return { known: false, reason: 'not_ready', stalenessMs };
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
    *ofTenant(tenantId) {
      for (const sessionId of sessionsByTenant.get(tenantId) ?? []) {
        const e = entries.get(keyOf(tenantId, sessionId));
        if (e !== undefined) yield e.state;
      }
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    size: () => entries.size,
    refused: () => ({ ...refusals }),
    async close() {
      listeners.clear();
      catchUp.dispose();
      await consumer.disconnect();
    },
  };
};
