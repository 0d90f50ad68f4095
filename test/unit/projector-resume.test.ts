// After a restore (idempotent delivery), given/when/then, no broker: resume.ts
// applies what the pure reconcile/settle say to the sessions still `ahead` and
// to the world — versions shifted past what was published, provenance taken
// from the published state, a session left behind republished past max.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { createCodec } from '../../schemas/codec.ts';
import { initialWorld, restoreSession, sessionKeyOf, viewOf, type SessionState, type World } from '../../services/projector/evolve.ts';
import type { Ahead } from '../../services/projector/reconcile.ts';
import { createResume } from '../../services/projector/resume.ts';

const codec = createCodec();
const KEY = sessionKeyOf('acme', 'S-1');
const CAUSE_A = '01a23327-9bfa-71ed-bba2-03a175dccb6e';
const CAUSE_B = '01a23327-9f0a-7fc2-ba5c-5e5837edb89b';

const session = (version: number, over: Partial<SessionState> = {}): SessionState => ({
  tenant_id: 'acme',
  session_id: 'S-1',
  version,
  delegator: 'U-1',
  agent: 'A-17',
  causes: [],
  freezes: [],
  ended: false,
  updated_at: '2026-12-01T10:00:00.000Z',
  caused_by: CAUSE_A,
  applied: [],
  ...over,
});
const degraded: Partial<SessionState> = {
  causes: [{ kind: 'injection_detected', ref: 'SIG-1', event_id: CAUSE_B, since: '2026-12-01T10:00:01.000Z', tier: 'degraded' }],
  caused_by: CAUSE_B,
  updated_at: '2026-12-01T10:00:01.000Z',
};

/** Given: a world holding `held` (the replay's state) and these versions published past the restore. */
const given = (held: SessionState, ...published: SessionState[]) => {
  const world: World = initialWorld();
  restoreSession(world, held);
  const ahead = new Map<string, Ahead>([[KEY, { max: Math.max(...published.map((s) => s.version)), published: new Map(published.map((s) => [s.version, codec.encodeTrust(viewOf(s))])), verified: 0 }]]);
  const lines: string[] = [];
  const stats = { republishSkipped: 0, rebased: 0 };
  const resume = createResume({ codec, logger: pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) }), stats });
  resume.restored(ahead);
  return { world, resume, stats, lines };
};

describe('resume.reconciled', () => {
  test('a replayed state identical to the published one is not sent again and the world keeps its version', () => {
    const { world, resume, stats } = given(session(1), session(1), session(2, degraded));
    assert.deepEqual(resume.reconciled(world, [viewOf(session(1))]), []);
    assert.equal(stats.republishSkipped, 1);
    assert.equal(world.sessions.get(KEY)?.version, 1);
    assert.equal(resume.size(), 1, 'still ahead: v2 was published and not yet replayed');
  });

  test('the same state through another interleaving: the world takes the published provenance', () => {
    const replayed = session(1, { caused_by: CAUSE_B, updated_at: '2026-12-01T10:00:00.500Z' });
    const { world, resume } = given(replayed, session(1), session(2, degraded));
    assert.deepEqual(resume.reconciled(world, [viewOf(replayed)]), []);
    assert.deepEqual([world.sessions.get(KEY)?.caused_by, world.sessions.get(KEY)?.updated_at], [CAUSE_A, '2026-12-01T10:00:00.000Z']);
  });

  test('a diverging replay moves the state, and the world, past everything published; it is logged and counted', () => {
    const restricted = session(1, { causes: [{ kind: 'trust_set', ref: 'soc', event_id: CAUSE_B, since: '2026-12-01T10:00:00.000Z', tier: 'restricted' }] });
    const { world, resume, stats, lines } = given(restricted, session(1), session(2, degraded));
    assert.deepEqual(resume.reconciled(world, [viewOf(restricted)]).map((s) => [s.version, s.tier]), [[3, 'restricted']]);
    assert.equal(world.sessions.get(KEY)?.version, 3);
    assert.equal(stats.rebased, 1);
    assert.equal(lines.filter((l) => l.includes('replay diverged')).length, 1);
    assert.equal(resume.size(), 0, 'the session left ahead');
  });

  test('nothing ahead: states pass unchanged', () => {
    const { world, resume } = given(session(1), session(1));
    resume.restored(new Map());
    const states = [viewOf(session(1))];
    assert.equal(resume.reconciled(world, states), states);
  });
});

describe('resume.settle', () => {
  test('a session the replay left behind what was published is republished once past max; then nothing is ahead', () => {
    const { world, resume, stats } = given(session(1), session(1), session(2, degraded));
    const republished: [string, number][] = [];
    assert.equal(resume.settle(world, (key, next) => void republished.push([key, next.version])), true);
    assert.deepEqual(republished, [[KEY, 3]]);
    assert.equal(world.sessions.get(KEY)?.version, 3);
    assert.equal(stats.rebased, 1);
    assert.equal(resume.size(), 0);
    assert.equal(resume.settle(world, () => assert.fail('nothing is ahead any more')), false);
  });

  test('a published session the world does not know is logged, not invented', () => {
    const { resume, lines } = given(session(1), session(1), session(2));
    const empty = initialWorld();
    assert.equal(resume.settle(empty, () => assert.fail('unknown sessions are not republished')), true);
    assert.equal(lines.filter((l) => l.includes('unknown after the replay')).length, 1);
  });
});
