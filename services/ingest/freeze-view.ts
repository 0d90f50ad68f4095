// The active freezes of each tenant, for an ingest process that runs neither
// the projector nor a TrustView: `GET /v1/freezes` and the existence check of
// `DELETE /v1/freezes/:id` read it.
//
// A freeze is a tenant's fact, but the projector publishes it only inside the
// trust states of the sessions it reaches (SessionTrust.freezes). So this reads
// the compacted session-trust topic from the beginning, as a TrustView does,
// and admits each record by the same rule (admitTrust) — but keeps per session
// only its version and the ids of the freezes it names, and per tenant one copy
// of each freeze with the sessions naming it: not the trust states themselves.
// Same answer as the TrustView fallback it replaces: a freeze shows once it
// matches a session, and stays while some session's latest state names it.
import type { Kafka } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { ActiveFreeze, SessionTrust } from '../../schemas/events.ts';
import { tupleKey } from '../../schemas/keys.ts';
import { readFromStart } from '../lib/catch-up.ts';
import type { Logger } from '../lib/log.ts';
import { createEpochGate } from '../pdp-client/epoch.ts';
import { admitTrust } from '../pdp-client/trust-view.ts';

export type FreezeView = {
  activeFreezes(tenant: string): ActiveFreeze[];
  /** Everything that was on the topic at start is read. */
  isReady(): boolean;
  close(): Promise<void>;
};

export type FreezeViewOptions = {
  kafka: Kafka;
  /** The compacted session-trust topic. */
  topic: string;
  logger?: Logger;
  codec?: Codec;
  /** As TrustView's: true only against a projector in the idempotent delivery mode. */
  readUncommitted?: boolean;
};

type Held = { version: number; freezeIds: readonly string[] };
type Named = { freeze: ActiveFreeze; sessions: Set<string> };

/** The pure bookkeeping: which freezes the latest state of each session names. */
export const createFreezeIndex = () => {
  const sessions = new Map<string, Held>();
  const byTenant = new Map<string, Map<string, Named>>();
  return {
    held: (state: Pick<SessionTrust, 'tenant_id' | 'session_id'>): number | undefined => sessions.get(tupleKey(state.tenant_id, state.session_id))?.version,
    /** The session's newest state (admitted by the caller). */
    apply(state: Pick<SessionTrust, 'tenant_id' | 'session_id' | 'version' | 'freezes'>): void {
      const key = tupleKey(state.tenant_id, state.session_id);
      let tenant = byTenant.get(state.tenant_id);
      if (tenant === undefined) byTenant.set(state.tenant_id, (tenant = new Map()));
      for (const id of sessions.get(key)?.freezeIds ?? []) {
        const named = tenant.get(id);
        named?.sessions.delete(key);
        if (named?.sessions.size === 0) tenant.delete(id);
      }
      for (const f of state.freezes) {
        const named = tenant.get(f.freeze_id);
        if (named === undefined) tenant.set(f.freeze_id, { freeze: f, sessions: new Set([key]) });
        else {
          named.freeze = f;
          named.sessions.add(key);
        }
      }
      sessions.set(key, { version: state.version, freezeIds: state.freezes.map((f) => f.freeze_id) });
    },
    activeFreezes: (tenant: string): ActiveFreeze[] => [...(byTenant.get(tenant)?.values() ?? [])].map((n) => n.freeze),
  };
};

export const createFreezeView = async (opts: FreezeViewOptions): Promise<FreezeView> => {
  const codec = opts.codec ?? createCodec();
  const index = createFreezeIndex();
  // A group of its own, never committing: it is assigned every partition (see trust-view.ts).
  const { consumer, catchUp } = await readFromStart(opts.kafka, {
    topic: opts.topic,
    groupPrefix: 'trustfold-freeze-view',
    config: { readUncommitted: opts.readUncommitted ?? false },
  });
  // The epoch rule, as TrustView applies it (pdp-client/epoch.ts): a taken-over owner's late state names no freeze.
  const epochs = createEpochGate();
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        if (m.value === null) continue;
        const verdict = epochs.judge(batch.partition, m.offset, m);
        if (verdict.kind === 'refused') opts.logger?.warn({ partition: batch.partition, offset: m.offset, reason: verdict.reason, why: verdict.why }, 'freeze view: refused a trust record');
        if (verdict.kind !== 'state') continue;
        const r = codec.decodeTrust(m.value);
        if (!r.ok) {
          opts.logger?.warn({ partition: batch.partition, offset: m.offset, reason: r.error.message }, 'freeze view: skipping unreadable trust record');
          continue;
        }
        const admission = admitTrust(r.value, { key: m.key === null ? null : m.key.toString('utf8'), offset: m.offset }, index.held(r.value));
        if (!admission.ok) {
          opts.logger?.warn({ partition: batch.partition, offset: m.offset, reason: admission.reason }, 'freeze view: refused a trust record');
          continue;
        }
        if (admission.newer) index.apply(r.value);
      }
    },
  });
  return {
    activeFreezes: index.activeFreezes,
    isReady: catchUp.isDone,
    async close() {
      catchUp.dispose();
      await consumer.disconnect();
    },
  };
};
