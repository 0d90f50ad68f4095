// Sealing a group, given/when/then, no broker: what a group writes is taken
// from the world at the instant of the seal — the state messages keyed by
// session, the changelog records of every key it touched (sessions apart from
// the facts that fan out) and the next input offsets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createCodec } from '../../schemas/codec.ts';
import { sessionKey } from '../../schemas/keys.ts';
import { decodeRecord } from '../../services/projector/changelog.ts';
import { evolveAll, initialWorld } from '../../services/projector/evolve.ts';
import { emptyGroup, isEmptyGroup, offsetsByTopic, seal, type Group } from '../../services/projector/group.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const codec = createCodec();

test('given a decision and a role revocation folded into one group, when it is sealed, then its states, session records, fact records and offsets are what the world holds', () => {
  const t = evolveAll(initialWorld(), [decisionFixture, signalFixtures.role_revoked]);
  const g: Group = { ...emptyGroup(), changed: t.changed, touched: new Set(t.touched) };
  g.offsets.set('signals\u00000', { topic: 'signals', partition: 0, offset: '8' });
  g.offsets.set('decisions\u00000', { topic: 'decisions', partition: 0, offset: '3' });
  const sealed = seal(t.world, g, (s) => codec.encodeTrust(s));

  assert.equal(sealed.states.length, t.changed.length);
  for (const [i, m] of sealed.states.entries()) {
    const s = t.changed[i];
    assert.ok(s !== undefined);
    assert.equal(m.key, sessionKey(s.tenant_id, s.session_id));
    assert.equal(m.headers?.['trustfold-version'], String(s.version));
    assert.deepEqual(m.value, codec.encodeTrust(s));
  }
  const kinds = (ms: { value: Buffer }[]) => ms.map((m) => {
    const r = decodeRecord(m.value);
    assert.ok(r.ok);
    return r.value.kind;
  });
  assert.deepEqual(kinds(sealed.sessions), ['session']);
  assert.deepEqual(kinds(sealed.facts), ['user'], 'the revocation is a fact of the user, recorded apart from the session');
  // The session record holds the world's latest version, not an intermediate one.
  const rec = decodeRecord(sealed.sessions[0]?.value ?? Buffer.alloc(0));
  assert.ok(rec.ok && rec.value.kind === 'session');
  assert.equal(rec.value.kind === 'session' ? rec.value.value.version : -1, t.changed.at(-1)?.version);
  assert.deepEqual(offsetsByTopic(sealed.offsets), [
    { topic: 'signals', partitions: [{ partition: 0, offset: '8' }] },
    { topic: 'decisions', partitions: [{ partition: 0, offset: '3' }] },
  ]);
});

test('an empty group seals to nothing and is empty; a tick-only group (touched, no offsets) is not', () => {
  const g = emptyGroup();
  assert.ok(isEmptyGroup(g));
  assert.deepEqual(seal(initialWorld(), g, (s) => codec.encodeTrust(s)), { states: [], sessions: [], facts: [], offsets: [] });
  assert.ok(!isEmptyGroup({ ...emptyGroup(), touched: new Set(['k']) }));
});
