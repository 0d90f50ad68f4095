// Properties of the fold over random event sequences (fast-check):
//   - folding the whole sequence = folding it in pieces with a snapshot →
//     JSON → restore in between, wherever the cuts fall;
//   - duplicates (same event_id, anywhere later) are no-ops;
//   - versions of a session rise by exactly one per published change;
//   - wall-clock ticks that never run ahead of event time change nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import {
  DEFAULT_FOLD_CONFIG,
  evolve,
  evolveAll,
  initialWorld,
  restoreWorld,
  snapshotWorld,
  tick,
  type Snapshot,
  type World,
} from '../../services/projector/evolve.ts';
import { sequenceArb } from '../helpers/fold-arbitraries.ts';

const snap = (w: World): string => JSON.stringify(snapshotWorld(w));
const viaJson = (w: World): World => restoreWorld(JSON.parse(JSON.stringify(snapshotWorld(w))) as Snapshot);

const RUNS = { numRuns: Number(process.env.PROPERTY_RUNS ?? 300) };

test('folding in pieces with a snapshot → JSON → restore between them equals folding the whole', () => {
  fc.assert(
    fc.property(sequenceArb(), fc.array(fc.nat(), { maxLength: 4 }), (events, rawCuts) => {
      const whole = evolveAll(initialWorld(), events);
      const cuts = [...new Set(rawCuts.map((c) => c % (events.length + 1)))].sort((a, b) => a - b);
      let w = initialWorld();
      const changed: SessionTrust[] = [];
      let from = 0;
      for (const cut of [...cuts, events.length]) {
        const t = evolveAll(w, events.slice(from, cut));
        changed.push(...t.changed);
        w = viaJson(t.world);
        from = cut;
      }
      assert.equal(snap(w), snap(whole.world));
      assert.deepEqual(changed, whole.changed);
    }),
    RUNS,
  );
});

test('duplicates are no-ops wherever they are replayed', () => {
  fc.assert(
    fc.property(sequenceArb(40), fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 10 }), (events, dups) => {
      // Insert copies of event i at positions after i.
      const withDups: TrustfoldEvent[] = [...events];
      for (const [a, b] of dups) {
        const i = a % events.length;
        const source = events[i] as TrustfoldEvent;
        const at = withDups.indexOf(source) + 1 + (b % (withDups.length - withDups.indexOf(source)));
        withDups.splice(at, 0, { ...source });
      }
      const clean = evolveAll(initialWorld(), events);
      const dirty = evolveAll(initialWorld(), withDups);
      const sessionsOf = (w: World): string => JSON.stringify(snapshotWorld(w).sessions.map(({ applied: _a, ...s }) => s));
      assert.equal(sessionsOf(dirty.world), sessionsOf(clean.world));
      assert.deepEqual(dirty.changed, clean.changed);
    }),
    RUNS,
  );
});

test('each published change raises its session version by exactly one', () => {
  fc.assert(
    fc.property(sequenceArb(), (events) => {
      const { changed } = evolveAll(initialWorld(), events);
      const last = new Map<string, number>();
      for (const s of changed) {
        assert.equal(s.version, (last.get(s.session_id) ?? 0) + 1, `${s.session_id}`);
        last.set(s.session_id, s.version);
      }
    }),
    RUNS,
  );
});

test('wall-clock ticks that never run ahead of event time do not change the result', () => {
  const cfg = { ...DEFAULT_FOLD_CONFIG, maxEventSkewMs: Number.MAX_SAFE_INTEGER };
  fc.assert(
    fc.property(sequenceArb(), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 100 })), { maxLength: 6 }), (events, ticks) => {
      const plain = evolveAll(initialWorld(), events, cfg);
      // A tick before event i, somewhere between event i-1's time and event i's time.
      const at = new Map<number, number>();
      for (const [i, pct] of ticks) at.set(i % events.length, pct);
      let w = initialWorld();
      const changed: SessionTrust[] = [];
      events.forEach((e, i) => {
        const pct = at.get(i);
        const prev = events[i - 1];
        if (pct !== undefined && prev !== undefined) {
          const lo = Date.parse(prev.occurred_at);
          const hi = Date.parse(e.occurred_at);
          const t = tick(w, lo + Math.floor(((hi - lo) * pct) / 100), cfg);
          changed.push(...t.changed);
          w = t.world;
        }
        const t = evolve(w, e, cfg);
        changed.push(...t.changed);
        w = t.world;
      });
      const strip = (x: World): string => JSON.stringify({ ...snapshotWorld(x), wall: null });
      assert.equal(strip(w), strip(plain.world));
      assert.deepEqual(changed, plain.changed);
    }),
    RUNS,
  );
});
