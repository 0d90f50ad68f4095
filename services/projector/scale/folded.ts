// Scale-out, what a task opens from: a partition's world restored from its
// changelog, with the published marker and the latest epoch claim. Restored at
// once from the records (a restore read, the byte standby), or folded one
// record at a time as the warm standby reads them (Kafka Streams' standby
// replica): a takeover then hands that world over instead of decoding and
// restoring a partition's records at open. Both give the same world for the
// same records, the newest record of each key deciding as in
// snapshotFromRecords (test/unit/projector-folded.test.ts).
import { claimedEpochOf, keyOfRecord, publishedMarkerOf, snapshotFromRecords, type ChangelogRecord, type PublishedMarker } from '../changelog.ts';
import { initialWorld, restoreWorld, sessionKeyOf, type World } from '../evolve.ts';
import { restoreFreeze, restoreUser } from '../fold/snapshot.ts';
import { putSession } from '../fold/world.ts';

export type Restored = {
  world: World;
  /** The newest published marker (where the recorded world's input and global kinds end). */
  marker: PublishedMarker | undefined;
  /** The latest epoch claim (idempotent scale-out; 0: none). */
  claimedEpoch: number;
  /** Keys restored (sessions, users, freezes, marker, claim). */
  records: number;
};

export const restoredFrom = (records: readonly ChangelogRecord[]): Restored => ({
  world: restoreWorld(snapshotFromRecords(records)),
  marker: publishedMarkerOf(records),
  claimedEpoch: claimedEpochOf(records),
  records: records.length,
});

export type Folding = {
  /** The next record of the partition, in offset order. */
  apply(r: ChangelogRecord): void;
  /** The world so far; the folding must not be used after (the task folds on into that world). */
  take(): Restored;
  keys(): number;
};

export const createFolding = (): Folding => {
  const world = initialWorld();
  let marker: PublishedMarker | undefined;
  let claimedEpoch = 0;
  const keys = new Set<string>();
  let taken = false;
  return {
    apply(r) {
      if (taken) throw new Error('folding already taken');
      keys.add(keyOfRecord(r));
      switch (r.kind) {
        case 'session': {
          const key = sessionKeyOf(r.value.tenant_id, r.value.session_id);
          const prev = world.sessions.get(key);
          // The newest record of a key decides, unless it is an older version (snapshotFromRecords' rule).
          if (prev === undefined || prev.version <= r.value.version) putSession(world, key, prev, r.value);
          return;
        }
        case 'user':
          return restoreUser(world, r.value);
        case 'freeze':
          return restoreFreeze(world, r.value);
        case 'published':
          marker = r.value;
          return;
        case 'epoch':
          claimedEpoch = Math.max(claimedEpoch, r.value.epoch);
          return;
      }
    },
    take() {
      taken = true;
      return { world, marker, claimedEpoch, records: keys.size };
    },
    keys: () => keys.size,
  };
};
