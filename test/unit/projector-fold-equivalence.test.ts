// The fold as split into services/projector/fold/ (issue 19) equals the fold
// it replaced, on random sequences of events and ticks: two tenants, times
// that go back as well as forward, exact duplicates, ids shared across kinds,
// log-append times that clamp loosening signals, and duplicate memories small
// enough to overflow. Compared after every step: the versions produced, the
// records touched, and the whole world's snapshot.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseEvent } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import { evolve, initialWorld, snapshotWorld, tick, type FoldConfig } from '../../services/projector/evolve.ts';
import * as legacy from './projector-evolve-legacy.ts';

const T0 = Date.parse('2026-06-09T14:00:00.000Z');
const tenants = ['acme', 'beta'];
const sessions = ['S-1', 'S-2', 'S-3'];
const users = ['U-1', 'U-2'];
const agents = ['A-1', 'A-2'];
const consents = ['C-1', 'C-2'];
const iso = (ms: number): string => new Date(ms).toISOString();
const pick = <T>(xs: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...xs);
const ttl = fc.option(fc.integer({ min: -2, max: 20 }));

const bodyArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ s: pick(sessions), u: pick(users), a: pick(agents), c: fc.option(pick(consents)), v: fc.option(pick(['1', '2'])) }).map((x) => ({
    type: 'signal',
    kind: 'session_started',
    session_id: x.s,
    chain: [{ kind: 'human', id: x.u }, { kind: 'agent', id: x.a, ...(x.v !== null && { version: x.v }) }],
    token: { jti: 'J', scopes: [], ...(x.c !== null && { consent_ref: x.c }) },
  })),
  fc.record({ s: pick(sessions), u: pick(users), a: pick(agents), c: fc.option(pick(consents)) }).map((x) => ({
    type: 'decision',
    session_id: x.s,
    chain: [{ kind: 'human', id: x.u }, { kind: 'agent', id: x.a }],
    ...(x.c !== null && { token: { jti: 'J', scopes: [], consent_ref: x.c } }),
    request: { tool: 'git', action: 'delete_file', resource: 'repo:x' },
    decision: { effect: 'allow', policy_id: 'P' },
  })),
  pick(sessions).map((s) => ({ type: 'signal', kind: 'session_ended', session_id: s })),
  fc
    .record({ s: pick(sessions), sev: pick(['low', 'medium', 'high', 'critical']), sig: pick(['SIG-1', 'SIG-2']), ttl })
    .map((x) => ({ type: 'signal', kind: 'injection_detected', session_id: x.s, signal_id: x.sig, severity: x.sev, detector: 'd', ttl: x.ttl })),
  fc
    .record({ s: pick(sessions), tier: pick(['trusted', 'degraded', 'restricted', 'revoked']), ttl })
    .map((x) => ({ type: 'signal', kind: 'trust_set', session_id: x.s, tier: x.tier, reason: 'r', set_by: 'soc', ttl: x.ttl })),
  fc.record({ u: pick(users), r: pick(['r1', 'r2']), k: pick(['role_revoked', 'role_granted']) }).map((x) => ({ type: 'signal', kind: x.k, user_id: x.u, role: x.r })),
  fc
    .record({ u: pick(users), c: fc.option(pick(consents)), k: pick(['consent_revoked', 'consent_granted']) })
    .map((x) => ({ type: 'signal', kind: x.k, user_id: x.u, ...(x.c !== null && { consent_ref: x.c }) })),
  fc
    .record({ f: pick(['F-1', 'F-2', 'F-3']), agent: fc.option(pick(agents)), ttl, lift: fc.boolean() })
    .map((x) =>
      x.lift
        ? { type: 'signal', kind: 'change_freeze_lifted', freeze_id: x.f, lifted_by: 'soc' }
        : { type: 'signal', kind: 'change_freeze_raised', freeze_id: x.f, scope: x.agent === null ? { resource_prefix: 'repo:' } : { agent_id: x.agent }, reason: 'r', raised_by: 'soc', ttl: x.ttl },
    ),
  fc.record({ s: fc.option(pick(sessions)), u: pick(users), a: pick(agents), c: fc.option(pick(consents)) }).map((x) => ({
    type: 'signal',
    kind: 'token_issued',
    jti: 'J',
    user_id: x.u,
    agent_id: x.a,
    scopes: [],
    expires_at: iso(T0 + 3_600_000),
    ...(x.s !== null && { session_id: x.s }),
    ...(x.c !== null && { consent_ref: x.c }),
  })),
  pick(sessions).map((s) => ({ type: 'signal', kind: 'step_up_requested', session_id: s, request_id: 'R', scope: 'x' })),
);

