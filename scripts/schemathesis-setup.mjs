#!/usr/bin/env node
// Installs Schemathesis (the property-based OpenAPI tester, from PyPI) into a
// project-local virtualenv, .cache/schemathesis, for
// test/integration/schemathesis.test.ts. Fast when cached: a marker file
// holds the installed version. Exits 0 without installing, saying why, when
// python3 or its venv module is missing (the test then skips with the same
// reason), and likewise when the install fails (offline) — so it can run among
// the optional steps of test-prepare.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const venv = join(root, '.cache', 'schemathesis');
const marker = join(venv, '.trustfold-schemathesis-version');
const bin = join(venv, 'bin', 'schemathesis');
// One exact version: the test runs with a fixed seed, and the same seed draws the
// same requests only from the same Schemathesis; its hooks (test/schemathesis/hooks.py)
// use the 4.x case API. A cached venv of another version is replaced.
const VERSION = '4.32.5';
const REQUIREMENT = `schemathesis==${VERSION}`;

const say = (s) => process.stdout.write(`schemathesis-setup: ${s}\n`);

const cached = existsSync(marker) && existsSync(bin) ? readFileSync(marker, 'utf8').trim() : undefined;
if (cached !== undefined && cached.endsWith(` ${VERSION}`)) {
  say(`cached: ${cached} in ${venv}`);
  process.exit(0);
}

const python = spawnSync('python3', ['-c', 'import venv, ensurepip'], { stdio: 'ignore' });
if (python.error !== undefined || python.status !== 0) {
  say('skipped: python3 with the venv and ensurepip modules is not available (the Schemathesis test will skip)');
  process.exit(0);
}

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    // Offline, or PyPI refused: optional like the other fetches, so say why and let the test skip.
    say(`skipped: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}); the Schemathesis test will skip`);
    rmSync(venv, { recursive: true, force: true });
    process.exit(0);
  }
};

const t0 = Date.now();
mkdirSync(dirname(venv), { recursive: true });
rmSync(venv, { recursive: true, force: true });
run('python3', ['-m', 'venv', venv]);
run(join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', REQUIREMENT]);
const version = spawnSync(bin, ['--version'], { encoding: 'utf8' });
if (version.status !== 0) {
  say(`failed: ${bin} --version (${version.status ?? version.signal})`);
  process.exit(1);
}
const printed = version.stdout.trim();
writeFileSync(marker, `${printed}\n`);
say(`installed ${printed} in ${venv} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
