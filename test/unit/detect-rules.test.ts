import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecisionEvent } from '../../schemas/events.ts';
import { denyStorm, initialDenyStorm, type DenyStormState, type Detection } from '../../services/detect/rules.ts';
import { incident } from '../helpers/audit-incident.ts';

const base = incident().denied;
const at = (s: number) => new Date(Date.parse('2026-06-09T14:00:00.000Z') + s * 1000).toISOString();
const deny = (n: number, s: number, session = 'S-9', effect: 'deny' | 'allow' = 'deny'): DecisionEvent => ({
  ...base,
  session_id: session,
  event_id: `01976d2a-0000-7000-8000-${String(n).padStart(12, '0')}`,
  occurred_at: at(s),
  decision: { ...base.decision, effect },
});
const cfg = { threshold: 3, windowMs: 60_000, maxSessions: 2 };
const run = (events: DecisionEvent[], s: DenyStormState = initialDenyStorm()): [DenyStormState, Detection[]] => {
  const all: Detection[] = [];
  for (const e of events) {
    const [next, out] = denyStorm(cfg, s, e);
    s = next;
    all.push(...out);
  }
  return [s, all];
};

describe('deny storm', () => {
  test('given 4 denies within a minute, then one detection naming all four', () => {
    const [, out] = run([deny(1, 0), deny(2, 10), deny(3, 20), deny(4, 30), deny(5, 40)]);
    assert.equal(out.length, 1, 'once per burst');
    assert.equal(out[0]?.detector, 'trustfold/deny-storm');
    assert.deepEqual(out[0]?.event_ids, [1, 2, 3, 4].map((n) => deny(n, 0).event_id));
  });
  test('window edge: a deny exactly windowMs older no longer counts; allows never count', () => {
    assert.equal(run([deny(1, 0), deny(2, 10), deny(3, 20), deny(4, 60)])[1].length, 0);
    assert.equal(run([deny(1, 0), deny(2, 1, 'S-9', 'allow'), deny(3, 2), deny(4, 3)])[1].length, 0);
  });
  test('re-arms once the window empties', () => {
    const [, out] = run([deny(1, 0), deny(2, 1), deny(3, 2), deny(4, 3), deny(5, 200), deny(6, 201), deny(7, 202), deny(8, 203)]);
    assert.equal(out.length, 2);
  });
  test('state is bounded: the least recently seen session is evicted', () => {
    const [s] = run([deny(1, 0, 'A'), deny(2, 1, 'B'), deny(3, 2, 'C')]);
    assert.deepEqual(Object.keys(s.sessions).map((k) => k.split('\u0000')[1]), ['B', 'C']);
  });
  test('restart from a snapshot (JSON round trip) gives the same detections as an uninterrupted run', () => {
    const events = [deny(1, 0), deny(2, 10), deny(3, 20), deny(4, 30)];
    const [mid] = run(events.slice(0, 2));
    const restored = JSON.parse(JSON.stringify(mid)) as DenyStormState;
    assert.deepEqual(run(events.slice(2), restored)[1], run(events)[1]);
  });
});
