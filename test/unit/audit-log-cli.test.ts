// `trustfold audit verify|export` through runCli against the audit-log routes
// over an in-memory log (fetch → app.inject): export a session's bundle,
// verify it offline, then tamper with each kind of file in it.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { VerifyReport } from '../../services/audit-log/verify.ts';
import { auditLogRoutes } from '../../services/audit-log/routes.ts';
import { runCli } from '../../services/cli/cli.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, requireScope, type App } from '../../services/lib/http.ts';
import { createMemoryLog, decisionLeaf, injectFetch, testSigner } from './audit-log-fixture.ts';

const SECRET = 'audit-log-cli-test-secret-0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'trustfold-audit-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const { signer, key } = testSigner();
const mem = createMemoryLog(signer);
const id = (n: number): string => `01976d2b-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
for (let i = 0; i < 9; i++) mem.append(decisionLeaf(i === 4 ? 'globex' : 'acme', id(i), { topic: 'dec', partition: 3, offset: 10 + i }));
mem.append({ kind: 'signal', kafka: { topic: 'sig', partition: 0, offset: '2' }, record: { type: 'signal', kind: 'injection_detected', tenant_id: 'acme', event_id: id(100), session_id: 'S-9' } });
mem.append({ kind: 'trust', kafka: { topic: 'trust', partition: 1, offset: '7' }, record: { tenant_id: 'acme', session_id: 'S-9', version: 3, tier: 'restricted' } });
for (const log of ['dec/3', 'sig/0', 'trust/1']) mem.sign(log);
// Logged after the checkpoint: left out of an export, which says so.
mem.append(decisionLeaf('acme', id(50), { topic: 'dec', partition: 3, offset: 40 }));

let verifyAnswer: VerifyReport = { ok: true, logs: [], findings: [], notes: [] };
let app: App;
let withPending = false;
before(async () => {
  app = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
  await app.register(auditLogRoutes({ store: mem.store, reader: mem.reader, verify: async () => verifyAnswer, verifierKeys: [key] }));
  // The session timeline as the query role serves it: acme's records of S-9.
  app.get('/v1/audit/sessions/:id/timeline', { onRequest: requireScope('audit:read') }, async () => ({
    entries: [
      ...[0, 1, 2, 3, 5, 6, 7, 8].map((i) => ({ kind: 'decision', tenant: 'acme', event_id: id(i) })),
      ...(withPending ? [{ kind: 'decision', tenant: 'acme', event_id: id(50) }] : []),
      { kind: 'signal', tenant: 'acme', event_id: id(100) },
      { kind: 'trust', tenant: 'acme', version: 3 },
    ],
    next_cursor: null,
  }));
  await app.ready();
});
after(async () => app.close());

const fetchFn: typeof fetch = (input, init) => injectFetch(app)(input, init);

const cli = async (...argv: string[]) => {
  let out = '';
  let err = '';
  const code = await runCli(argv, { env: { TRUSTFOLD_JWT_SECRET: SECRET, TRUSTFOLD_DATA_DIR: dir }, fetch: fetchFn, stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  return { code, out, err };
};

describe('audit export and verify --bundle', () => {
  const bundle = join(dir, 'bundle');

  test('export writes every record of the session with its proof, checkpoints and key; it verifies offline', async () => {
    const e = await cli('audit', 'export', '--session', 'S-9', '--bundle', bundle, '--tenant', 'acme');
    assert.equal(e.code, 0, e.err);
    assert.match(e.out, /10 records, 3 checkpoints/);
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { records: string[]; checkpoints: string[] };
    assert.equal(manifest.records.length, 10);
    assert.equal(readFileSync(join(bundle, 'trustfold-audit-key.txt'), 'utf8').trim(), key);
    const v = await cli('audit', 'verify', '--bundle', bundle);
    assert.equal(v.code, 0, v.out + v.err);
    assert.match(v.out, /10 of 10 records verified/);
    assert.match(v.out, /^OK/m);
    assert.equal((await cli('audit', 'verify', '--bundle', bundle, '--key', key)).code, 0, 'pinned to the published key');
  });

  test('a record edited in the bundle is named, by file, id and leaf index, and the exit code is 1', async () => {
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { records: string[]; checkpoints: string[] };
    const file = manifest.records[2] ?? '';
    const original = readFileSync(join(bundle, file), 'utf8');
    writeFileSync(join(bundle, file), original.replace('"deny"', '"allow"'));
    const v = await cli('audit', 'verify', '--bundle', bundle);
    assert.equal(v.code, 1);
    assert.match(v.out, new RegExp(`CHANGED +${file.replace(/[.]/g, '\\.')} +${id(2)} +\\(leaf 2 of dec/3\\)`));
    writeFileSync(join(bundle, file), original);

    const proofEdited = original.replace(/"inclusion_proof": \[\s*"[^"]+"/, '"inclusion_proof": [ "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="');
    assert.notEqual(proofEdited, original);
    writeFileSync(join(bundle, file), proofEdited);
    const p = await cli('audit', 'verify', '--bundle', bundle);
    assert.equal(p.code, 1);
    assert.match(p.out, /BAD_PROOF/);
    writeFileSync(join(bundle, file), original);
    assert.equal((await cli('audit', 'verify', '--bundle', bundle)).code, 0, 'restored');
  });

  test('a forged checkpoint, a deleted record, an added file and another key are each named', async () => {
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { records: string[]; checkpoints: string[] };
    const cp = manifest.checkpoints.find((c) => c.includes('dec')) ?? '';
    const note = readFileSync(join(bundle, cp), 'utf8');
    writeFileSync(join(bundle, cp), note.replace('\n9\n', '\n8\n'));
    let v = await cli('audit', 'verify', '--bundle', bundle);
    assert.equal(v.code, 1);
    assert.match(v.out, new RegExp(`BAD_CHECKPOINT +${cp.replace(/[.]/g, '\\.')}`));
    writeFileSync(join(bundle, cp), note);

    const gone = manifest.records[0] ?? '';
    const kept = readFileSync(join(bundle, gone), 'utf8');
    unlinkSync(join(bundle, gone));
    v = await cli('audit', 'verify', '--bundle', bundle);
    assert.equal(v.code, 1);
    assert.match(v.out, new RegExp(`MISSING +${gone.replace(/[.]/g, '\\.')}`));
    writeFileSync(join(bundle, gone), kept);

    writeFileSync(join(bundle, 'records', '9999-decision-forged.json'), kept);
    v = await cli('audit', 'verify', '--bundle', bundle);
    assert.equal(v.code, 1);
    assert.match(v.out, /UNLISTED +records\/9999-decision-forged\.json/);
    unlinkSync(join(bundle, 'records', '9999-decision-forged.json'));

    const other = testSigner('trustfold-test').key;
    v = await cli('audit', 'verify', '--bundle', bundle, '--key', other);
    assert.equal(v.code, 1);
    assert.match(v.out, /KEY_NOT_PINNED/);
    assert.match(v.out, /BAD_CHECKPOINT/);
    assert.equal((await cli('audit', 'verify', '--bundle', join(dir, 'nowhere'))).code, 1);
  });

  test('records logged after the latest checkpoint are left out, listed, and the exit code says so', async () => {
    withPending = true;
    try {
      const e = await cli('audit', 'export', '--session', 'S-9', '--bundle', join(dir, 'pending'), '--tenant', 'acme');
      assert.equal(e.code, 1);
      assert.match(e.err, new RegExp(`decision ${id(50)}`));
      const manifest = JSON.parse(readFileSync(join(dir, 'pending', 'manifest.json'), 'utf8')) as { not_checkpointed: string[]; records: string[] };
      assert.deepEqual(manifest.not_checkpointed, [`decision ${id(50)}`]);
      assert.equal((await cli('audit', 'verify', '--bundle', join(dir, 'pending'))).code, 0, 'what it holds verifies');
    } finally {
      withPending = false;
    }
  });
});

describe('audit verify (server)', () => {
  test('clean: exit 0 and a line per log', async () => {
    verifyAnswer = { ok: true, logs: [{ log: 'dec/3', checkpoint_size: 9, leaves: 9, records: 9, verified: 9, duplicates: 0, pending: 0, conflicts: 0, findings: [], notes: [] }], findings: [], notes: [] };
    const r = await cli('audit', 'verify');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /log dec\/3: checkpoint size 9, 9 verified/);
    assert.match(r.out, /^OK/m);
  });

  test('a refused conflicting copy is noted by id and leaf, and is not a failure (exit 0)', async () => {
    const note = { kind: 'conflict' as const, log: 'dec/3', leaf_index: 8, ref: id(2), tenant: 'acme', offset: '18', first_offset: '12', message: 'a refused copy' };
    verifyAnswer = { ok: true, logs: [{ log: 'dec/3', checkpoint_size: 9, leaves: 9, records: 8, verified: 8, duplicates: 0, pending: 0, conflicts: 1, findings: [], notes: [note] }], findings: [], notes: [note] };
    const r = await cli('audit', 'verify');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /1 refused conflicting copies/);
    assert.match(r.out, new RegExp(`CONFLICT +dec/3 +${id(2)} +\\(leaf 8, offset 18\\)`));
  });

  test('findings: each by kind, id and leaf index; exit 1', async () => {
    const findings = [
      { kind: 'changed' as const, log: 'dec/3', leaf_index: 2, ref: id(2), tenant: 'acme', offset: '12', message: 'decision differs' },
      { kind: 'truncated' as const, log: 'dec/3', leaf_index: 7, message: 'tail dropped' },
    ];
    verifyAnswer = { ok: false, logs: [{ log: 'dec/3', checkpoint_size: 9, leaves: 9, records: 8, verified: 7, duplicates: 0, pending: 0, conflicts: 0, findings, notes: [] }], findings, notes: [] };
    const r = await cli('audit', 'verify', '--tenant', 'acme');
    assert.equal(r.code, 1);
    assert.match(r.out, new RegExp(`CHANGED +dec/3 +${id(2)} +\\(leaf 2, offset 12\\)`));
    assert.match(r.out, /TRUNCATED +dec\/3 +- +\(leaf 7\)/);
  });

  test('usage errors exit 2; a tenant token is refused (exit 3)', async () => {
    assert.equal((await cli('audit', 'export', '--session', 'S-9')).code, 2);
    assert.equal((await cli('audit', 'verify', '--bundle', dir, '--tenant', 'acme')).code, 2);
    assert.equal((await cli('audit', 'verify', '--key', key)).code, 2);
    const tenantToken = await mintToken({ sub: 't', tenant: 'acme', scopes: ['audit:read'] }, SECRET);
    assert.equal((await cli('audit', 'verify', '--token', tenantToken)).code, 3);
  });
});
