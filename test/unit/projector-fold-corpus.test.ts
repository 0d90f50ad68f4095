// A recorded corpus (test/fixtures/fold-corpus.json): sequences of events and
// ticks as the fold's random-sequence generator makes them (two tenants, times
// going back and forth, duplicates, ids shared across kinds, log-append
// clamps, small duplicate memories), each step's outputs recorded from the
// fold before it was split into services/projector/fold/ (issue 19). The fold
// of today must produce the same versions, touched records and world at every
// step: a digest of the three per step.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseEvent } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import { evolve, initialWorld, snapshotWorld, tick, type FoldConfig } from '../../services/projector/evolve.ts';

type RecordedOp = { tick: number } | { event: unknown; appendedAt?: string };
type Sequence = { cfg: FoldConfig; ops: RecordedOp[]; steps: string[] };
const corpus = JSON.parse(readFileSync(new URL('../fixtures/fold-corpus.json', import.meta.url), 'utf8')) as { sequences: Sequence[] };

const digest = (x: unknown): string => createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);
const eventOf = (raw: unknown): TrustfoldEvent => {
  const r = parseEvent(raw);
  if (!r.ok) throw new Error(`corpus event does not parse: ${JSON.stringify(r.error)}`);
  return r.value;
};

test('the corpus is not empty and covers every event kind', () => {
  const kinds = new Set<string>(corpus.sequences.flatMap((s) => s.ops.flatMap((op) => ('event' in op ? [eventOf(op.event)] : [])).map((e) => (e.type === 'decision' ? 'decision' : e.kind))));
  for (const k of ['decision', 'session_started', 'session_ended', 'injection_detected', 'trust_set', 'role_revoked', 'role_granted', 'consent_revoked', 'consent_granted', 'change_freeze_raised', 'change_freeze_lifted', 'token_issued']) {
    assert.ok(kinds.has(k), `corpus has a ${k}`);
  }
  assert.ok(corpus.sequences.some((s) => s.ops.some((op) => 'tick' in op)), 'corpus has ticks');
});

for (const [n, seq] of corpus.sequences.entries()) {
  test(`recorded sequence ${n}: every step's versions, touched records and world equal the fold before the split`, () => {
    assert.equal(seq.steps.length, seq.ops.length);
    let w = initialWorld();
    seq.ops.forEach((op, i) => {
      const t = 'tick' in op ? tick(w, op.tick, seq.cfg) : evolve(w, eventOf(op.event), seq.cfg, op.appendedAt);
      w = t.world;
      assert.equal(digest({ changed: t.changed, touched: t.touched, world: snapshotWorld(w) }), seq.steps[i], `sequence ${n}, step ${i}`);
    });
  });
}

test('a decision carrying an id its session already applied (ids shared across kinds) moves the clock and changes nothing else', () => {
  const started = eventOf({
    type: 'signal',
    kind: 'session_started',
    event_id: '01976d2a-0000-7000-8000-000000000001',
    tenant_id: 'acme',
    occurred_at: '2026-06-09T14:00:00.000Z',
    session_id: 'S-1',
    chain: [{ kind: 'human', id: 'U-1' }],
  });
  const injected = eventOf({
    type: 'signal',
    kind: 'injection_detected',
    event_id: '01976d2a-0000-7000-8000-000000000002',
    tenant_id: 'acme',
    occurred_at: '2026-06-09T14:00:00.000Z',
    session_id: 'S-1',
    signal_id: 'SIG-1',
    severity: 'high',
    detector: 'd',
    expires_at: '2026-06-09T14:05:00.000Z',
  });
  // Same id as the session_started, a decision that would teach an agent.
  const decision = eventOf({
    type: 'decision',
    event_id: started.event_id,
    tenant_id: 'acme',
    occurred_at: '2026-06-09T14:10:00.000Z',
    session_id: 'S-1',
    chain: [{ kind: 'human', id: 'U-1' }, { kind: 'agent', id: 'A-1' }],
    request: { tool: 'git', action: 'delete_file', resource: 'repo:x' },
    decision: { effect: 'allow', policy_id: 'P' },
  });
  let w = evolve(initialWorld(), started).world;
  w = evolve(w, injected).world;
  const t = evolve(w, decision);
  assert.equal(t.world.clock, Date.parse('2026-06-09T14:10:00.000Z'), 'the clock moved to the decision');
  assert.deepEqual(t.changed.map((s) => [s.version, s.tier, s.agent, s.caused_by]), [[3, 'trusted', undefined, injected.event_id]], 'only the expiry released; no agent learned');
});
