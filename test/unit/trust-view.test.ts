// TrustView's admission rule, pure: which trust records a PDP's view applies.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sessionKey } from '../../services/lib/kafka.ts';
import { admitTrust, DEFAULT_MAX_VERSION_STEP } from '../../services/pdp-client/trust-view.ts';

const state = (version: number, tenant = 'acme', session = 'S-9') => ({ tenant_id: tenant, session_id: session, version });
const own = sessionKey('acme', 'S-9');

describe('TrustView admission', () => {
  test('a record keyed for another tenant or session, or unkeyed, is refused', () => {
    assert.deepEqual(admitTrust(state(1), { key: sessionKey('globex', 'S-9'), offset: '0' }, undefined), { ok: false, reason: 'key_mismatch' });
    assert.deepEqual(admitTrust(state(1), { key: sessionKey('acme', 'S-1'), offset: '0' }, undefined), { ok: false, reason: 'key_mismatch' });
    assert.deepEqual(admitTrust(state(1), { key: null, offset: '0' }, undefined), { ok: false, reason: 'key_mismatch' });
    assert.deepEqual(admitTrust(state(2), { key: own, offset: '5' }, 1), { ok: true, newer: true });
  });

  test('a held session moves forward by at most the step; 2^31 cannot pin it', () => {
    assert.deepEqual(admitTrust(state(2 ** 31), { key: own, offset: '10' }, 3), { ok: false, reason: 'version_jump' });
    assert.deepEqual(admitTrust(state(3 + DEFAULT_MAX_VERSION_STEP), { key: own, offset: '9999' }, 3), { ok: true, newer: true });
    assert.deepEqual(admitTrust(state(4 + DEFAULT_MAX_VERSION_STEP), { key: own, offset: '9999' }, 3), { ok: false, reason: 'version_jump' });
    assert.deepEqual(admitTrust(state(50), { key: own, offset: '9999' }, 3, 10), { ok: false, reason: 'version_jump' }, 'the step is configurable');
    // The projector's next real version is still taken after a refusal: the held one did not move.
    assert.deepEqual(admitTrust(state(4), { key: own, offset: '11' }, 3), { ok: true, newer: true });
  });

  test('versions the view already has are no change (never go back)', () => {
    assert.deepEqual(admitTrust(state(3), { key: own, offset: '20' }, 3), { ok: true, newer: false });
    assert.deepEqual(admitTrust(state(1), { key: own, offset: '21' }, 3), { ok: true, newer: false });
  });

  test('a session not held yet: no more versions than records up to this offset (compaction keeps offsets)', () => {
    assert.deepEqual(admitTrust(state(1), { key: own, offset: '0' }, undefined), { ok: true, newer: true });
    assert.deepEqual(admitTrust(state(41), { key: own, offset: '40' }, undefined), { ok: true, newer: true }, 'a compacted topic starting at a late version');
    assert.deepEqual(admitTrust(state(42), { key: own, offset: '40' }, undefined), { ok: false, reason: 'version_beyond_offset' });
    assert.deepEqual(admitTrust(state(2 ** 31), { key: own, offset: '7' }, undefined), { ok: false, reason: 'version_beyond_offset' });
  });
});
