// The exported schemas/avro/ folder read by the Apache Avro Java reference
// implementation (1.12, from Maven Central into .cache/avro-java/, once): one
// Schema.Parser for the whole folder, the codec's fingerprints, every event
// type's bytes decoded and re-encoded identically, every enum's default honoured.
// Needs network on the first run, hence this tier; skipped, saying why, without
// java or mvn.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { createCodec, parseEvent, parseSessionTrust, type CodecKey } from '../../schemas/codec.ts';
import { SIGNAL_KINDS } from '../../schemas/events.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const jarsDir = resolve('.cache', 'avro-java', 'jars'); // absolute: mvn resolves relative paths from the pom
const runs = (cmd: string, args: string[]): boolean => {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
};
const missing = !runs('java', ['-version']) ? 'no `java` on PATH' : !runs('mvn', ['-v']) ? 'no `mvn` on PATH' : undefined;

const fetchJars = (): void => {
  if (existsSync(jarsDir) && readdirSync(jarsDir).some((f) => f.startsWith('avro-'))) return;
  const scratch = `${jarsDir}.partial`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const r = spawnSync(
    'mvn',
    ['-q', '-f', 'test/avro-java/pom.xml', 'dependency:copy-dependencies', `-DoutputDirectory=${scratch}`, '-DincludeScope=runtime'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, `mvn could not fetch Avro from Maven Central:\n${r.stdout}${r.stderr}`);
  renameSync(scratch, jarsDir); // only a complete fetch is ever taken for one
};

test('schemas/avro/ with the Apache Avro Java reference implementation', { skip: missing ?? false, timeout: 300_000 }, () => {
  fetchJars();
  const codec = createCodec();
  const trust = parseSessionTrust({
    session_id: 'S-9', tenant_id: 'acme', version: 4, tier: 'restricted', delegator: 'U-442', agent: 'A-17',
    causes: [{ kind: 'injection_detected', ref: 'SIG-INJ-8821', event_id: '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e',
      since: '2026-06-09T14:01:57.000Z', tier: 'restricted' }],
    revoked_roles: ['payments-admin'], consent_revoked: false,
    freezes: [{ freeze_id: 'INC-77', scope: { resource_prefix: 'repo:' }, reason: 'incident' }],
    ended: false, updated_at: '2026-06-09T14:02:00.000Z', caused_by: '01976d2a-9e1b-7c3a-8d4e-5f6a7b8c9d0e',
  });
  assert.ok(trust.ok, JSON.stringify(trust));
  const event = (input: unknown): Buffer => {
    const r = parseEvent(input);
    assert.ok(r.ok, JSON.stringify(r));
    return codec.encodeEvent(r.value);
  };
  const cases: [CodecKey, Buffer][] = [
    ['decision', event(decisionFixture)],
    ...SIGNAL_KINDS.map((k): [CodecKey, Buffer] => [k, event(signalFixtures[k])]),
    ['session_trust', codec.encodeTrust(trust.value)],
  ];
  const dir = mkdtempSync(join(tmpdir(), 'trustfold-avro-java-'));
  try {
    const file = join(dir, 'cases.txt');
    writeFileSync(
      file,
      cases.map(([k, b]) => `${k.replaceAll('_', '-')}.avsc ${codec.fingerprint(k).toString('hex')} ${b.toString('hex')}`).join('\n'),
    );
    const r = spawnSync('java', ['-cp', join(jarsDir, '*'), 'test/avro-java/CheckFolder.java', 'schemas/avro', file], {
      encoding: 'utf8',
    });
    const out = r.stdout.split('\n').filter((l) => l !== '');
    for (const line of out) if (line.startsWith('FIGURE') || line.startsWith('FAIL')) console.log(line);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(out.filter((l) => l.startsWith('FAIL')).length, 0);
    assert.equal(out.filter((l) => l.includes('re-encodes identically')).length, cases.length);
    assert.equal(out.filter((l) => l.includes('reads as the default')).length, 5, 'Tier, ChainLinkKind, Effect, OutcomeStatus, Severity');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
