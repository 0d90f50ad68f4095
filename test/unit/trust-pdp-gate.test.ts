// The example PDP's rules over trust lookups, and the decision event it emits.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseEvent } from '../../schemas/codec.ts';
import type { DecisionEvent, SessionTrust } from '../../schemas/events.ts';
import type { TrustLookup } from '../../services/pdp-client/trust-view.ts';
import { freezeMatchesCall } from '../../services/pdp-client/freeze-match.ts';
import { createPdpGate, handleMcpToolsCall, judge, type ToolCall } from '../../examples/pdp/gate.ts';

const trust = (over: Partial<SessionTrust> = {}): TrustLookup => {
  const state: SessionTrust = {
    session_id: 'S-9',
    tenant_id: 'acme',
    version: 4,
    tier: 'trusted',
    delegator: 'U-442',
    agent: 'A-17',
    causes: [],
    revoked_roles: [],
    consent_revoked: false,
    freezes: [],
    ended: false,
    updated_at: '2026-06-09T14:01:57.000Z',
    caused_by: '01976d2a-0000-7000-8000-000000000003',
    ...over,
  };
  return { known: true, state, version: state.version, stalenessMs: 1, receivedAt: 0 };
};
const freeze = { freeze_id: 'INC-77', scope: { resource_prefix: 'repo:', actions: ['delete_file'] }, reason: 'incident' };
const call = (action: string, resource = 'repo:R-payments-ledger'): ToolCall => ({ tenant_id: 'acme', session_id: 'S-9', tool: 'git', action, resource });

describe('judge', () => {
  const cases: [string, TrustLookup, ToolCall, string, number | undefined][] = [
    ['trusted, destructive → allow', trust(), call('delete_file'), 'allow', 4],
    ['restricted, destructive → deny', trust({ tier: 'restricted' }), call('delete_file'), 'deny-destructive-when-restricted', 4],
    ['restricted, read → allow', trust({ tier: 'restricted' }), call('read_file'), 'allow', 4],
    ['degraded, destructive → allow', trust({ tier: 'degraded' }), call('delete_file'), 'allow', 4],
    ['revoked, read → deny', trust({ tier: 'revoked' }), call('read_file'), 'deny-all-when-revoked', 4],
    ['matching freeze, destructive → deny', trust({ freezes: [freeze] }), call('delete_file'), 'deny-destructive-under-freeze', 4],
    ['freeze on another prefix → allow', trust({ freezes: [freeze] }), call('delete_file', 'db:ledger'), 'allow', 4],
    ['freeze for another action → allow', trust({ freezes: [freeze] }), call('force_push'), 'allow', 4],
    ['unknown session, destructive → deny', { known: false, reason: 'unknown_session', stalenessMs: 0 }, call('delete_file'), 'deny-destructive-when-trust-unknown', undefined],
    ['view not ready, read → allow', { known: false, reason: 'not_ready', stalenessMs: 0 }, call('read_file'), 'allow-read-when-trust-unknown', undefined],
  ];
  for (const [name, lookup, c, rule, version] of cases) {
    test(name, () => {
      const v = judge(lookup, c);
      assert.equal(v.rule_id, rule);
      assert.equal(v.effect, rule.startsWith('allow') ? 'allow' : 'deny');
      assert.equal(v.trust_version, version);
    });
  }
  test('a freeze scoped to another agent does not match', () => {
    assert.equal(freezeMatchesCall({ scope: { agent_id: 'A-1' } }, { action: 'x', resource: 'y', agent: 'A-2' }), false);
    assert.equal(freezeMatchesCall({ scope: {} }, { action: 'x', resource: 'y' }), true);
  });
});

describe('the gate', () => {
  test('emits one valid decision event with the trust_version it used', async () => {
    const emitted: DecisionEvent[] = [];
    const gate = createPdpGate({
      view: { get: () => trust({ tier: 'restricted', causes: [{ kind: 'injection_detected', ref: 'SIG-INJ-8821', event_id: '01976d2a-0000-7000-8000-000000000003', since: '2026-06-09T14:01:57.000Z', tier: 'restricted' }] }) },
      emit: async (d) => {
        emitted.push(d);
      },
      now: () => new Date('2026-06-09T14:03:11.000Z'),
      newId: () => '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e',
    });
    const res = await handleMcpToolsCall(gate, { tenant_id: 'acme', session_id: 'S-9', tool: 'git' }, {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'delete_file', arguments: { resource: 'repo:R-payments-ledger' } },
    });
    assert.equal(res.result.isError, true);
    assert.equal(res.result._meta.trust_version, 4);
    assert.equal(emitted.length, 1);
    const d = emitted[0];
    assert.ok(d);
    assert.equal(d.decision.trust_version, 4);
    assert.equal(d.decision.effect, 'deny');
    assert.deepEqual(d.chain, [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: 'A-17' }]);
    assert.ok(parseEvent(d).ok, 'the decision satisfies the contract');
  });
});
