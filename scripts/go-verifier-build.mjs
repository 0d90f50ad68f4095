// Builds the independent Go verifier of the audit log (test/go-verifier:
// github.com/transparency-dev/merkle + golang.org/x/mod/sumdb/note) into
// .cache/go-verifier/, once per source version (a stamp of the sources'
// SHA-256 sits beside the binary; a cached build costs a hash of three small
// files). Without Go the cross-check test is skipped and says why; nothing
// else depends on it, so a failure here warns and exits 0.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'test', 'go-verifier');
const dir = join(root, '.cache', 'go-verifier');
const bin = join(dir, 'go-verifier');
const stampFile = join(dir, 'stamp');

const stamp = createHash('sha256');
for (const f of ['go.mod', 'go.sum', 'main.go']) stamp.update(readFileSync(join(src, f)));
const want = stamp.digest('hex');

if (existsSync(bin) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === want) {
  process.stdout.write(`go-verifier-build: ${bin} (cached)\n`);
} else if (spawnSync('go', ['version'], { encoding: 'utf8' }).status !== 0) {
  process.stdout.write('go-verifier-build: go not found; the Go cross-check of the audit log proofs will be skipped\n');
} else {
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const r = spawnSync('go', ['build', '-trimpath', '-o', bin, '.'], { cwd: src, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status === 0) {
    writeFileSync(stampFile, `${want}\n`);
    process.stdout.write(`go-verifier-build: ${bin} built in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  } else {
    process.stdout.write(`go-verifier-build: WARNING: go build failed (exit ${r.status ?? r.signal}); the Go cross-check will be skipped\n`);
  }
}
