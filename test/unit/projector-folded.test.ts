// The warm standby's folded world (services/projector/scale/folded.ts): the
// changelog a fold writes, applied one record at a time in offset order, gives
// the world a takeover would restore from the same records at once — from the
// newest record of each key (the byte standby) and from every record (a
// restore read) — with the same marker and epoch claim; and both worlds go on
// the same way (the expiries they hold fire alike).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeRecord, encodeRecord, keyOfRecord, recordOf, type ChangelogRecord } from '../../services/projector/changelog.ts';
import { DEFAULT_FOLD_CONFIG, evolve, initialWorld, snapshotWorld, tick, type World } from '../../services/projector/evolve.ts';
import { createFolding, restoredFrom } from '../../services/projector/scale/folded.ts';
import { sequenceArb, T0 } from '../helpers/fold-arbitraries.ts';

const RUNS = { numRuns: Number(process.env.PROPERTY_RUNS ?? 300) };
const snap = (w: World): string => JSON.stringify(snapshotWorld(w));
const viaBytes = (r: ChangelogRecord): ChangelogRecord => {
  const d = decodeRecord(encodeRecord(r));
  if (!d.ok) throw new Error(d.error);
  return d.value;
};

/** The newest record of each key, in the order keys first appeared (a compacted changelog, the byte standby's map). */
const newestPerKey = (records: readonly ChangelogRecord[]): ChangelogRecord[] => {
  const m = new Map<string, ChangelogRecord>();
  for (const r of records) m.set(keyOfRecord(r), r);
  return [...m.values()];
};

test('records folded one at a time = the same records restored at once (newest per key, and all of them)', () => {
  fc.assert(
    fc.property(sequenceArb(), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 9 })), { maxLength: 4 }), (events, extras) => {
      // The changelog of a fold: after each event, the records of the keys it touched; markers and claims between.
      let w = initialWorld();
      const records: ChangelogRecord[] = [];
      events.forEach((e, i) => {
        const t = evolve(w, e, DEFAULT_FOLD_CONFIG);
        w = t.world;
        for (const key of t.touched) {
          const r = recordOf(w, key);
          if (r !== undefined) records.push(viaBytes(r));
        }
        for (const [at, epoch] of extras) {
          if (at % events.length !== i) continue;
          records.push({ kind: 'published', value: { partitions: [], consumed: [{ topic: 'in', partition: 0, offset: String(i + 1) }] } });
          records.push({ kind: 'epoch', value: { epoch } });
        }
      });
      const folding = createFolding();
      for (const r of records) folding.apply(r);
      const folded = folding.take();
      for (const other of [restoredFrom(newestPerKey(records)), restoredFrom(records)]) {
        assert.equal(snap(folded.world), snap(other.world));
        assert.deepEqual(folded.marker, other.marker);
        assert.equal(folded.records, newestPerKey(records).length);
      }
      assert.equal(folded.claimedEpoch, Math.max(0, ...records.flatMap((r) => (r.kind === 'epoch' ? [r.value.epoch] : []))));
      // What the restored worlds still hold to do (expiring causes and freezes): the same transitions, an hour on.
      const atOnce = restoredFrom(newestPerKey(records)).world;
      const later = T0 + 6 * 3_600_000;
      assert.deepEqual(tick(folded.world, later, DEFAULT_FOLD_CONFIG).changed, tick(atOnce, later, DEFAULT_FOLD_CONFIG).changed);
      assert.equal(snap(folded.world), snap(atOnce));
    }),
    RUNS,
  );
});

test('a folding is handed over once', () => {
  const f = createFolding();
  f.apply({ kind: 'epoch', value: { epoch: 3 } });
  assert.equal(f.take().claimedEpoch, 3);
  assert.throws(() => f.apply({ kind: 'epoch', value: { epoch: 4 } }), /already taken/);
});
