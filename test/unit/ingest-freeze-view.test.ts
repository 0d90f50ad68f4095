// The bookkeeping of ingest's freeze reader (services/ingest/freeze-view.ts),
// given trust states → the tenant's active freezes, with no broker.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ActiveFreeze } from '../../schemas/events.ts';
import { createFreezeIndex } from '../../services/ingest/freeze-view.ts';

const freeze = (freeze_id: string, reason = 'change window'): ActiveFreeze => ({ freeze_id, scope: {}, reason });
const state = (tenant_id: string, session_id: string, version: number, freezes: ActiveFreeze[]) => ({ tenant_id, session_id, version, freezes });

describe('freeze index', () => {
  test('a freeze named by a session is active for its tenant only', () => {
    const ix = createFreezeIndex();
    ix.apply(state('acme', 'S-1', 1, [freeze('F-1')]));
    assert.deepEqual(ix.activeFreezes('acme').map((f) => f.freeze_id), ['F-1']);
    assert.deepEqual(ix.activeFreezes('globex'), []);
    assert.equal(ix.held({ tenant_id: 'acme', session_id: 'S-1' }), 1);
    assert.equal(ix.held({ tenant_id: 'globex', session_id: 'S-1' }), undefined);
  });

  test('a freeze stays while some session still names it, and goes when none does', () => {
    const ix = createFreezeIndex();
    ix.apply(state('acme', 'S-1', 1, [freeze('F-1')]));
    ix.apply(state('acme', 'S-2', 1, [freeze('F-1'), freeze('F-2')]));
    ix.apply(state('acme', 'S-1', 2, []));
    assert.deepEqual(ix.activeFreezes('acme').map((f) => f.freeze_id).sort(), ['F-1', 'F-2']);
    ix.apply(state('acme', 'S-2', 2, [freeze('F-2')]));
    assert.deepEqual(ix.activeFreezes('acme').map((f) => f.freeze_id), ['F-2']);
  });

  test('the newest state naming a freeze gives its content, once per tenant', () => {
    const ix = createFreezeIndex();
    ix.apply(state('acme', 'S-1', 1, [freeze('F-1', 'first')]));
    ix.apply(state('acme', 'S-2', 1, [freeze('F-1', 'second')]));
    assert.deepEqual(ix.activeFreezes('acme'), [freeze('F-1', 'second')]);
  });
});
