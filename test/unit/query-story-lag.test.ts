// What the PDP knew vs what was true, as given/when/then: the decision's
// trust_version and the session's stored transitions in, the lag, the one
// clause and the finding out. No ClickHouse.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecisionEvent, SessionTrust } from '../../schemas/events.ts';
import { inForceWasStricter, lagClause, staleTrustFinding, storyOf, trustLagOf, type TrustLag } from '../../services/query/story.ts';
import { incident } from '../helpers/audit-incident.ts';

const inc = incident();
const [v1, v2, v3] = inc.trust as [SessionTrust, SessionTrust, SessionTrust];
const history = inc.trust.map((t) => ({ version: t.version, tier: t.tier, updated_at: t.updated_at }));
const stamped = (d: DecisionEvent, trust_version: number | undefined, effect = d.decision.effect): DecisionEvent => {
  const { trust_version: _tv, ...body } = d.decision;
  return { ...d, decision: { ...body, effect, ...(trust_version !== undefined ? { trust_version } : {}) } };
};
const staleDeny = stamped(inc.denied, 1);
const staleAllow: DecisionEvent = { ...stamped(inc.denied, 1, 'allow'), outcome: { status: 'executed' } };

describe('trust lag: the PDP\'s version against the state in force', () => {
  test('given v1..v3 stored, when the PDP stamped v3 at 14:03:11, then it is current', () => {
    assert.deepEqual(trustLagOf(inc.denied, history), { status: 'current', pdp_version: 3, in_force_version: 3, versions_behind: 0, ms_behind: 0 });
  });

  test('when it stamped v1, then it is 2 versions behind, stale since the injection (74 s before the call)', () => {
    assert.deepEqual(trustLagOf(staleDeny, history), {
      status: 'stale',
      pdp_version: 1,
      in_force_version: 3,
      versions_behind: 2,
      ms_behind: 74_000,
      stale_since: '2026-06-09T14:01:57.000Z',
    });
  });

  test('in force means at or before occurred_at: a transition stamped after the call does not count', () => {
    const early = { ...stamped(inc.denied, 2), occurred_at: '2026-06-09T14:02:00.000Z' };
    assert.equal(trustLagOf(early, history).status, 'current', 'v3 (14:02:30) was not yet in force at 14:02:00');
    const edge = { ...stamped(inc.denied, 2), occurred_at: '2026-06-09T14:02:30.000Z' };
    assert.equal(trustLagOf(edge, history).status, 'stale', 'a transition at the very instant is in force');
  });

  test('the order steps arrive in does not matter (versions order them)', () => {
    assert.deepEqual(trustLagOf(staleDeny, [...history].reverse()), trustLagOf(staleDeny, history));
  });

  test('when the PDP names a version newer than anything recorded, then it is ahead and unrecorded', () => {
    assert.deepEqual(trustLagOf(stamped(inc.denied, 7), history), { status: 'ahead', pdp_version: 7, in_force_version: 3, latest_recorded_version: 3, recorded: false });
  });

  test('when the version is recorded only after the call, then it is ahead but recorded (clocks disagree)', () => {
    const d = { ...stamped(inc.denied, 3), occurred_at: '2026-06-09T14:02:00.000Z' };
    assert.deepEqual(trustLagOf(d, history), { status: 'ahead', pdp_version: 3, in_force_version: 2, latest_recorded_version: 3, recorded: true });
  });

  test('no version on the decision, or nothing recorded: unknown / ahead of nothing', () => {
    assert.deepEqual(trustLagOf(stamped(inc.denied, undefined), history), { status: 'unknown', pdp_version: null, in_force_version: 3 });
    assert.deepEqual(trustLagOf(inc.denied, []), { status: 'ahead', pdp_version: 3, in_force_version: null, latest_recorded_version: null, recorded: false });
  });
});

