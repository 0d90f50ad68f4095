// The gateway's policy engines, pure parts: what Cerbos is asked (trust tier,
// causes, the freezes matching this call), what its answer becomes (allow,
// deny, step_up, fail closed), the built-in rules' role and step-up steps,
// and the config's policy section.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SessionTrust } from '../../schemas/events.ts';
import type { CallerIdentity } from '../../services/gate/claims.ts';
import { parseGateConfig } from '../../services/gate/config.ts';
import { cerbosCheck, cerbosPolicy, verdictFromCerbos, type PolicyInput } from '../../services/gate/policy.ts';
import { DEFAULT_RULES, judgeCall } from '../../services/gate/rules.ts';
import type { TrustLookup } from '../../services/pdp-client/trust-view.ts';

const state = (over: Partial<SessionTrust> = {}): SessionTrust => ({
  session_id: 'S-1', tenant_id: 'acme', version: 7, tier: 'trusted', delegator: 'U-1', agent: 'A-1',
  causes: [], revoked_roles: [], consent_revoked: false, freezes: [], ended: false,
  updated_at: '2026-06-09T14:01:57.000Z', caused_by: '01976d2a-0000-7000-8000-000000000003', ...over,
});
const known = (s: SessionTrust): TrustLookup => ({ known: true, state: s, version: s.version, stalenessMs: 0, receivedAt: 0 });
const unknown: TrustLookup = { known: false, reason: 'unknown_session', stalenessMs: 0 };
const caller: CallerIdentity = { tenant: 'acme', scopes: new Set(['mcp:tools:write', 'mcp:tools:read']), chain: [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-0' }, { kind: 'agent', id: 'A-1' }] };
const input = (lookup: TrustLookup, action = 'delete_file', resource = 'repo:R/ledger.csv'): PolicyInput => ({
  lookup, call: { action, resource, tool: `files__${action}`, upstream: 'files' }, caller, session: 'S-1', requestId: 'E-1',
});
const freeze = (id: string, scope: Record<string, unknown>) => ({ freeze_id: id, reason: `why ${id}`, scope, event_id: '01976d2a-0000-7000-8000-000000000009', since: '2026-06-09T14:00:00.000Z' });
const opts = { resourceKind: 'mcp_tool', principalRoles: ['agent'], rules: DEFAULT_RULES };

describe('the Cerbos request', () => {
  test('the acting agent is the principal; trust tier, causes and revocations are its attributes', () => {
    const s = state({ tier: 'degraded', causes: [{ kind: 'injection_detected', ref: 'SIG-1', event_id: '01976d2a-0000-7000-8000-000000000004', since: '2026-06-09T14:00:00.000Z', tier: 'degraded' }], revoked_roles: ['admin'] });
    const c = cerbosCheck(input(known(s)), opts);
    assert.equal(c.principal.id, 'A-1');
    assert.deepEqual(c.principal.roles, ['agent']);
    assert.equal(c.principal.attr['trust_tier'], 'degraded');
    assert.equal(c.principal.attr['trust_version'], 7);
    assert.deepEqual(c.principal.attr['causes'], [{ kind: 'injection_detected', ref: 'SIG-1', tier: 'degraded' }]);
    assert.deepEqual(c.principal.attr['cause_kinds'], ['injection_detected']);
    assert.deepEqual(c.principal.attr['revoked_roles'], ['admin']);
    assert.deepEqual(c.principal.attr['chain'], ['U-1', 'A-0', 'A-1']);
    assert.equal(c.requestId, 'E-1');
    assert.deepEqual(c.resources[0]?.actions, ['delete_file']);
    assert.equal(c.resources[0]?.resource.kind, 'mcp_tool');
    assert.equal(c.resources[0]?.resource.id, 'repo:R/ledger.csv');
    assert.equal(c.resources[0]?.resource.attr['destructive'], true);
  });

  test('only the freezes matching this call are resource attributes', () => {
    const s = state({ freezes: [freeze('F-MATCH', { resource_prefix: 'repo:R/', actions: ['delete_file'] }), freeze('F-OTHER-PREFIX', { resource_prefix: 'db:' }), freeze('F-OTHER-AGENT', { agent_id: 'A-9' })] });
    assert.deepEqual(cerbosCheck(input(known(s)), opts).resources[0]?.resource.attr['freezes'], [{ freeze_id: 'F-MATCH', reason: 'why F-MATCH' }]);
    assert.deepEqual(cerbosCheck(input(known(s), 'read_file'), opts).resources[0]?.resource.attr['freezes'], [], 'the action is not frozen');
  });

  test('trust unknown is tier "unknown", version -1', () => {
    const c = cerbosCheck(input(unknown, 'read_file'), opts);
    assert.equal(c.principal.attr['trust_tier'], 'unknown');
    assert.equal(c.principal.attr['trust_known'], false);
    assert.equal(c.principal.attr['trust_version'], -1);
  });
});

describe('the Cerbos answer', () => {
  const answer = (effect: string, val: unknown, src = 'resource.mcp_tool.vdefault#some-rule') => ({
    requestId: 'E-1',
    results: [{ resource: { id: 'r', kind: 'mcp_tool' }, actions: { delete_file: effect }, meta: { actions: { delete_file: { matchedPolicy: 'resource.mcp_tool.vdefault' } } }, outputs: [{ src, val, action: 'delete_file' }] }],
    cerbosCallId: 'C-1',
  });
  test('allow and deny carry the rule named in the output, its reason, the matched policy and the trust version', () => {
    assert.deepEqual(verdictFromCerbos(answer('EFFECT_ALLOW', { reason: 'ok' }, 'resource.mcp_tool.vdefault#allow-x'), 'delete_file', known(state())), {
      effect: 'allow', rule_id: 'allow-x', reasons: ['ok'], trust_version: 7, policy_id: 'resource.mcp_tool.vdefault',
    });
    const d = verdictFromCerbos(answer('EFFECT_DENY', 'no'), 'delete_file', known(state()));
    assert.equal(d.effect, 'deny');
    assert.deepEqual(d.reasons, ['no']);
  });
  test('a DENY whose output says step_up is a step-up', () => {
    assert.equal(verdictFromCerbos(answer('EFFECT_DENY', { step_up: true, reason: 'approve' }), 'delete_file', known(state())).effect, 'step_up');
    assert.equal(verdictFromCerbos(answer('EFFECT_ALLOW', { step_up: true }), 'delete_file', known(state())).effect, 'allow', 'an ALLOW stays an allow');
  });
  test('no matching policy is a deny named so', () => {
    const v = verdictFromCerbos({ results: [{ actions: { delete_file: 'EFFECT_DENY' }, meta: { actions: { delete_file: { matchedPolicy: '' } } } }] }, 'delete_file', known(state()));
    assert.deepEqual([v.effect, v.rule_id], ['deny', 'cerbos-no-matching-policy']);
  });
  test('anything unexpected fails closed', () => {
    for (const body of [{}, { results: [] }, { results: [{ actions: {} }] }, { results: [{ actions: { delete_file: 'EFFECT_MAYBE' } }] }, 'nonsense']) {
      const v = verdictFromCerbos(body, 'delete_file', known(state()));
      assert.deepEqual([v.effect, v.rule_id], ['deny', 'deny-pdp-unavailable'], JSON.stringify(body));
    }
  });
  test('unreachable Cerbos denies every call (fail closed); trust unknown denies destructive calls before Cerbos is asked', async () => {
    const p = cerbosPolicy({ url: 'http://127.0.0.1:9', timeoutMs: 500, ...opts });
    try {
      const read = await p.decide(input(known(state()), 'read_file'));
      assert.deepEqual([read.effect, read.rule_id], ['deny', 'deny-pdp-unavailable']);
      assert.match(read.reasons[0] ?? '', /127\.0\.0\.1:9/);
      const floor = await p.decide(input(unknown));
      assert.equal(floor.rule_id, 'deny-destructive-when-trust-unknown');
    } finally {
      await p.close();
    }
  });
});

describe('the built-in rules: roles and step-up', () => {
  const rules = { ...DEFAULT_RULES, stepUpDestructiveAt: 'degraded' as const };
  test('a tool whose role was revoked is denied, destructive or not', () => {
    const v = judgeCall(known(state({ tier: 'degraded', revoked_roles: ['ledger-writer'] })), { action: 'write_file', resource: 'r', requiresRoles: ['ledger-writer'] }, rules);
    assert.deepEqual([v.effect, v.rule_id], ['deny', 'deny-role-revoked']);
    assert.equal(judgeCall(known(state({ revoked_roles: ['other'] })), { action: 'write_file', resource: 'r', requiresRoles: ['ledger-writer'] }, rules).effect, 'allow');
  });
  test('step-up from its tier for destructive calls, below the restricting tier; off by default', () => {
    const degraded = known(state({ tier: 'degraded' }));
    assert.equal(judgeCall(degraded, { action: 'delete_file', resource: 'r' }, rules).effect, 'step_up');
    assert.equal(judgeCall(degraded, { action: 'read_file', resource: 'r' }, rules).effect, 'allow');
    assert.equal(judgeCall(known(state({ tier: 'restricted' })), { action: 'delete_file', resource: 'r' }, rules).rule_id, 'deny-destructive-when-restricted');
    assert.equal(judgeCall(degraded, { action: 'delete_file', resource: 'r' }, DEFAULT_RULES).effect, 'allow');
    const frozen = known(state({ tier: 'degraded', freezes: [freeze('F-1', {})] }));
    assert.equal(judgeCall(frozen, { action: 'delete_file', resource: 'r' }, rules).rule_id, 'deny-destructive-under-freeze', 'a freeze denies; no approval lifts it');
  });
});

describe('the config: policy', () => {
  test('builtin by default; cerbos needs a URL, and its settings have defaults', () => {
    const base = { upstreams: { a: { command: 'x' } } };
    const b = parseGateConfig(base);
    assert.ok(b.ok);
    assert.deepEqual(b.value.policy, { engine: 'builtin' });
    const c = parseGateConfig({ ...base, policy: { engine: 'cerbos', url: 'http://127.0.0.1:3592' } });
    assert.ok(c.ok);
    assert.deepEqual(c.value.policy, { engine: 'cerbos', url: 'http://127.0.0.1:3592', timeout_ms: 500, resource_kind: 'mcp_tool', principal_roles: ['agent'] });
    const noUrl = parseGateConfig({ ...base, policy: { engine: 'cerbos' } });
    assert.ok(!noUrl.ok);
    assert.ok(noUrl.error.some((e) => e.path === 'policy.url'), JSON.stringify(noUrl.error));
    const typo = parseGateConfig({ ...base, policy: { engine: 'opa' } });
    assert.ok(!typo.ok);
    assert.ok(typo.error.some((e) => e.path.startsWith('policy')), JSON.stringify(typo.error));
    const steps = parseGateConfig({ ...base, rules: { step_up_destructive_at: 'degraded' }, tools: { t: { requires_roles: ['r'] } } });
    assert.ok(steps.ok);
    assert.equal(steps.value.rules.stepUpDestructiveAt, 'degraded');
    assert.deepEqual(steps.value.tools['t']?.requiresRoles, ['r']);
  });
});
