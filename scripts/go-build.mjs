// Builds one of the project's small Go cross-check programs (test/<name>/)
// into .cache/<name>/, once per source version: a stamp of the sources'
// SHA-256 sits beside the binary, so a cached build costs a hash of a few
// small files. Without Go the tests that use it are skipped and say why;
// nothing else depends on these programs, so a failed build warns and the
// caller exits 0.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** @param {{ name: string, what: string }} tool  `name`: the folder under test/ and the binary; `what`: the cross-check skipped without it. */
export function buildGoTool({ name, what }) {
  const say = (line) => process.stdout.write(`${name}-build: ${line}\n`);
  const src = join(root, 'test', name);
  const dir = join(root, '.cache', name);
  const bin = join(dir, name);
  const stampFile = join(dir, 'stamp');

  const stamp = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) stamp.update(readFileSync(join(src, f)));
  const want = stamp.digest('hex');

  if (existsSync(bin) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === want) {
    say(`${bin} (cached)`);
  } else if (spawnSync('go', ['version'], { encoding: 'utf8' }).status !== 0) {
    say(`go not found; ${what} will be skipped`);
  } else {
    mkdirSync(dir, { recursive: true });
    const t0 = Date.now();
    const r = spawnSync('go', ['build', '-trimpath', '-o', bin, '.'], { cwd: src, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status === 0) {
      writeFileSync(stampFile, `${want}\n`);
      say(`${bin} built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } else {
      say(`WARNING: go build failed (exit ${r.status ?? r.signal}); ${what} will be skipped`);
    }
  }
}