describe('the clause and the finding', () => {
  test('a deny stamped v1: one clause names the tier, the injection signal and the freeze, after the PDP\'s own reasons', () => {
    const s = storyOf({ decision: staleDeny, trust: v1, history, inForce: v3, lag: trustLagOf(staleDeny, history) });
    assert.match(s, /denied it by rule deny-destructive-when-degraded because session trust restricted \(SIG-INJ-8821\) and change freeze INC-77 in force; /);
    assert.match(
      s,
      /; the PDP decided on trust v1 \(trusted\) although the session had been restricted since 14:01:57 after injection signal SIG-INJ-8821 and change freeze INC-77 was in force\.$/,
    );
    assert.doesNotMatch(s, /Finding/, 'a deny on stale trust is no finding: the call did not run');
  });

  test('the same call allowed on v1 is the finding', () => {
    const lag = trustLagOf(staleAllow, history);
    assert.equal(staleTrustFinding(staleAllow, lag, v1, v3), 'allowed_on_stale_trust');
    const s = storyOf({ decision: staleAllow, trust: v1, history, inForce: v3, lag });
    assert.match(s, /allowed it by rule deny-destructive-when-degraded; the PDP decided on trust v1 \(trusted\) although the session had been restricted since 14:01:57/);
    assert.doesNotMatch(s, /while the session's trust was trusted/, 'no claim that the session was trusted');
    assert.match(s, / Outcome: executed\. Finding: the call was allowed on stale trust\.$/);
  });

  test('an allow on a current view, or on a stale view that was no stricter, is no finding', () => {
    assert.equal(staleTrustFinding(stamped(inc.denied, 3, 'allow'), trustLagOf(inc.denied, history), v3, v3), undefined);
    const relaxed: SessionTrust = { ...v3, version: 4, tier: 'trusted', causes: [], freezes: [] };
    assert.equal(inForceWasStricter(staleAllow, v3, relaxed), false);
    assert.equal(inForceWasStricter(staleAllow, v1, v3), true);
  });

  test('only the difference is named: v2 (restricted) against v3 (restricted + freeze) names just the freeze', () => {
    const d = stamped(inc.denied, 2);
    const clause = lagClause(d, trustLagOf(d, history), v2, v3, history);
    assert.equal(clause, 'the PDP decided on trust v2 (restricted) although change freeze INC-77 was in force');
  });

  test('a freeze that does not cover the call and the same tier: the clause says the lag and that it changed nothing here', () => {
    const read: DecisionEvent = { ...stamped(inc.denied, 2), request: { ...inc.denied.request, action: 'read_file' } };
    const clause = lagClause(read, trustLagOf(read, history), v2, v3, history);
    assert.equal(clause, "the PDP decided on trust v2 (restricted), 1 version behind the state in force (v3, restricted), which did not change this call's tier or freezes");
  });

  test('ahead: newer than anything recorded, and recorded only after the call', () => {
    const d7 = stamped(inc.denied, 7);
    assert.match(storyOf({ decision: d7, trust: v3, history, lag: trustLagOf(d7, history) }), /; the PDP decided on trust v7, newer than any version recorded for the session \(latest v3\)\.$/);
    const early = { ...inc.denied, occurred_at: '2026-06-09T14:02:00.000Z' };
    const lag: TrustLag = trustLagOf(early, history);
    assert.equal(lagClause(early, lag, v3, v2, history), 'the PDP decided on trust v3 (restricted), recorded only after the call (v2 was in force at its time)');
    const none = trustLagOf(inc.denied, []);
    const s = storyOf({ decision: inc.denied, lag: none });
    assert.match(s, /; the PDP decided on trust v3, but no trust state is recorded for the session\.$/);
  });

  test('current: the story is exactly the one without a lag', () => {
    assert.equal(storyOf({ decision: inc.denied, trust: v3, history, lag: trustLagOf(inc.denied, history) }), storyOf({ decision: inc.denied, trust: v3, history }));
  });
});
