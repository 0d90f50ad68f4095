// Given events → expected trust states. No broker, no clock: time is the
// events' own `occurred_at` or an explicit tick.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseEvent } from '../../schemas/codec.ts';
import type { SessionTrust, TrustfoldEvent, TrustfoldEventInput } from '../../schemas/events.ts';
import {
  DEFAULT_FOLD_CONFIG,
  evolve,
  evolveAll,
  initialWorld,
  sessionKeyOf,
  snapshotWorld,
  tick,
  viewOf,
  type FoldConfig,
  type World,
} from '../../services/projector/evolve.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

let n = 1000;
const nextId = (): string => `01976d2a-0000-7000-8000-${String(n++).padStart(12, '0')}`;

/** A parsed event from a fixture with overrides and a fresh event id. */
const ev = (base: TrustfoldEventInput, over: Record<string, unknown> = {}): TrustfoldEvent => {
  const r = parseEvent({ ...base, event_id: nextId(), ...over });
  if (!r.ok) assert.fail(JSON.stringify(r.error));
  return r.value;
};

const started = (session: string, user = 'U-442', at = '2026-06-09T14:00:00.000Z', extra: Record<string, unknown> = {}): TrustfoldEvent =>
  ev(signalFixtures.session_started, { session_id: session, chain: [{ kind: 'human', id: user }, { kind: 'agent', id: 'A-17', version: '3.2' }], occurred_at: at, ...extra });

const { session_id: _noSession, ...tokenWithoutSession } = signalFixtures.token_issued;

const stateOf = (w: World, session: string, tenant = 'acme'): SessionTrust | undefined => {
  const s = w.sessions.get(sessionKeyOf(tenant, session));
  return s === undefined || s.version === 0 ? undefined : viewOf(s);
};
const must = (w: World, session: string): SessionTrust => {
  const s = stateOf(w, session);
  assert.ok(s, `session ${session} is unknown`);
  return s;
};

const fold = (events: TrustfoldEvent[], cfg: FoldConfig = DEFAULT_FOLD_CONFIG): World => evolveAll(initialWorld(), events, cfg).world;

