// Random event sequences for the fold's property tests (fast-check): a few
// sessions, users, agents and consents, every kind the fold handles, unique
// ids and rising times, expiries 1–20 minutes after their event.
import fc from 'fast-check';
import { parseEvent } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';

export const T0 = Date.parse('2026-06-09T14:00:00.000Z');
const sessions = ['S-1', 'S-2', 'S-3', 'S-4'];
const users = ['U-1', 'U-2'];
const agents = ['A-1', 'A-2'];
const consents = ['C-1', 'C-2'];
export const iso = (ms: number): string => new Date(ms).toISOString();

/** A body without envelope; the sequence generator adds ids and increasing times. */
export const bodyArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
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
export const sequenceArb = (max = 60): fc.Arbitrary<TrustfoldEvent[]> =>
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

