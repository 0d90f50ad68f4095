// Makes Debian's Chromium available to the console's browser test: an
// existing /usr/bin/chromium is used as it is (a quick check, nothing
// fetched); otherwise, when apt-get is there and we are root, the `chromium`
// package is installed from Debian's archive. Playwright never downloads a
// browser of its own. Without Chromium the browser test is skipped and says
// why; nothing else depends on it, so a failure here warns and exits 0.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const BIN = '/usr/bin/chromium';
const say = (s) => void process.stdout.write(`chromium-fetch: ${s}\n`);
const run = (cmd, args) => spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });

if (existsSync(BIN)) {
  say(`${BIN} (installed)`);
} else if (spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status !== 0) {
  say('no apt-get here; the console browser test will be skipped');
} else if (process.getuid?.() !== 0) {
  say('not root, cannot apt-get install chromium; the console browser test will be skipped');
} else {
  say('installing Debian chromium with apt-get (first run only)…');
  const t0 = Date.now();
  const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', 'chromium', 'fonts-dejavu-core']);
  // The package lists may be missing or stale on a fresh machine: update once, then retry.
  if (install().status !== 0 && run('apt-get', ['update']).status === 0) install();
  if (existsSync(BIN)) say(`${BIN} installed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  else say('WARNING: apt-get install chromium failed; the console browser test will be skipped');
}