type Op = { tick: number } | { event: TrustfoldEvent; appendedAt?: string };

/**
 * A step is a new event (time moving −2…+3 minutes), a replay of an earlier
 * event (an exact duplicate), a new body carrying an earlier event's id, or a
 * tick at −1…+4 minutes from the current time.
 */
const opsArb: fc.Arbitrary<Op[]> = fc
  .array(
    fc.record({
      what: fc.constantFrom('new', 'new', 'new', 'new', 'replay', 'collide', 'tick'),
      body: bodyArb,
      tenant: pick(tenants),
      gapMin: fc.integer({ min: -2, max: 3 }),
      back: fc.nat(),
      appended: fc.option(fc.integer({ min: -3, max: 3 })),
    }),
    { minLength: 1, maxLength: 80 },
  )
  .map((items) => {
    let t = T0;
    const sent: TrustfoldEvent[] = [];
    const ops: Op[] = [];
    items.forEach((x, i) => {
      t += x.gapMin * 60_000;
      const appendedAt = x.appended === null ? undefined : iso(t + x.appended * 60_000);
      const earlier = sent.length === 0 ? undefined : sent[x.back % sent.length];
      if (x.what === 'tick') {
        ops.push({ tick: t + (x.back % 6) * 60_000 - 60_000 });
        return;
      }
      if (x.what === 'replay' && earlier !== undefined) {
        ops.push({ event: earlier, ...(appendedAt !== undefined && { appendedAt }) });
        return;
      }
      const { ttl: minutes, ...rest } = x.body as { ttl?: number | null } & Record<string, unknown>;
      const id = x.what === 'collide' && earlier !== undefined ? earlier.event_id : `01976d2a-0000-7000-8000-${String(i + 1).padStart(12, '0')}`;
      const r = parseEvent({
        ...rest,
        ...(typeof minutes === 'number' && { expires_at: iso(t + minutes * 60_000) }),
        event_id: id,
        tenant_id: x.tenant,
        occurred_at: iso(t),
      });
      if (!r.ok) throw new Error(JSON.stringify(r.error));
      sent.push(r.value);
      ops.push({ event: r.value, ...(appendedAt !== undefined && { appendedAt }) });
    });
    return ops;
  });

const cfgArb: fc.Arbitrary<FoldConfig> = fc.record({
  tiers: fc.constantFrom(
    { injection: { low: 'degraded', medium: 'degraded', high: 'restricted', critical: 'restricted' }, roleRevoked: 'degraded', consentRevoked: 'revoked', sessionEnded: 'revoked' } as const,
    { injection: { low: 'restricted', medium: 'restricted', high: 'revoked', critical: 'revoked' }, roleRevoked: 'restricted', consentRevoked: 'degraded', sessionEnded: 'revoked' } as const,
  ),
  appliedPerSession: fc.integer({ min: 1, max: 6 }),
  appliedPerUser: fc.integer({ min: 1, max: 6 }),
  appliedPerFreeze: fc.constant(8), // the bound the old fold had as a literal
  maxEventSkewMs: fc.constantFrom(0, 60_000, 600_000),
});

test('the fold split into fold/ equals the old fold, step by step, on random events and ticks', () => {
  fc.assert(
    fc.property(opsArb, cfgArb, (ops, cfg) => {
      let now = initialWorld();
      let old = legacy.initialWorld();
      ops.forEach((op, i) => {
        const a = 'tick' in op ? tick(now, op.tick, cfg) : evolve(now, op.event, cfg, op.appendedAt);
        const b = 'tick' in op ? legacy.tick(old, op.tick, cfg) : legacy.evolve(old, op.event, cfg, op.appendedAt);
        now = a.world;
        old = b.world;
        assert.deepEqual(a.changed, b.changed, `step ${i}: versions`);
        assert.deepEqual(a.touched, b.touched, `step ${i}: touched`);
        assert.equal(JSON.stringify(snapshotWorld(now)), JSON.stringify(legacy.snapshotWorld(old)), `step ${i}: world`);
      });
    }),
    { numRuns: Number(process.env.PROPERTY_RUNS ?? 400) },
  );
});
