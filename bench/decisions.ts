// The decisions the audit benches generate: bench/audit.ts's sink run and
// bench/sink-decode.ts's decode path use the same ones, so their figures compare.
import { randomBytes, randomUUID } from 'node:crypto';
import type { DecisionEvent } from '../schemas/events.ts';

export const decisionAt = (i: number, at: Date, tenant = 'bench'): DecisionEvent => ({
  type: 'decision',
  event_id: randomUUID(),
  tenant_id: tenant,
  occurred_at: at.toISOString(),
  session_id: `S-${i % 5000}`,
  chain: [
    { kind: 'human', id: `U-${i % 1000}` },
    { kind: 'agent', id: `A-${i % 50}`, version: '3.2', owner: 'team-payments' },
  ],
  token: { jti: `J-${i % 5000}`, scopes: ['repo:write'], audience: 'git-gateway', issued_at: at.toISOString(), expires_at: new Date(at.getTime() + 600_000).toISOString(), trust_level: 'trusted', consent_ref: 'C-88', policy_version: '11' },
  intent: { task_class: 'refactor', statement: 'clean up obsolete code' },
  request: { tool: 'git', action: ['read_file', 'edit_file', 'delete_file'][i % 3] ?? 'read_file', resource: `repo:R-${i % 200}/file-${i % 997}.ts`, args_digest: `sha256:${randomBytes(32).toString('hex')}` },
  decision: { effect: i % 7 === 0 ? 'deny' : 'allow', policy_id: `P-${i % 20}`, policy_version: '12', rule_id: `rule-${i % 30}`, reasons: ['within scope'], trust_version: 1 + (i % 4), pdp_id: 'pdp-1', latency_us: 300 + (i % 200) },
  outcome: { status: i % 7 === 0 ? 'blocked' : 'executed' },
  provenance: { model: 'model-x-2026-05', prompt_digest: 'sha256:aa11', output_digest: 'sha256:bb22', tool_schema_digest: 'sha256:cc33' },
});
