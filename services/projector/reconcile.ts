// Version reconciliation after a restore (idempotent delivery): the replay of
// input the changelog did not record must not reuse a published version for
// another state, and must not move versions past what was published when it
// re-derives the same states. Pure: given what was published (`ahead`) and
// the states a fold step produced, it says what to publish and how the
// world's sessions follow; the runtime applies it.
//
// Per replayed state of a session that is ahead (published past the restored
// world):
// - version above everything published → normal; the session leaves `ahead`;
// - byte-identical to the published one of its version → not sent again
//   (PDPs have it);
// - equal but for provenance (`caused_by`, `updated_at`): the same state
//   reached through another interleaving of the two input topics (a decision
//   read before its session_started that teaches the same facts) → it *is*
//   that version; not sent, and the world takes the published provenance so
//   the changelog records what the topic holds;
// - anything else (or a version never seen) → the replay took another path:
//   this state and the session's later ones are shifted past everything
//   published (`max + 1`, ...), in the output and in the world.
import type { SessionTrust } from '../../schemas/events.ts';
import { sessionKeyOf } from './evolve.ts';

/** What was published for one session beyond the restored world. */
export type Ahead = {
  /** Highest version published. */
  max: number;
  /** The published bytes of each version seen. */
  published: Map<number, Buffer>;
  /** Highest version the replay re-derived as published. */
  verified: number;
};

/** The state codec, as reconcile needs it. */
export type TrustBytes = {
  encode(state: SessionTrust): Buffer;
  decode(bytes: Buffer): SessionTrust | undefined;
};

export type Provenance = { version: number; caused_by: string; updated_at: string };

export type Divergence = { key: string; session: string; tenant: string; replayed: number; published: number };

export type Reconciled = {
  /** The states to publish, in order (shifted where the replay diverged). */
  publish: SessionTrust[];
  /** Sessions that leave `ahead`. */
  settled: Set<string>;
  /** Session → the highest version re-derived as published. */
  verified: Map<string, number>;
  /** Session → how far its world version moves (the replay diverged). */
  shifts: Map<string, number>;
  /** Session → the published provenance its world state takes, if the world is still at that version. */
  provenance: Map<string, Provenance>;
  /** Replayed states not sent again (identical, or equal but for provenance). */
  skipped: number;
  diverged: Divergence[];
};

/** The published state when `s` differs from it only in `caused_by` / `updated_at`. */
const equalButProvenance = (s: SessionTrust, published: Buffer, bytes: TrustBytes): SessionTrust | undefined => {
  const p = bytes.decode(published);
  if (p === undefined) return undefined;
  return bytes.encode({ ...s, caused_by: p.caused_by, updated_at: p.updated_at }).equals(published) ? p : undefined;
};

export const reconcile = (ahead: ReadonlyMap<string, Readonly<Ahead>>, changed: readonly SessionTrust[], bytes: TrustBytes): Reconciled => {
  const r: Reconciled = { publish: [], settled: new Set(), verified: new Map(), shifts: new Map(), provenance: new Map(), skipped: 0, diverged: [] };
  if (ahead.size === 0) {
    r.publish.push(...changed);
    return r;
  }
  for (const s of changed) {
    const key = sessionKeyOf(s.tenant_id, s.session_id);
    const shift = r.shifts.get(key);
    if (shift !== undefined) {
      r.publish.push({ ...s, version: s.version + shift });
      continue;
    }
    const a = r.settled.has(key) ? undefined : ahead.get(key);
    if (a === undefined) {
      r.publish.push(s);
      continue;
    }
    if (s.version > a.max) {
      r.settled.add(key);
      r.publish.push(s);
      continue;
    }
    const published = a.published.get(s.version);
    if (published !== undefined && bytes.encode(s).equals(published)) {
      r.verified.set(key, s.version);
      r.skipped++;
      continue;
    }
    const same = published === undefined ? undefined : equalButProvenance(s, published, bytes);
    if (same !== undefined) {
      r.provenance.set(key, { version: s.version, caused_by: same.caused_by, updated_at: same.updated_at });
      r.verified.set(key, s.version);
      r.skipped++;
      continue;
    }
    const d = a.max + 1 - s.version;
    r.shifts.set(key, d);
    r.settled.add(key);
    r.diverged.push({ key, session: s.session_id, tenant: s.tenant_id, replayed: s.version, published: a.max });
    r.publish.push({ ...s, version: s.version + d });
  }
  return r;
};

/**
 * Once the replay has folded every input record that existed at the restore
 * (everything the previous run could have folded), a session still ahead
 * either ended exactly on a verified published version (nothing to do), or
 * took another path with fewer changes: its current state is published once
 * more, past everything published. Returns session → the version to publish
 * its current state at; `current` gives the world's version (undefined if the
 * session is unknown after the replay).
 */
export const settle = (ahead: ReadonlyMap<string, Readonly<Ahead>>, current: (key: string) => number | undefined): { republish: Map<string, number>; unknown: string[] } => {
  const republish = new Map<string, number>();
  const unknown: string[] = [];
  for (const [key, a] of ahead) {
    const version = current(key);
    if (version === undefined) unknown.push(key);
    else if (!(version === a.max && a.verified === a.max)) republish.set(key, a.max + 1);
  }
  return { republish, unknown };
};
