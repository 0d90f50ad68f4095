// Properties of the fold over random event sequences (fast-check):
//   - folding the whole sequence = folding it in pieces with a snapshot →
//     JSON → restore in between, wherever the cuts fall;
//   - duplicates (same event_id, anywhere later) are no-ops;
//   - versions of a session rise by exactly one per published change;
//   - wall-clock ticks that never run ahead of event time change nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseEvent } from '../../schemas/codec.ts';
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

const T0 = Date.parse('2026-06-09T14:00:00.000Z');
const sessions = ['S-1', 'S-2', 'S-3', 'S-4'];
const users = ['U-1', 'U-2'];
const agents = ['A-1', 'A-2'];
const consents = ['C-1', 'C-2'];
const iso = (ms: number): string => new Date(ms).toISOString();

/** A body without envelope; the sequence generator adds ids and increasing times. */
const bodyArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ s: fc.constantFrom(...sessions), u: fc.constantFrom(...users), a: fc.constantFrom(...agents), c: fc.constantFrom(...consents) }).map((x) => ({
    type: 'signal',
    kind: 'session_started',
    session_id: x.s,
    chain: [{ kind: 'human', id: x.u }, { kind: 'agent', id: x.a }],
    token: { jti: 'J', scopes: [], consent_ref: x.c },
  })),
  fc.record({ s: fc.constantFrom(...sessions), u: fc.constantFrom(...users), a: fc.constantFrom(...agents) }).map((x) => ({
    type: 'decision',
    session_id: x.s,
    chain: [{ kind: 'human', id: x.u }, { kind: 'agent', id: x.a }],
    request: { tool: 'git', action: 'delete_file', resource: 'repo:x' },
    decision: { effect: 'allow', policy_id: 'P' },
  })),
  fc.constantFrom(...sessions).map((s) => ({ type: 'signal', kind: 'session_ended', session_id: s })),
  fc
    .record({ s: fc.constantFrom(...sessions), sev: fc.constantFrom('low', 'medium', 'high', 'critical'), sig: fc.constantFrom('SIG-1', 'SIG-2'), ttl: fc.option(fc.integer({ min: 1, max: 20 })) })
    .map((x) => ({ type: 'signal', kind: 'injection_detected', session_id: x.s, signal_id: x.sig, severity: x.sev, detector: 'd', ttl: x.ttl })),
  fc
    .record({ s: fc.constantFrom(...sessions), tier: fc.constantFrom('trusted', 'degraded', 'restricted', 'revoked'), ttl: fc.option(fc.integer({ min: 1, max: 20 })) })
    .map((x) => ({ type: 'signal', kind: 'trust_set', session_id: x.s, tier: x.tier, reason: 'r', set_by: 'soc', ttl: x.ttl })),
  fc.record({ u: fc.constantFrom(...users), r: fc.constantFrom('r1', 'r2'), k: fc.constantFrom('role_revoked', 'role_granted') }).map((x) => ({ type: 'signal', kind: x.k, user_id: x.u, role: x.r })),
  fc
    .record({ u: fc.constantFrom(...users), c: fc.option(fc.constantFrom(...consents)), k: fc.constantFrom('consent_revoked', 'consent_granted') })
    .map((x) => ({ type: 'signal', kind: x.k, user_id: x.u, ...(x.c !== null && { consent_ref: x.c }) })),
  fc
    .record({
      f: fc.constantFrom('F-1', 'F-2'),
      agent: fc.option(fc.constantFrom(...agents)),
      ttl: fc.option(fc.integer({ min: 1, max: 20 })),
      lift: fc.boolean(),
    })
    .map((x) =>
      x.lift
        ? { type: 'signal', kind: 'change_freeze_lifted', freeze_id: x.f, lifted_by: 'soc' }
        : { type: 'signal', kind: 'change_freeze_raised', freeze_id: x.f, scope: x.agent === null ? { resource_prefix: 'repo:' } : { agent_id: x.agent }, reason: 'r', raised_by: 'soc', ttl: x.ttl },
    ),
  fc.record({ s: fc.constantFrom(...sessions), u: fc.constantFrom(...users), a: fc.constantFrom(...agents) }).map((x) => ({
    type: 'signal',
    kind: 'token_issued',
    jti: 'J',
    user_id: x.u,
    agent_id: x.a,
    scopes: [],
    expires_at: iso(T0 + 3_600_000),
    session_id: x.s,
  })),
  fc.constantFrom(...sessions).map((s) => ({ type: 'signal', kind: 'step_up_requested', session_id: s, request_id: 'R', scope: 'x' })),
);

/** Events with unique ids, times rising by 0–3 minutes, expiries 1–20 minutes after their event. */
const sequenceArb = (max = 60): fc.Arbitrary<TrustfoldEvent[]> =>
  fc.array(fc.tuple(bodyArb, fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: max }).map((items) => {
    let t = T0;
    return items.map(([body, gapMin], i) => {
      t += gapMin * 60_000;
      const { ttl, ...rest } = body as { ttl?: number | null } & Record<string, unknown>;
      const r = parseEvent({
        ...rest,
        ...(typeof ttl === 'number' && { expires_at: iso(t + ttl * 60_000) }),
        event_id: `01976d2a-0000-7000-8000-${String(i + 1).padStart(12, '0')}`,
        tenant_id: 'acme',
        occurred_at: iso(t),
      });
      if (!r.ok) throw new Error(JSON.stringify(r.error));
      return r.value;
    });
  });

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
