import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecisionEvent } from '../../schemas/events.ts';
import { pickTrust, signalIdsOf } from '../../services/query/explain.ts';
import type { TrustTransition } from '../../services/query/repository.ts';
import { freezeCovers, nearTime, resourcePhrase, storyOf, tierSince } from '../../services/query/story.ts';
import { incident } from '../helpers/audit-incident.ts';

const inc = incident();
const met = inc.trust[2];
const history = inc.trust.map((t) => ({ version: t.version, tier: t.tier, updated_at: t.updated_at }));
assert.ok(met);

describe('story', () => {
  test('the docs/design.md record, with every id in it', () => {
    assert.equal(
      storyOf({ decision: inc.denied, trust: met, history }),
      'At 2026-06-09T14:03:11Z agent A-17 v3.2 acting for user U-442 in session S-9 attempted `delete_file` on repo R-payments-ledger; ' +
        'the token (jti J-1, scope `repo:write`, expires 14:08) allowed it; ' +
        'policy P-risk-43 (version 12) denied it by rule deny-destructive-when-degraded because ' +
        "the session's trust was downgraded to restricted at 14:01:57 after injection signal SIG-INJ-8821 " +
        'and a change freeze (incident INC-77) was in force.',
    );
  });

  test('an allowed call under trusted state says so, with its outcome', () => {
    const [allowed] = inc.decisions;
    assert.ok(allowed && inc.trust[0]);
    const s = storyOf({ decision: allowed, trust: inc.trust[0], history });
    assert.match(s, /policy P-risk-43 \(version 12\) allowed it by rule allow-scoped-read while the session's trust was trusted\. Outcome: executed\.$/);
  });

  test('a freeze that does not cover the action is no reason for the decision', () => {
    const readCall: DecisionEvent = { ...inc.denied, request: { ...inc.denied.request, action: 'read_file' } };
    const s = storyOf({ decision: readCall, trust: met, history });
    assert.doesNotMatch(s, /INC-77/);
    assert.match(s, /SIG-INJ-8821/);
  });

  test('refused later copies of the id are named in the story, which stays the first copy\'s', () => {
    const copy = { kafka: { topic: 't', partition: 0, offset: '9' }, digest: 'f'.repeat(64), detected_at: '2026-06-09T15:00:00.000Z', copy: {} };
    const one = storyOf({ decision: { ...inc.denied, audit: { conflicts: [copy] } }, trust: met, history });
    assert.match(one, /denied it by rule deny-destructive-when-degraded/);
    assert.match(one, / Warning: a later copy of this event id with different content was received and refused; this is the first stored copy \(see audit\.conflicts\)\.$/);
    const two = storyOf({ decision: { ...inc.denied, audit: { conflicts: [copy, copy] } }, trust: met, history });
    assert.match(two, /Warning: 2 later copies of this event id with different content were received and refused/);
    assert.doesNotMatch(storyOf({ decision: inc.denied, trust: met, history }), /Warning/);
  });

  test('no trust state recorded: the story says so rather than inventing one', () => {
    const s = storyOf({ decision: inc.denied });
    assert.match(s, /because session trust restricted \(SIG-INJ-8821\) and change freeze INC-77 in force \(no trust state was recorded/);
  });

  test('sub-agents: the acting agent is named with the agents it acts through', () => {
    const d: DecisionEvent = { ...inc.denied, chain: [...inc.denied.chain, { kind: 'agent', id: 'A-17-sub', version: '1.0' }] };
    assert.match(storyOf({ decision: d, trust: met, history }), /agent A-17-sub v1\.0 \(via A-17\) acting for user U-442/);
  });

  test('helpers: times near the decision, resources, freeze scopes, tier since', () => {
    assert.equal(nearTime('2026-06-09T14:08:00.000Z', '2026-06-09T14:03:11.000Z', 'minute'), '14:08');
    assert.equal(nearTime('2026-06-10T14:08:00.000Z', '2026-06-09T14:03:11.000Z'), '2026-06-10T14:08:00Z');
    assert.equal(resourcePhrase('repo:R-payments-ledger'), 'repo R-payments-ledger');
    assert.equal(resourcePhrase('https://x.test/a'), 'https://x.test/a');
    assert.equal(freezeCovers({ resource_prefix: 'repo:' }, inc.denied), true);
    assert.equal(freezeCovers({ resource_prefix: 'db:' }, inc.denied), false);
    assert.equal(freezeCovers({ agent_id: 'A-99' }, inc.denied), false);
    assert.equal(tierSince(met, history), '2026-06-09T14:01:57.000Z');
  });
});

describe('which trust state a decision met', () => {
  const transitions: TrustTransition[] = inc.trust.map((t) => ({ tenant: t.tenant_id, session_id: t.session_id, version: t.version, tier: t.tier, updated_at: t.updated_at, caused_by: t.caused_by, state: t }));

  test('by the trust version the PDP used', () => {
    const r = pickTrust({ occurred_at: inc.denied.occurred_at, decision: { ...inc.denied.decision, trust_version: 2 } }, transitions);
    assert.equal(r.basis, 'trust_version');
    assert.equal(r.met?.version, 2);
    assert.equal(r.atTime?.version, 3, 'and the state in force at that time, which differs (stale PDP view)');
  });

  test('by time when the decision names no version', () => {
    const { trust_version: _tv, ...body } = inc.denied.decision;
    const r = pickTrust({ occurred_at: '2026-06-09T14:02:00.000Z', decision: body }, transitions);
    assert.equal(r.basis, 'time');
    assert.equal(r.met?.version, 2);
  });

  test('none before the session started', () => {
    const { trust_version: _tv, ...body } = inc.denied.decision;
    assert.equal(pickTrust({ occurred_at: '2026-06-09T13:00:00.000Z', decision: body }, transitions).basis, 'none');
  });

  test('the signals behind a state: its cause, causes and freezes', () => {
    const ids = signalIdsOf(met);
    const byKind = Object.fromEntries(inc.signals.map((s) => [s.kind, s.event_id]));
    assert.deepEqual(ids.sort(), [byKind['change_freeze_raised'], byKind['injection_detected']].sort());
  });
});