describe('every signal kind has its default effect', () => {
  const s9 = started('S-9');
  const cases: { name: string; events: TrustfoldEvent[]; tier: SessionTrust['tier'] | 'unknown'; check?: (s: SessionTrust) => void }[] = [
    {
      name: 'session_started: session known, trusted, facts learned',
      events: [s9],
      tier: 'trusted',
      check: (s) => {
        assert.equal(s.delegator, 'U-442');
        assert.equal(s.agent, 'A-17');
        assert.equal(s.agent_version, '3.2');
        assert.equal(s.consent_ref, 'C-88');
        assert.equal(s.version, 1);
        assert.equal(s.caused_by, s9.event_id);
      },
    },
    { name: 'session_ended: revoked and ended', events: [s9, ev(signalFixtures.session_ended)], tier: 'revoked', check: (s) => assert.equal(s.ended, true) },
    { name: 'injection low → degraded', events: [s9, ev(signalFixtures.injection_detected, { severity: 'low' })], tier: 'degraded' },
    { name: 'injection medium → degraded', events: [s9, ev(signalFixtures.injection_detected, { severity: 'medium' })], tier: 'degraded' },
    {
      name: 'injection high → restricted, cause listed',
      events: [s9, ev(signalFixtures.injection_detected, { severity: 'high' })],
      tier: 'restricted',
      check: (s) => assert.deepEqual(s.causes.map((c) => [c.kind, c.ref]), [['injection_detected', 'SIG-INJ-8821']]),
    },
    { name: 'injection critical → restricted', events: [s9, ev(signalFixtures.injection_detected, { severity: 'critical' })], tier: 'restricted' },
    {
      name: 'trust_set overrides and clears earlier causes',
      events: [s9, ev(signalFixtures.injection_detected), ev(signalFixtures.trust_set, { tier: 'degraded' })],
      tier: 'degraded',
      check: (s) => assert.deepEqual(s.causes.map((c) => c.kind), ['trust_set']),
    },
    { name: 'trust_set can raise to revoked', events: [s9, ev(signalFixtures.trust_set, { tier: 'revoked' })], tier: 'revoked' },
    {
      name: 'role_revoked → degraded, role listed',
      events: [s9, ev(signalFixtures.role_revoked)],
      tier: 'degraded',
      check: (s) => assert.deepEqual(s.revoked_roles, ['payments-admin']),
    },
    {
      name: 'role_granted restores',
      events: [s9, ev(signalFixtures.role_revoked), ev(signalFixtures.role_granted)],
      tier: 'trusted',
      check: (s) => assert.deepEqual(s.revoked_roles, []),
    },
    { name: 'consent_revoked (matching ref) → revoked', events: [s9, ev(signalFixtures.consent_revoked)], tier: 'revoked', check: (s) => assert.equal(s.consent_revoked, true) },
    { name: 'consent_revoked (other ref) → unchanged', events: [s9, ev(signalFixtures.consent_revoked, { consent_ref: 'C-other' })], tier: 'trusted', check: (s) => assert.equal(s.version, 1) },
    { name: 'consent_revoked (no ref) → revoked', events: [s9, ev(signalFixtures.consent_revoked, { consent_ref: undefined })], tier: 'revoked' },
    { name: 'consent_granted restores', events: [s9, ev(signalFixtures.consent_revoked), ev(signalFixtures.consent_granted)], tier: 'trusted', check: (s) => assert.equal(s.consent_revoked, false) },
    {
      name: 'change_freeze_raised: listed, tier unchanged',
      events: [s9, ev(signalFixtures.change_freeze_raised)],
      tier: 'trusted',
      check: (s) => {
        assert.deepEqual(s.freezes.map((f) => f.freeze_id), ['INC-77']);
        assert.equal(s.version, 2);
      },
    },
    {
      name: 'change_freeze_lifted: removed',
      events: [s9, ev(signalFixtures.change_freeze_raised), ev(signalFixtures.change_freeze_lifted)],
      tier: 'trusted',
      check: (s) => {
        assert.deepEqual(s.freezes, []);
        assert.equal(s.version, 3);
      },
    },
    { name: 'step_up_requested: audit only', events: [s9, ev(signalFixtures.step_up_requested)], tier: 'trusted', check: (s) => assert.equal(s.version, 1) },
    { name: 'step_up_resolved: audit only', events: [s9, ev(signalFixtures.step_up_resolved)], tier: 'trusted', check: (s) => assert.equal(s.version, 1) },
    { name: 'step_up alone does not make a session known', events: [ev(signalFixtures.step_up_requested)], tier: 'unknown' },
    {
      name: 'token_issued with a session teaches its facts',
      events: [ev(signalFixtures.token_issued)],
      tier: 'trusted',
      check: (s) => {
        assert.deepEqual([s.delegator, s.agent, s.consent_ref, s.version], ['U-442', 'A-17', 'C-88', 1]);
        assert.deepEqual(s.causes, []);
      },
    },
    {
      name: 'token_issued without a session makes no session known',
      events: [ev(tokenWithoutSession)],
      tier: 'unknown',
    },
    {
      name: 'a decision teaches facts of a session that never sent session_started',
      events: [ev(decisionFixture, { session_id: 'S-9' })],
      tier: 'trusted',
      check: (s) => {
        assert.equal(s.delegator, 'U-442');
        assert.equal(s.agent, 'A-17');
        assert.equal(s.consent_ref, 'C-88');
      },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const w = fold(c.events);
      const s = stateOf(w, 'S-9');
      if (c.tier === 'unknown') {
        assert.equal(s, undefined);
        return;
      }
      assert.ok(s);
      assert.equal(s.tier, c.tier);
      c.check?.(s);
    });
  }
  test('token_issued with a session: delegator, agent and consent known', () => {
    const w = fold([ev(signalFixtures.token_issued, { session_id: 'S-T' })]);
    const s = must(w, 'S-T');
    assert.deepEqual([s.delegator, s.agent, s.consent_ref, s.tier], ['U-442', 'A-17', 'C-88', 'trusted']);
  });
});

