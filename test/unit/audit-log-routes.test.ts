// The audit log's HTTP API over an in-memory log: proofs that verify with the
// key alone, tenancy (another tenant's id is a 404), checkpoints, consistency
// proofs, the well-known key, operator-only verify, and every refusal.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { checkRecordProof, type RecordProof } from '../../services/audit-log/evidence.ts';
import { verifyConsistency } from '../../schemas/audit-log/merkle.ts';
import { openCheckpoint, parseVerifierKey } from '../../services/audit-log/note.ts';
import { AUDIT_KEY_PATH, auditLogRoutes } from '../../services/audit-log/routes.ts';
import { trustRef } from '../../schemas/audit-log/records.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { createMemoryLog, decisionLeaf, testSigner } from './audit-log-fixture.ts';

const secret = 'audit-log-routes-secret-0123456789abcdef';
const { signer, verifier, key } = testSigner();
const mem = createMemoryLog(signer);
const T = 'dec';
const id = (n: number): string => `01976d2b-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
// Log dec/0: 13 decisions of acme and globex interleaved, a checkpoint at 13, 7 more and one at 20, then one unsigned.
for (let i = 0; i < 13; i++) mem.append(decisionLeaf(i % 3 === 2 ? 'globex' : 'acme', id(i), { topic: T, partition: 0, offset: 100 + i }));
mem.sign(`${T}/0`);
for (let i = 13; i < 20; i++) mem.append(decisionLeaf('acme', id(i), { topic: T, partition: 0, offset: 100 + i }));
const cp20 = mem.sign(`${T}/0`);
mem.append(decisionLeaf('acme', id(99), { topic: T, partition: 0, offset: 200 }));
// A second log with a signal and a trust transition.
mem.append({ kind: 'signal', kafka: { topic: 'sig', partition: 1, offset: '5' }, record: { type: 'signal', kind: 'injection_detected', tenant_id: 'acme', event_id: id(500) } });
mem.append({ kind: 'trust', kafka: { topic: 'trust', partition: 2, offset: '9' }, record: { tenant_id: 'acme', session_id: 'S-9', version: 4, tier: 'restricted' } });
mem.sign('sig/1');
mem.sign('trust/2');

let app: App;
let verifyCalls: unknown[] = [];
before(async () => {
  app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(
    auditLogRoutes({
      store: mem.store,
      reader: mem.reader,
      verify: async (o) => {
        verifyCalls.push(o);
        return { ok: true, logs: [], findings: [], notes: [] };
      },
      verifierKeys: [key],
    }),
  );
  await app.ready();
});
after(async () => app.close());

const token = (tenant: string, scopes = ['audit:read']) => mintToken({ sub: 't', tenant, scopes }, secret);
const operator = () => token('*', ['audit:read', 'tenants:all']);
const get = async (url: string, tok?: string) => app.inject({ method: 'GET', url, headers: tok === undefined ? {} : { authorization: `Bearer ${tok}` } });

describe('proofs', () => {
  test("a tenant's decision: leaf, proof and signed checkpoint that verify with the public key alone", async () => {
    const r = await get(`/v1/audit/decisions/${id(4)}/proof`, await token('acme'));
    assert.equal(r.statusCode, 200, r.body);
    const p = r.json<RecordProof>();
    assert.equal(p.log_id, `${T}/0`);
    assert.equal(p.leaf_index, 4);
    assert.equal(p.tree_size, 20, 'the latest checkpoint, not the unsigned head');
    assert.equal(p.checkpoint.note, cp20.note);
    assert.deepEqual(checkRecordProof(p, [verifier]), { ok: true });
  });

  test('every leaf of a signed log proves against every checkpoint that covers it (?size=)', async () => {
    for (let i = 0; i < 20; i++) {
      for (const size of [13, 20]) {
        const r = await get(`/v1/audit/decisions/${id(i)}/proof?size=${size}`, await operator());
        if (i >= size) {
          assert.equal(r.statusCode, 409, `leaf ${i} at size ${size}`);
          continue;
        }
        assert.equal(r.statusCode, 200, `leaf ${i} at size ${size}: ${r.body}`);
        const p = r.json<RecordProof>();
        assert.equal(p.tree_size, size);
        assert.deepEqual(checkRecordProof(p, [verifier]), { ok: true }, `leaf ${i} at size ${size}`);
      }
    }
  });

  test('signals and trust transitions have proofs too', async () => {
    const s = await get(`/v1/audit/signals/${id(500)}/proof`, await token('acme'));
    assert.equal(s.statusCode, 200, s.body);
    assert.deepEqual(checkRecordProof(s.json<RecordProof>(), [verifier]), { ok: true });
    const t = await get('/v1/audit/sessions/S-9/transitions/4/proof', await token('acme'));
    assert.equal(t.statusCode, 200, t.body);
    assert.equal(t.json<RecordProof>().ref, trustRef('S-9', 4));
    assert.deepEqual(checkRecordProof(t.json<RecordProof>(), [verifier]), { ok: true });
  });

  test("another tenant's id is a 404, naming another tenant a 403; an operator reads any", async () => {
    const globexId = id(2);
    assert.equal((await get(`/v1/audit/decisions/${globexId}/proof`, await token('acme'))).statusCode, 404);
    assert.equal((await get(`/v1/audit/decisions/${globexId}/proof?tenant=globex`, await token('acme'))).statusCode, 403);
    assert.equal((await get(`/v1/audit/decisions/${globexId}/proof`, await token('globex'))).statusCode, 200);
    assert.equal((await get(`/v1/audit/decisions/${globexId}/proof?tenant=globex`, await operator())).statusCode, 200);
    assert.equal((await get(`/v1/audit/decisions/${globexId}/proof?tenant=acme`, await operator())).statusCode, 404);
  });

  test('refusals: no token 401, wrong scope 403, bad id or size 400, unknown 404, past the checkpoint 409, no checkpoint of that size 404', async () => {
    assert.equal((await get(`/v1/audit/decisions/${id(4)}/proof`)).statusCode, 401);
    assert.equal((await get(`/v1/audit/decisions/${id(4)}/proof`, await token('acme', ['trust:read']))).statusCode, 403);
    const bad = await get('/v1/audit/decisions/not-a-uuid/proof', await token('acme'));
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /event_id/);
    assert.equal((await get(`/v1/audit/decisions/${id(4)}/proof?size=0`, await token('acme'))).statusCode, 400);
    assert.equal((await get(`/v1/audit/decisions/${id(4)}/proof?depth=1`, await token('acme'))).statusCode, 400);
    assert.equal((await get(`/v1/audit/decisions/${id(777)}/proof`, await token('acme'))).statusCode, 404);
    const pending = await get(`/v1/audit/decisions/${id(99)}/proof`, await token('acme'));
    assert.equal(pending.statusCode, 409);
    assert.equal(pending.json<{ error: { code: string } }>().error.code, 'not_checkpointed');
    assert.equal((await get(`/v1/audit/decisions/${id(4)}/proof?size=15`, await token('acme'))).statusCode, 404);
  });
});

describe('checkpoints and consistency', () => {
  test('latest per log, one log, or by size; size needs log', async () => {
    const all = await get('/v1/audit/checkpoints', await token('acme'));
    assert.equal(all.statusCode, 200);
    const cps = all.json<{ checkpoints: { log_id: string; size: number; note: string }[] }>().checkpoints;
    assert.deepEqual(cps.map((c) => [c.log_id, c.size]), [[`${T}/0`, 20], ['sig/1', 1], ['trust/2', 1]]);
    for (const c of cps) assert.ok(openCheckpoint(c.note, [verifier]).ok);
    const at13 = await get(`/v1/audit/checkpoints?log=${encodeURIComponent(`${T}/0`)}&size=13`, await token('acme'));
    assert.deepEqual(at13.json<{ checkpoints: { size: number }[] }>().checkpoints.map((c) => c.size), [13]);
    assert.equal((await get(`/v1/audit/checkpoints?log=${T}/0&size=14`, await token('acme'))).statusCode, 404);
    assert.equal((await get('/v1/audit/checkpoints?size=13', await token('acme'))).statusCode, 400);
    assert.equal((await get('/v1/audit/checkpoints?log=nopartition', await token('acme'))).statusCode, 400);
    assert.equal((await get('/v1/audit/checkpoints')).statusCode, 401);
  });

  test('a consistency proof between two checkpoints verifies against their signed roots', async () => {
    const r = await get(`/v1/audit/consistency?log=${T}/0&from=13&to=20`, await token('acme'));
    assert.equal(r.statusCode, 200, r.body);
    const body = r.json<{ proof: string[]; from_checkpoint: { note: string }; to_checkpoint: { note: string } }>();
    const a = openCheckpoint(body.from_checkpoint.note, [verifier]);
    const b = openCheckpoint(body.to_checkpoint.note, [verifier]);
    assert.ok(a.ok && b.ok);
    const proof = body.proof.map((h) => new Uint8Array(Buffer.from(h, 'base64')));
    assert.deepEqual(verifyConsistency(13, 20, proof, a.checkpoint.root, b.checkpoint.root), { ok: true });
    assert.equal(verifyConsistency(13, 20, proof, b.checkpoint.root, a.checkpoint.root).ok, false);
    // Every pair of sizes up to the latest checkpoint.
    for (let m = 1; m <= 20; m++) {
      const x = await get(`/v1/audit/consistency?log=${T}/0&from=${m}&to=20`, await token('acme'));
      assert.equal(x.statusCode, 200);
      assert.equal(x.json<{ proof: string[] }>().proof.length === 0, m === 20, `from ${m}`);
    }
  });

  test('refusals: beyond the latest checkpoint 404, from > to 400, missing log 400', async () => {
    assert.equal((await get(`/v1/audit/consistency?log=${T}/0&from=13&to=21`, await token('acme'))).statusCode, 404);
    assert.equal((await get(`/v1/audit/consistency?log=${T}/0&from=14&to=13`, await token('acme'))).statusCode, 400);
    assert.equal((await get('/v1/audit/consistency?from=1&to=2', await token('acme'))).statusCode, 400);
    assert.equal((await get(`/v1/audit/consistency?log=${T}/0&from=0&to=13`, await token('acme'))).statusCode, 400);
  });
});

describe('key and verify', () => {
  test('the well-known key needs no token and is a verifier key of the signer', async () => {
    const r = await get(AUDIT_KEY_PATH);
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    const lines = r.body.trim().split('\n');
    assert.deepEqual(lines, [key]);
    assert.ok(parseVerifierKey(lines[0] ?? '').ok);
  });

  test('verify is for operators only; its scope and tenant pass through', async () => {
    verifyCalls = [];
    const post = async (tok: string | undefined, payload: unknown) =>
      app.inject({ method: 'POST', url: '/v1/audit/verify', headers: tok === undefined ? {} : { authorization: `Bearer ${tok}` }, payload: payload as Record<string, unknown> });
    assert.equal((await post(undefined, {})).statusCode, 401);
    assert.equal((await post(await token('acme'), {})).statusCode, 403);
    assert.deepEqual(verifyCalls, [], 'refused before verify ran');
    const r = await post(await operator(), { tenant: 'acme' });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.json(), { ok: true, logs: [], findings: [], notes: [] });
    assert.equal((await post(await operator(), { everything: true })).statusCode, 400);
    assert.deepEqual(verifyCalls, [{ log: undefined, tenant: 'acme' }]);
  });

  test('the OpenAPI document lists every audit-log route with its statuses', async () => {
    const doc = app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    // The routes' own statuses, beside the ones every documented route gets from
    // the base app (services/lib/http.ts: 431 oversized headers, 503, 413/415 with a body).
    const STANDARD = new Set(['400', '401', '403', '413', '415', '431', '503']);
    const statuses = (path: string, method: string) => Object.keys(doc.paths[path]?.[method]?.responses ?? {}).filter((c) => !STANDARD.has(c) || ['400', '401', '403'].includes(c)).sort();
    assert.deepEqual(statuses('/v1/audit/decisions/{event_id}/proof', 'get'), ['200', '400', '401', '403', '404', '409']);
    assert.deepEqual(statuses('/v1/audit/checkpoints', 'get'), ['200', '400', '401', '403', '404']);
    assert.deepEqual(statuses('/v1/audit/consistency', 'get'), ['200', '400', '401', '403', '404']);
    assert.deepEqual(statuses('/v1/audit/verify', 'post'), ['200', '400', '401', '403']);
    assert.deepEqual(statuses(AUDIT_KEY_PATH, 'get'), ['200', '400']);
  });
});

describe('checkRecordProof', () => {
  test('names an altered record, an altered proof and a forged checkpoint', async () => {
    const p = (await get(`/v1/audit/decisions/${id(7)}/proof`, await token('acme'))).json<RecordProof>();
    const altered = { ...p, leaf: { ...p.leaf, record: { ...(p.leaf.record as Record<string, unknown>), session_id: 'S-10' } } } as RecordProof;
    assert.equal((checkRecordProof(altered, [verifier]) as { problem: string }).problem, 'changed');
    const flipped = { ...p, inclusion_proof: [...p.inclusion_proof].reverse() };
    assert.equal((checkRecordProof(flipped, [verifier]) as { problem: string }).problem, 'bad_proof');
    const moved = { ...p, leaf_index: p.leaf_index + 1 };
    assert.equal(checkRecordProof(moved, [verifier]).ok, false);
    const forged = { ...p, checkpoint: { ...p.checkpoint, note: p.checkpoint.note.replace('\n20\n', '\n21\n') } };
    assert.equal((checkRecordProof(forged, [verifier]) as { problem: string }).problem, 'bad_checkpoint');
    const stranger = testSigner('trustfold-test').verifier;
    assert.equal((checkRecordProof(p, [stranger]) as { problem: string }).problem, 'bad_checkpoint');
  });
});

describe('warm-up', () => {
  const appWith = async (warm: () => Promise<{ logs: number; tiles: number }>) => {
    const a = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
    await a.register(auditLogRoutes({ store: { ...mem.store, warm }, reader: mem.reader, verify: async () => ({ ok: true, logs: [], findings: [], notes: [] }), verifierKeys: [key] }));
    return a;
  };

  test("a store's tiles are loaded once when the server is ready, before any request", async () => {
    let calls = 0;
    const a = await appWith(async () => {
      calls++;
      return { logs: 1, tiles: 3 };
    });
    assert.equal(calls, 0, 'not while the routes are registered');
    await a.ready();
    assert.equal(calls, 1);
    const r = await a.inject({ method: 'GET', url: `/v1/audit/decisions/${id(4)}/proof`, headers: { authorization: `Bearer ${await token('acme')}` } });
    assert.equal(r.statusCode, 200);
    assert.equal(calls, 1, 'a request does not warm again');
    await a.close();
  });

  test('a warm-up that fails does not stop the server: proofs are still served', async () => {
    const a = await appWith(async () => {
      throw new Error('ClickHouse is not reachable yet');
    });
    await a.ready();
    const r = await a.inject({ method: 'GET', url: `/v1/audit/decisions/${id(4)}/proof`, headers: { authorization: `Bearer ${await token('acme')}` } });
    assert.equal(r.statusCode, 200, r.body);
    await a.close();
  });
});
