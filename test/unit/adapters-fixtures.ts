// Recorded and doc-derived inputs for the adapter tests.
//
// CERBOS_ENTRY is a real record: Cerbos 0.55.0 (@cerbos/cerbos-linux-x64),
// `audit.backend: kafka`, `encoding: json`, one CheckResources call for two
// actions of agent A-17, read back from the topic as written.
export const CERBOS_CALL_ID = '01M84VQK85AB5S9CVS956T1419';

export const CERBOS_ENTRY_JSON = `{"callId":"01M84VQK85AB5S9CVS956T1419", "timestamp":"2026-11-23T18:47:12.391142644Z", "peer":{"address":"127.0.0.1:49744", "userAgent":"node", "forwardedFor":"127.0.0.1"}, "checkResources":{"inputs":[{"requestId":"req-1", "resource":{"kind":"git", "id":"repo:R-payments-ledger", "attr":{"args_digest":"sha256:abc"}}, "principal":{"id":"A-17", "roles":["agent"], "attr":{"agent_version":"3.2", "delegator":"U-442", "session_id":"S-9", "token_jti":"J-1", "trust_tier":"degraded"}}, "actions":["read_file", "delete_file"], "auxData":{"jwt":{"act":{"sub":"A-17"}, "exp":"2033-05-18T03:33:20Z", "jti":"J-1", "scope":"repo:write repo:read", "sid":"S-9", "sub":"U-442"}}}], "outputs":[{"requestId":"req-1", "resourceId":"repo:R-payments-ledger", "actions":{"delete_file":{"effect":"EFFECT_DENY", "policy":"resource.git.vdefault"}, "read_file":{"effect":"EFFECT_ALLOW", "policy":"resource.git.vdefault"}}, "outputs":[{"src":"resource.git.vdefault#allow-read", "val":"read allowed", "action":"read_file"}, {"src":"resource.git.vdefault#deny-destructive-when-degraded", "val":{"reason":"session trust is degraded"}, "action":"delete_file"}]}]}, "auditTrail":{"effectivePolicies":{"resource.git.vdefault":{"attributes":{"driver":"disk", "source":"agent_tool.yaml"}}}}, "policySource":{"disk":{"directory":"/tmp/adsc/policies"}}, "requestContext":{"annotations":{"session_id":"S-9"}}}`;

export const CERBOS_HEADERS_JSON = { 'cerbos.audit.encoding': 'json', 'cerbos.audit.kind': 'decision' };

/** An OPA decision-log event as OPA's docs describe it, with an agent tool-call input following the default convention. */
export const opaEvent = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  labels: { app: 'agent-gateway', id: 'opa-7f3c', version: '1.22.2' },
  decision_id: '4ca636c1-55e4-417a-b1d8-4aceb67960d1',
  bundles: { authz: { revision: 'rev-12' } },
  path: 'agents/authz/decision',
  input: {
    session_id: 'S-9',
    delegator: 'U-442',
    agent: { id: 'A-17', version: '3.2', owner: 'team-payments' },
    token: { jti: 'J-1', scope: 'repo:write', aud: 'git-gateway', exp: 1_780_000_000, consent_ref: 'C-88' },
    intent: { task_class: 'refactor', statement: 'clean up obsolete code' },
    tool: 'git',
    action: 'delete_file',
    resource: 'repo:R-payments-ledger',
    args: { path: 'migrations/001.sql' },
  },
  result: { allow: false, rule_id: 'deny-destructive-when-degraded', reasons: ['session trust is degraded'] },
  requested_by: '[::1]:59943',
  timestamp: '2026-06-09T14:03:11.123456789Z',
  metrics: { timer_rego_query_eval_ns: 120000, timer_server_handler_ns: 420000 },
  req_id: 3,
  ...over,
});
