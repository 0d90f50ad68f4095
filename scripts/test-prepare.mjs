// `npm test`, before the tests: the type check, the lint and the project's
// own fetches (Kafka jars, a real OPA, Debian's Chromium, the Go proof
// verifier) run side by side — most of a cold start is downloads and apt,
// which need no CPU. Each line is prefixed with its step; the step's exit
// code and time are printed when it ends. Fails if any step fails (the
// optional fetches exit 0 themselves when they cannot run, saying why).
import { spawn } from 'node:child_process';

const STEPS = [
  ['typecheck', 'npm', ['run', '--silent', 'typecheck']],
  ['lint', 'npm', ['run', '--silent', 'lint']],
  ['kafka', process.execPath, ['scripts/kafka-fetch.mjs']],
  ['opa', process.execPath, ['scripts/opa-fetch.mjs']],
  ['chromium', process.execPath, ['scripts/chromium-fetch.mjs']],
  ['go-verifier', process.execPath, ['scripts/go-verifier-build.mjs']],
  ['ssf-verifier', process.execPath, ['scripts/ssf-verifier-build.mjs']],
  ['schemathesis', process.execPath, ['scripts/schemathesis-setup.mjs']],
];

const started = Date.now();
const run = ([name, cmd, args]) =>
  new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const prefix = (stream, out) => {
      let pending = '';
      stream.on('data', (b) => {
        pending += b.toString();
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const l of lines) out.write(`[${name}] ${l}\n`);
      });
      stream.on('end', () => pending !== '' && out.write(`[${name}] ${pending}\n`));
    };
    prefix(child.stdout, process.stdout);
    prefix(child.stderr, process.stderr);
    child.on('close', (code, signal) => {
      process.stdout.write(`[${name}] ${code === 0 ? 'done' : `FAILED (${code ?? signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      resolve({ name, ok: code === 0 });
    });
  });

const results = await Promise.all(STEPS.map(run));
const failed = results.filter((r) => !r.ok).map((r) => r.name);
process.stdout.write(`test-prepare: ${failed.length === 0 ? 'all steps done' : `FAILED: ${failed.join(', ')}`} in ${((Date.now() - started) / 1000).toFixed(1)} s (node ${process.version})\n`);
process.exitCode = failed.length === 0 ? 0 : 1;
