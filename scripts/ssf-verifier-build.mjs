// Builds the independent Go verifier of trustfold's SETs (test/ssf-verifier:
// github.com/go-jose/go-jose/v4 from the Go module proxy) into
// .cache/ssf-verifier/, once per source version (a stamp of the sources'
// SHA-256 sits beside the binary). Without Go the cross-check tests are
// skipped and say why; nothing else depends on it, so a failure here warns
// and exits 0.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'test', 'ssf-verifier');
const dir = join(root, '.cache', 'ssf-verifier');
const bin = join(dir, 'ssf-verifier');
const stampFile = join(dir, 'stamp');

const stamp = createHash('sha256');
for (const f of ['go.mod', 'go.sum', 'main.go']) stamp.update(readFileSync(join(src, f)));
const want = stamp.digest('hex');

if (existsSync(bin) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === want) {
  process.stdout.write(`ssf-verifier-build: ${bin} (cached)\n`);
} else if (spawnSync('go', ['version'], { encoding: 'utf8' }).status !== 0) {
  process.stdout.write('ssf-verifier-build: go not found; the Go (go-jose) cross-check of the SSF SETs will be skipped\n');
} else {
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const r = spawnSync('go', ['build', '-trimpath', '-o', bin, '.'], { cwd: src, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status === 0) {
    writeFileSync(stampFile, `${want}\n`);
    process.stdout.write(`ssf-verifier-build: ${bin} built in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  } else {
    process.stdout.write(`ssf-verifier-build: WARNING: go build failed (exit ${r.status ?? r.signal}); the Go cross-check will be skipped\n`);
  }
}
