// Idempotent mode, after a restore: the replay of input the changelog did not
// record meets states already published. `reconcile`/`settle` (reconcile.ts)
// are pure and say what to publish and how versions follow; this applies
// their answer to the sessions the replay left `ahead` and to the world.
import type { Codec } from '../../schemas/codec.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import type { Logger } from '../lib/log.ts';
import type { ProjectorStats } from './api.ts';
import type { SessionState, World } from './evolve.ts';
import { reconcile, settle, type Ahead, type TrustBytes } from './reconcile.ts';

export type Resume = {
  /** A restore found these sessions published past the restored world. */
  restored(ahead: Map<string, Ahead>): void;
  /** Sessions still ahead. */
  size(): number;
  /** What to publish of a fold step's states, applied to `ahead` and the world. */
  reconciled(world: World, changed: SessionTrust[]): SessionTrust[];
  /**
   * Once the replay folded everything the previous run could have: moves the
   * sessions it left behind what was published past it, calling `republish`
   * with each one's next state. False when nothing was ahead.
   */
  settle(world: World, republish: (key: string, next: SessionState) => void): boolean;
};

export const createResume = (deps: { codec: Codec; logger: Logger; stats: Pick<ProjectorStats, 'republishSkipped' | 'rebased'> }): Resume => {
  const { codec, logger, stats } = deps;
  let ahead = new Map<string, Ahead>();
  const trustBytes: TrustBytes = {
    encode: (state) => codec.encodeTrust(state),
    decode: (bytes) => {
      const r = codec.decodeTrust(bytes);
      return r.ok ? r.value : undefined;
    },
  };

  return {
    restored: (a) => {
      ahead = a;
    },
    size: () => ahead.size,
    reconciled: (world, changed) => {
      if (ahead.size === 0) return changed;
      const r = reconcile(ahead, changed, trustBytes);
      for (const [key, v] of r.verified) {
        const a = ahead.get(key);
        if (a !== undefined) a.verified = v;
      }
      for (const key of r.settled) ahead.delete(key);
      for (const [key, p] of r.provenance) {
        const ws = world.sessions.get(key);
        if (ws !== undefined && ws.version === p.version) world.sessions.set(key, { ...ws, caused_by: p.caused_by, updated_at: p.updated_at });
      }
      for (const [key, d] of r.shifts) {
        const ws = world.sessions.get(key);
        if (ws !== undefined) world.sessions.set(key, { ...ws, version: ws.version + d });
      }
      for (const d of r.diverged) logger.warn({ session: d.session, tenant: d.tenant, replayed: d.replayed, published: d.published }, 'replay diverged from published states; moving past them');
      stats.republishSkipped += r.skipped;
      stats.rebased += r.diverged.length;
      return r.publish;
    },
    settle: (world, republish) => {
      if (ahead.size === 0) return false;
      const { republish: versions, unknown } = settle(ahead, (key) => world.sessions.get(key)?.version);
      for (const key of unknown) logger.warn({ key }, 'a published session is unknown after the replay');
      for (const [key, version] of versions) {
        const ws = world.sessions.get(key);
        if (ws === undefined) continue;
        const next = { ...ws, version };
        world.sessions.set(key, next);
        republish(key, next);
        stats.rebased++;
      }
      ahead.clear();
      return true;
    },
  };
};