describe('fan-out', () => {
  test('role_revoked reaches every live session of the user, and only those', () => {
    const w = fold([started('S-1'), started('S-2'), started('S-3'), started('S-X', 'U-other'), ev(signalFixtures.session_ended, { session_id: 'S-3' })]);
    const t = evolve(w, ev(signalFixtures.role_revoked));
    assert.deepEqual(t.changed.map((s) => s.session_id), ['S-1', 'S-2']);
    assert.equal(must(t.world, 'S-1').tier, 'degraded');
    assert.equal(must(t.world, 'S-2').tier, 'degraded');
    assert.equal(must(t.world, 'S-3').tier, 'revoked'); // ended stays ended, untouched
    assert.equal(must(t.world, 'S-X').tier, 'trusted');
  });
  test('a session that starts after a role revocation inherits it; role_granted restores it', () => {
    let w = fold([ev(signalFixtures.role_revoked), started('S-late')]);
    assert.deepEqual(must(w, 'S-late').revoked_roles, ['payments-admin']);
    w = evolve(w, ev(signalFixtures.role_granted)).world;
    assert.equal(must(w, 'S-late').tier, 'trusted');
  });
  test('consent_revoked with a ref reaches only sessions whose token carries it', () => {
    const other = started('S-2', 'U-442', '2026-06-09T14:00:01.000Z', { token: { jti: 'J-2', scopes: [], consent_ref: 'C-99' } });
    const w = fold([started('S-1'), other, ev(signalFixtures.consent_revoked, { consent_ref: 'C-99' })]);
    assert.equal(must(w, 'S-1').tier, 'trusted');
    assert.equal(must(w, 'S-2').tier, 'revoked');
  });
  test('a freeze is listed on every live session of the tenant, and on sessions started later', () => {
    const w = fold([
      started('S-1'),
      ev(signalFixtures.session_started, { session_id: 'S-other-tenant', tenant_id: 'globex' }),
      ev(signalFixtures.change_freeze_raised),
      started('S-2', 'U-9', '2026-06-09T14:03:00.000Z'),
    ]);
    assert.deepEqual(must(w, 'S-1').freezes.map((f) => f.freeze_id), ['INC-77']);
    assert.deepEqual(must(w, 'S-2').freezes.map((f) => f.freeze_id), ['INC-77']);
    const other = w.sessions.get(sessionKeyOf('globex', 'S-other-tenant'));
    assert.deepEqual(other?.freezes, []);
  });
  test('a freeze scoped to an agent is listed on that agent\'s sessions and on sessions whose agent is unknown', () => {
    const w = fold([
      started('S-1'),
      ev(signalFixtures.session_started, { session_id: 'S-2', chain: [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-99' }] }),
      ev(signalFixtures.injection_detected, { session_id: 'S-3' }), // agent unknown
      ev(signalFixtures.change_freeze_raised, { scope: { agent_id: 'A-17' } }),
    ]);
    assert.equal(must(w, 'S-1').freezes.length, 1);
    assert.equal(must(w, 'S-2').freezes.length, 0);
    assert.equal(must(w, 'S-3').freezes.length, 1);
    // Once S-3's agent is known to be another one, the freeze no longer lists.
    const w2 = evolve(w, ev(decisionFixture, { session_id: 'S-3', chain: [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-99' }] })).world;
    assert.equal(must(w2, 'S-3').freezes.length, 0);
  });
});

describe('expiry', () => {
  const inj = (expires: string, at = '2026-06-09T14:01:00.000Z'): TrustfoldEvent => ev(signalFixtures.injection_detected, { occurred_at: at, expires_at: expires });
  test('a cause stops counting at expires_at, released by tick with no new event', () => {
    const w = fold([started('S-9'), inj('2026-06-09T14:10:00.000Z')]);
    assert.equal(must(w, 'S-9').tier, 'restricted');
    const early = tick(w, Date.parse('2026-06-09T14:09:59.999Z'));
    assert.deepEqual(early.changed, []);
    const t = tick(w, Date.parse('2026-06-09T14:10:00.000Z'));
    assert.equal(t.changed.length, 1);
    const s = must(t.world, 'S-9');
    assert.equal(s.tier, 'trusted');
    assert.equal(s.version, 3);
    assert.equal(s.updated_at, '2026-06-09T14:10:00.000Z');
  });
  test('event time releases expired causes before the event applies', () => {
    const w = fold([started('S-9'), inj('2026-06-09T14:10:00.000Z'), ev(signalFixtures.role_revoked, { occurred_at: '2026-06-09T14:11:00.000Z' })]);
    const s = must(w, 'S-9');
    assert.equal(s.tier, 'degraded');
    assert.deepEqual(s.causes.map((c) => c.kind), ['role_revoked']);
    assert.equal(s.version, 4); // started, injection, expiry, role
  });
  test('a cause that already expired when it arrives is not added', () => {
    const w = tick(fold([started('S-9')]), Date.parse('2026-06-09T15:00:00.000Z')).world;
    const t = evolve(w, inj('2026-06-09T14:10:00.000Z'));
    assert.equal(must(t.world, 'S-9').tier, 'trusted');
    assert.deepEqual(t.changed, []);
  });
  test('a freeze with expires_at is removed at that time', () => {
    const w = fold([started('S-9'), ev(signalFixtures.change_freeze_raised, { expires_at: '2026-06-09T14:30:00.000Z' })]);
    assert.equal(must(w, 'S-9').freezes.length, 1);
    const t = tick(w, Date.parse('2026-06-09T14:30:00.000Z'));
    assert.equal(must(t.world, 'S-9').freezes.length, 0);
  });
  test('an expiring trust_set hands the tier back to causes raised after it', () => {
    const w = fold([
      started('S-9'),
      ev(signalFixtures.trust_set, { tier: 'revoked', expires_at: '2026-06-09T14:40:00.000Z', occurred_at: '2026-06-09T14:30:00.000Z' }),
      ev(signalFixtures.injection_detected, { severity: 'low', occurred_at: '2026-06-09T14:31:00.000Z', expires_at: undefined }),
    ]);
    assert.equal(must(w, 'S-9').tier, 'revoked');
    assert.equal(must(tick(w, Date.parse('2026-06-09T14:40:00.000Z')).world, 'S-9').tier, 'degraded');
  });
  test('after a wall-clock tick, an event time far in the future advances the clock only by the allowed skew', () => {
    const w = tick(fold([started('S-9'), inj('2026-06-09T14:10:00.000Z')]), Date.parse('2026-06-09T14:05:00.000Z')).world;
    const t = evolve(w, ev(signalFixtures.step_up_requested, { occurred_at: '2099-01-01T00:00:00.000Z' }));
    assert.equal(must(t.world, 'S-9').tier, 'restricted');
    assert.equal(t.world.clock, Date.parse('2026-06-09T14:06:00.000Z'));
  });
});

describe('overrides, duplicates, versions', () => {
  test('a signal after trust_set raises the tier again', () => {
    const w = fold([started('S-9'), ev(signalFixtures.trust_set, { tier: 'trusted' }), ev(signalFixtures.injection_detected, { occurred_at: '2026-06-09T14:31:00.000Z' })]);
    assert.equal(must(w, 'S-9').tier, 'restricted');
  });
  test('trust_set keeps freezes (they are not causes)', () => {
    const w = fold([started('S-9'), ev(signalFixtures.change_freeze_raised), ev(signalFixtures.trust_set)]);
    assert.equal(must(w, 'S-9').freezes.length, 1);
  });
  const dupCases: { name: string; setup: TrustfoldEvent[]; dup: TrustfoldEvent; between?: TrustfoldEvent[] }[] = (() => {
    const inj = ev(signalFixtures.injection_detected);
    const role = ev(signalFixtures.role_revoked);
    const freeze = ev(signalFixtures.change_freeze_raised);
    const set = ev(signalFixtures.trust_set);
    return [
      { name: 'injection_detected, again right away', setup: [started('S-9'), inj], dup: inj },
      { name: 'injection_detected, after a trust_set cleared it', setup: [started('S-9'), inj], between: [ev(signalFixtures.trust_set, { tier: 'trusted' })], dup: inj },
      { name: 'role_revoked, after role_granted', setup: [started('S-9'), role], between: [ev(signalFixtures.role_granted)], dup: role },
      { name: 'change_freeze_raised, after the lift', setup: [started('S-9'), freeze], between: [ev(signalFixtures.change_freeze_lifted)], dup: freeze },
      { name: 'trust_set, after a later injection', setup: [started('S-9'), set], between: [ev(signalFixtures.injection_detected, { occurred_at: '2026-06-09T14:35:00.000Z' })], dup: set },
    ];
  })();
  for (const c of dupCases) {
    test(`a duplicate changes nothing: ${c.name}`, () => {
      const w = fold([...c.setup, ...(c.between ?? [])]);
      const before = JSON.stringify(snapshotWorld(w));
      const t = evolve(w, c.dup);
      assert.deepEqual(t.changed, []);
      assert.equal(JSON.stringify(snapshotWorld(t.world)), before);
    });
  }
  // Beyond the dedup memory (32 ids per session), event time still keeps a
  // late copy of an old reset or grant from undoing what happened after it.
  const pad = (n: number, from: number): TrustfoldEvent[] =>
    Array.from({ length: n }, (_, i) =>
      ev(signalFixtures.injection_detected, { signal_id: `SIG-PAD-${from + i}`, severity: 'low', occurred_at: new Date(Date.parse('2026-06-09T14:40:00.000Z') + (from + i) * 1000).toISOString() }),
    );
  test('a late copy of an old trust_set, past the dedup memory, does not clear a newer injection', () => {
    const set = ev(signalFixtures.trust_set, { tier: 'trusted', occurred_at: '2026-06-09T14:30:00.000Z' });
    const inj = ev(signalFixtures.injection_detected, { occurred_at: '2026-06-09T14:35:00.000Z' });
    const w = fold([started('S-9'), set, inj, ...pad(DEFAULT_FOLD_CONFIG.appliedPerSession + 8, 0)]);
    assert.equal(must(w, 'S-9').tier, 'restricted');
    const t = evolve(w, set);
    assert.deepEqual(t.changed, []);
    assert.equal(must(t.world, 'S-9').tier, 'restricted');
  });
  test('an older trust_set arriving after a newer one changes nothing; a newer one still overrides', () => {
    const newer = ev(signalFixtures.trust_set, { tier: 'restricted', occurred_at: '2026-06-09T14:30:00.000Z' });
    const older = ev(signalFixtures.trust_set, { tier: 'trusted', occurred_at: '2026-06-09T14:10:00.000Z' });
    const w = fold([started('S-9'), newer]);
    assert.deepEqual(evolve(w, older).changed, []);
    assert.equal(must(w, 'S-9').tier, 'restricted');
    const latest = evolve(w, ev(signalFixtures.trust_set, { tier: 'trusted', occurred_at: '2026-06-09T14:50:00.000Z' }));
    assert.equal(latest.changed.at(-1)?.tier, 'trusted');
  });
  test('a late role_granted older than the revocation it meets does not lift it', () => {
    const grant = ev(signalFixtures.role_granted, { occurred_at: '2026-06-09T14:01:00.000Z' });
    const revoke = ev(signalFixtures.role_revoked, { occurred_at: '2026-06-09T14:02:00.000Z' });
    const w = fold([started('S-9'), revoke, grant]);
    assert.equal(must(w, 'S-9').tier, 'degraded');
    assert.deepEqual(must(w, 'S-9').revoked_roles, ['payments-admin']);
    // And the user fact stays: a session that starts later inherits it.
    const later = fold([started('S-9'), revoke, grant, started('S-10', 'U-442', '2026-06-09T14:05:00.000Z')]);
    assert.deepEqual(must(later, 'S-10').revoked_roles, ['payments-admin']);
  });
  test('a late consent_granted older than the revocation does not lift it', () => {
    const revoke = ev(signalFixtures.consent_revoked, { occurred_at: '2026-06-09T14:02:00.000Z' });
    const grant = ev(signalFixtures.consent_granted, { occurred_at: '2026-06-09T14:01:00.000Z' });
    const w = fold([started('S-9'), revoke, grant]);
    assert.equal(must(w, 'S-9').consent_revoked, true);
  });
  test('versions rise by one per change and caused_by names the event', () => {
    const events = [
      started('S-9'),
      ev(signalFixtures.injection_detected),
      ev(signalFixtures.role_revoked),
      ev(signalFixtures.change_freeze_raised),
      ev(signalFixtures.consent_revoked),
      ev(signalFixtures.step_up_requested),
      ev(signalFixtures.session_ended),
    ];
    const { changed } = evolveAll(initialWorld(), events);
    assert.deepEqual(changed.map((s) => s.version), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(
      changed.map((s) => s.caused_by),
      [0, 1, 2, 3, 4, 6].map((i) => events[i]?.event_id),
    );
    assert.deepEqual(changed.map((s) => s.tier), ['trusted', 'restricted', 'restricted', 'restricted', 'revoked', 'revoked']);
  });
  test('an ended session is final', () => {
    const w = fold([started('S-9'), ev(signalFixtures.session_ended)]);
    const t = evolve(w, ev(signalFixtures.trust_set, { tier: 'trusted' }));
    assert.deepEqual(t.changed, []);
    assert.equal(must(t.world, 'S-9').tier, 'revoked');
  });
});

describe('the tier mapping is configuration', () => {
  test('a stricter mapping applies', () => {
    const cfg: FoldConfig = {
      ...DEFAULT_FOLD_CONFIG,
      tiers: { ...DEFAULT_FOLD_CONFIG.tiers, injection: { low: 'restricted', medium: 'restricted', high: 'revoked', critical: 'revoked' }, roleRevoked: 'restricted' },
    };
    const w = fold([started('S-9'), ev(signalFixtures.injection_detected, { severity: 'low' }), started('S-8'), ev(signalFixtures.role_revoked)], cfg);
    assert.equal(must(w, 'S-9').tier, 'restricted');
    assert.equal(must(w, 'S-8').tier, 'restricted');
  });
});
