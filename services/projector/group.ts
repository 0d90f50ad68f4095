// Group commit, the pure part: a group is what the fold produced since the
// last seal — the changed states, the keys it touched, the next input offsets.
// `seal` takes, synchronously and in one place for both delivery modes, what
// that group will write: its state messages, the changelog records of its
// keys as the world holds them at this instant (sessions apart from the facts
// that fan out), and its offsets. Sealing between two batches (never inside
// one) is what makes every write hold exactly the world its offsets imply.
import type { SessionTrust } from '../../schemas/events.ts';
import { sessionKey } from '../../schemas/keys.ts';
import { encodeRecord, recordOf } from './changelog.ts';
import type { World } from './evolve.ts';
import type { InputOffset } from './restore.ts';

export type Group = {
  changed: SessionTrust[];
  touched: Set<string>;
  offsets: Map<string, InputOffset>;
  /** Wall time its first state was folded. */
  firstAt?: number;
};

export const emptyGroup = (): Group => ({ changed: [], touched: new Set(), offsets: new Map() });
export const isEmptyGroup = (g: Group): boolean => g.touched.size === 0 && g.offsets.size === 0;

/** A Kafka message as the producers take it (structurally kafkajs' `Message`). */
export type OutMessage = { key: string; value: Buffer; headers?: Record<string, string>; partition?: number };

export type Sealed = {
  states: OutMessage[];
  /** Changelog records of the sessions the group touched. */
  sessions: OutMessage[];
  /** Changelog records of the facts that fan out (users, freezes). */
  facts: OutMessage[];
  offsets: InputOffset[];
};

export const stateMessageOf = (encode: (s: SessionTrust) => Buffer, s: SessionTrust): OutMessage => ({
  key: sessionKey(s.tenant_id, s.session_id),
  value: encode(s),
  headers: { 'trustfold-tenant': s.tenant_id, 'trustfold-session': s.session_id, 'trustfold-version': String(s.version) },
});

export const seal = (world: World, g: Group, encodeTrust: (s: SessionTrust) => Buffer): Sealed => {
  const sessions: OutMessage[] = [];
  const facts: OutMessage[] = [];
  for (const key of g.touched) {
    const r = recordOf(world, key);
    if (r !== undefined) (r.kind === 'session' ? sessions : facts).push({ key, value: encodeRecord(r) });
  }
  return { states: g.changed.map((s) => stateMessageOf(encodeTrust, s)), sessions, facts, offsets: [...g.offsets.values()] };
};

/** Consumed offsets grouped by topic, as `sendOffsets` takes them. */
export const offsetsByTopic = (offsets: Iterable<InputOffset>): { topic: string; partitions: { partition: number; offset: string }[] }[] => {
  const byTopic = new Map<string, { partition: number; offset: string }[]>();
  for (const o of offsets) {
    const list = byTopic.get(o.topic) ?? [];
    list.push({ partition: o.partition, offset: o.offset });
    byTopic.set(o.topic, list);
  }
  return [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
};
