// Makes a real OPA binary available to the integration test that runs OPA's
// decision-log plugin against our endpoint: `opa` on PATH is used as it is;
// otherwise, when Go is installed, OPA is built once from the Go module proxy
// into .cache/opa/ (about 1.5 min on 2 cores, first run only). Without either
// that one test is skipped and says why; nothing else depends on it, so a
// failure here warns and exits 0.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OPA_MODULE = 'github.com/open-policy-agent/opa';
const OPA_VERSION = 'v1.22.3';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, '.cache', 'opa');
const bin = join(dir, 'opa');

const works = (cmd) => spawnSync(cmd, ['version'], { encoding: 'utf8' }).status === 0;

if (works('opa')) {
  process.stdout.write('opa-fetch: using opa from PATH\n');
} else if (existsSync(bin) && works(bin)) {
  process.stdout.write(`opa-fetch: ${bin} (cached)\n`);
} else if (spawnSync('go', ['version'], { encoding: 'utf8' }).status !== 0) {
  process.stdout.write('opa-fetch: neither opa nor go found; the real-OPA integration test will be skipped\n');
} else {
  mkdirSync(dir, { recursive: true });
  process.stdout.write(`opa-fetch: building OPA ${OPA_VERSION} with go install (first run only, ~1.5 min)…\n`);
  const t0 = Date.now();
  const r = spawnSync('go', ['install', `${OPA_MODULE}@${OPA_VERSION}`], { env: { ...process.env, GOBIN: dir }, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status === 0 && works(bin)) process.stdout.write(`opa-fetch: ${bin} built in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  else process.stdout.write(`opa-fetch: WARNING: go install ${OPA_MODULE}@${OPA_VERSION} failed (exit ${r.status ?? r.signal}); the real-OPA integration test will be skipped\n`);
}
