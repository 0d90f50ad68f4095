// `npm ci` refuses a lockfile that lacks an entry for any optional dependency,
// even one for another platform. The registry this project is built against
// does not serve chdb's macOS and arm64 packages, so `npm install` drops their
// entries; this test catches that before CI's `npm ci` does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

type LockEntry = { optionalDependencies?: Record<string, string> };
type Lock = { lockfileVersion: number; packages: Record<string, LockEntry> };

const lock = JSON.parse(readFileSync(new URL('../../package-lock.json', import.meta.url), 'utf8')) as Lock;

/** npm resolves a dependency of `node_modules/a` from `node_modules/a/node_modules/x`, then upwards, then `node_modules/x`. */
const resolvable = (from: string, name: string): boolean => {
  for (let dir = from; ; ) {
    const candidate = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`;
    if (lock.packages[candidate] !== undefined) return true;
    if (dir === '') return false;
    const up = dir.lastIndexOf('/node_modules/');
    dir = up < 0 ? '' : dir.slice(0, up);
  }
};

test('package-lock.json has an entry for every optional dependency (npm ci needs them all)', () => {
  assert.ok(lock.lockfileVersion >= 2, 'lockfile v2+ (packages map)');
  const missing: string[] = [];
  let checked = 0;
  for (const [path, entry] of Object.entries(lock.packages)) {
    for (const name of Object.keys(entry.optionalDependencies ?? {})) {
      checked++;
      if (!resolvable(path, name)) missing.push(`${path || '(root)'} → ${name}`);
    }
  }
  assert.ok(checked > 0, 'some package declares optional dependencies (chdb does)');
  assert.deepEqual(missing, [], 'add the missing entries (version, os, cpu, optional: true) to package-lock.json');
});
