// Step-up approvals as the gateway keeps them (services/gate/step-up.ts): a
// request bound to one call, its resolution, one redemption.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createStepUps, resolutionOf, type StepUpCall, type StepUpRequest } from '../../services/gate/step-up.ts';

const call: StepUpCall = { tenant: 'acme', session: 'S-1', tool: 'delete_file', argsDigest: 'sha256:aa' };
const request = (over: Partial<StepUpRequest> = {}): StepUpRequest => ({ ...call, requestId: 'SU-1', scope: 'delete_file repo:x', issuedAt: 1_000, ...over });
const grant = { requestId: 'SU-1', tenant: 'acme', session: 'S-1', granted: true, approver: 'U-sec' };

describe('step-up approvals', () => {
  test('a granted request allows its call once, then is used', () => {
    const s = createStepUps({ ttlMs: 60_000 });
    s.requested(request());
    assert.deepEqual(s.redeem('SU-1', call, 2_000), { ok: false, reason: 'pending', request: request() });
    s.resolved(grant);
    const r = s.redeem('SU-1', call, 2_000);
    assert.ok(r.ok);
    assert.equal(r.approver, 'U-sec');
    assert.equal(s.redeem('SU-1', call, 2_000).ok, false);
    assert.equal((s.redeem('SU-1', call, 2_000) as { reason: string }).reason, 'used');
  });

  test('a refusal denies; the first answer stands', () => {
    const s = createStepUps({ ttlMs: 60_000 });
    s.requested(request());
    s.resolved({ ...grant, granted: false });
    s.resolved(grant);
    assert.equal((s.redeem('SU-1', call, 2_000) as { reason: string }).reason, 'refused');
  });

  test('another session, tool or arguments is another call; another tenant names nothing', () => {
    const s = createStepUps({ ttlMs: 60_000 });
    s.requested(request());
    s.resolved(grant);
    for (const other of [{ session: 'S-2' }, { tool: 'write_file' }, { argsDigest: 'sha256:bb' }]) {
      assert.equal((s.redeem('SU-1', { ...call, ...other }, 2_000) as { reason: string }).reason, 'other_call');
    }
    assert.equal((s.redeem('SU-1', { ...call, tenant: 'globex' }, 2_000) as { reason: string }).reason, 'unknown');
    assert.equal((s.redeem('SU-9', call, 2_000) as { reason: string }).reason, 'unknown');
    assert.ok(s.redeem('SU-1', call, 2_000).ok, 'the mismatches used nothing up');
  });

  test('a resolution for another session or tenant than the request is ignored', () => {
    const s = createStepUps({ ttlMs: 60_000 });
    s.requested(request());
    s.resolved({ ...grant, session: 'S-2' });
    s.resolved({ ...grant, tenant: 'globex' });
    assert.equal((s.redeem('SU-1', call, 2_000) as { reason: string }).reason, 'pending');
  });

  test('a grant past the request lifetime is expired; the oldest requests are forgotten past the bound', () => {
    const s = createStepUps({ ttlMs: 10_000, maxRequests: 2 });
    s.requested(request());
    s.resolved(grant);
    assert.equal((s.redeem('SU-1', call, 11_000) as { reason: string }).reason, 'expired');
    s.requested(request({ requestId: 'SU-2' }));
    s.requested(request({ requestId: 'SU-3' }));
    assert.equal(s.size, 2);
    assert.equal((s.redeem('SU-1', call, 2_000) as { reason: string }).reason, 'unknown');
  });

  test('only step_up_resolved signals are resolutions', () => {
    const base = { type: 'signal' as const, event_id: '01976d2a-0000-7000-8000-000000000001', tenant_id: 'acme', occurred_at: '2026-06-09T14:00:00.000Z' };
    assert.deepEqual(resolutionOf({ ...base, kind: 'step_up_resolved', session_id: 'S-1', request_id: 'SU-1', granted: true, approver: 'U-sec' }), grant);
    assert.equal(resolutionOf({ ...base, kind: 'step_up_requested', session_id: 'S-1', request_id: 'SU-1', scope: 'x' }), undefined);
  });
});
