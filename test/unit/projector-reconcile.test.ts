// Version reconciliation after a restore, given/when/then, no broker: what
// was published (`ahead`), the states a replayed fold step produced, and what
// reconcile says to publish and how the world follows.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createCodec } from '../../schemas/codec.ts';
import type { SessionTrust } from '../../schemas/events.ts';
import { clampLoosening, evolve, initialWorld, sessionKeyOf } from '../../services/projector/evolve.ts';
import { reconcile, settle, type Ahead, type TrustBytes } from '../../services/projector/reconcile.ts';
import { decisionFixture } from '../fixtures/events.ts';

const codec = createCodec();
const bytes: TrustBytes = {
  encode: (s) => codec.encodeTrust(s),
  decode: (b) => {
    const r = codec.decodeTrust(b);
    return r.ok ? r.value : undefined;
  },
};

const CAUSE_A = '01a23327-9bfa-71ed-bba2-03a175dccb6e';
const CAUSE_B = '01a23327-9f0a-7fc2-ba5c-5e5837edb89b';

const state = (version: number, over: Partial<SessionTrust> = {}): SessionTrust => ({
  session_id: 'S-1',
  tenant_id: 'acme',
  version,
  tier: 'trusted',
  delegator: 'U-1',
  agent: 'A-17',
  causes: [],
  revoked_roles: [],
  consent_revoked: false,
  freezes: [],
  ended: false,
  updated_at: '2026-12-01T10:00:00.000Z',
  caused_by: CAUSE_A,
  ...over,
});
const KEY = sessionKeyOf('acme', 'S-1');

/** Given: these versions of S-1 were published past the restored world. */
const given = (...published: SessionTrust[]): Map<string, Ahead> =>
  new Map([[KEY, { max: Math.max(...published.map((s) => s.version)), published: new Map(published.map((s) => [s.version, bytes.encode(s)])), verified: 0 }]]);

const degraded = { tier: 'degraded' as const, causes: [{ kind: 'injection_detected' as const, ref: 'SIG-1', event_id: CAUSE_B, since: '2026-12-01T10:00:01.000Z', tier: 'degraded' as const }] };

describe('reconcile', () => {
  test('nothing ahead: every state is published as it is', () => {
    const r = reconcile(new Map(), [state(1), state(2)], bytes);
    assert.deepEqual(r.publish.map((s) => s.version), [1, 2]);
    assert.equal(r.skipped, 0);
  });

  test('a replayed state identical to the published one of its version is not sent again', () => {
    const r = reconcile(given(state(1), state(2, degraded)), [state(1), state(2, degraded)], bytes);
    assert.deepEqual(r.publish, []);
    assert.equal(r.skipped, 2);
    assert.equal(r.verified.get(KEY), 2);
    assert.deepEqual([...r.shifts], []);
  });

  test('the same state reached through another interleaving (only caused_by / updated_at differ) is that version: not sent, the world takes the published provenance', () => {
    // Published: v1 caused by the session_started (A); the replay read a decision (B) first that taught the same facts.
    const r = reconcile(given(state(1), state(2, degraded)), [state(1, { caused_by: CAUSE_B, updated_at: '2026-12-01T10:00:00.500Z' })], bytes);
    assert.deepEqual(r.publish, []);
    assert.deepEqual(r.provenance.get(KEY), { version: 1, caused_by: CAUSE_A, updated_at: '2026-12-01T10:00:00.000Z' });
    assert.equal(r.verified.get(KEY), 1);
    assert.equal(r.shifts.size, 0, 'no version moves past the published ones');
    assert.equal(r.diverged.length, 0);
  });

  test('a replayed state that differs in what a PDP decides on moves this and later versions past everything published', () => {
    const r = reconcile(given(state(1), state(2, degraded), state(3)), [state(1, { tier: 'restricted' }), state(2)], bytes);
    assert.deepEqual(r.publish.map((s) => s.version), [4, 5]);
    assert.equal(r.shifts.get(KEY), 3);
    assert.ok(r.settled.has(KEY));
    assert.deepEqual(r.diverged.map((d) => [d.replayed, d.published]), [[1, 3]]);
  });

  test('a version above everything published is normal and the session leaves ahead', () => {
    const r = reconcile(given(state(1)), [state(2, degraded), state(3)], bytes);
    assert.deepEqual(r.publish.map((s) => s.version), [2, 3]);
    assert.ok(r.settled.has(KEY));
  });
});

describe('settle', () => {
  test('a session that ended on the verified highest version needs nothing; one left behind is published once more past max', () => {
    const ahead = given(state(1), state(2));
    const done = new Map([...ahead].map(([k, a]) => [k, { ...a, verified: 2 }]));
    assert.deepEqual([...settle(done, () => 2).republish], []);
    assert.deepEqual([...settle(ahead, () => 1).republish], [[KEY, 3]]);
    assert.deepEqual(settle(ahead, () => undefined).unknown, [KEY]);
  });
});

describe('loosening signals are dated no later than the broker appended them', () => {
  const trustSet = (occurred_at: string) => ({
    type: 'signal' as const,
    kind: 'trust_set' as const,
    event_id: '01a23327-a2d7-7154-b678-b77ac41b8652',
    tenant_id: 'acme',
    session_id: 'S-1',
    occurred_at,
    tier: 'trusted' as const,
    reason: 'soc reset',
    set_by: 'soc',
  });

  test('a trust_set dated 2099 takes effect at its append time: a real SOC override sent later still wins', () => {
    const appended = '2026-12-01T10:00:00.000Z';
    assert.equal(clampLoosening(trustSet('2099-01-01T00:00:00.000Z'), appended).occurred_at, appended);
    const forged = trustSet('2099-01-01T00:00:00.000Z');
    const override = { ...trustSet('2026-12-01T10:05:00.000Z'), event_id: CAUSE_B, tier: 'restricted' as const };
    const start = evolve(initialWorld(), { ...decisionFixture, tenant_id: 'acme', session_id: 'S-1', occurred_at: '2026-12-01T09:59:00.000Z' }).world;
    // Today's rule without the broker's time: the forged date outranks the real override.
    const unclamped = evolve(evolve(start, forged).world, override);
    assert.equal(unclamped.changed.length, 0, 'without an append time the forged trust_set pins the session');
    const w = evolve(initialWorld(), { ...decisionFixture, tenant_id: 'acme', session_id: 'S-1', occurred_at: '2026-12-01T09:59:00.000Z' }).world;
    const pinned = evolve(w, forged, undefined, appended).world;
    const t = evolve(pinned, override, undefined, '2026-12-01T10:05:00.010Z');
    assert.equal(t.changed.at(-1)?.tier, 'restricted', 'the SOC override that arrived later wins');
  });

  test('restricting signals and on-time loosening ones keep their own time', () => {
    const onTime = trustSet('2026-12-01T09:00:00.000Z');
    assert.equal(clampLoosening(onTime, '2026-12-01T10:00:00.000Z'), onTime);
    const injection = { type: 'signal' as const, kind: 'injection_detected' as const, event_id: CAUSE_B, tenant_id: 'acme', session_id: 'S-1', occurred_at: '2099-01-01T00:00:00.000Z', signal_id: 'SIG-9', severity: 'low' as const, detector: 'd' };
    assert.equal(clampLoosening(injection, '2026-12-01T10:00:00.000Z'), injection);
    assert.equal(clampLoosening(trustSet('2099-01-01T00:00:00.000Z'), undefined).occurred_at, '2099-01-01T00:00:00.000Z');
  });
});
