// `npm run test:reliability`: the reliability scenarios at full size, each in
// a process of its own (the embedded ClickHouse binds one data directory per
// process), then the hostile-input and authorization suites with a larger
// corpus; every FIGURE line is collected into a summary table at the end.
// Sizes: RELIABILITY_EVENTS, RELIABILITY_KILLS, RELIABILITY_RESTART_EVENTS,
// RELIABILITY_DOWN_MS, RELIABILITY_LOSS_EVENTS, RELIABILITY_LOSS_DOWN_MS, RELIABILITY_LOSS_WHILE_DOWN, RELIABILITY_LOSS_AFTER, RELIABILITY_POISON_ROUNDS, RELIABILITY_LOAD_MS,
// RELIABILITY_FAILOVER_EVENTS, RELIABILITY_FAILOVER_KILL_EVERY_MS, RELIABILITY_FAILOVER_MIN_PRODUCE_MS, RELIABILITY_FAILOVER_SESSION_TIMEOUT_MS,
// RELIABILITY_HOSTILE_RUNS (see test/reliability/long/*.test.ts).
// `npm run test:reliability -- crash load` runs a subset.
import { spawn } from 'node:child_process';

const SCENARIOS = {
  crash: 'test/reliability/long/crash.test.ts',
  'crash-pressure': 'test/reliability/long/crash-pressure.test.ts',
  'broker-restart': 'test/reliability/long/broker-restart.test.ts',
  'broker-loss': 'test/reliability/long/broker-loss.test.ts',
  poison: 'test/reliability/long/poison.test.ts',
  hostile: 'test/unit/hostile-input.test.ts',
  authz: 'test/unit/hostile-authz.test.ts',
  load: 'test/reliability/long/load.test.ts',
  'projector-failover': 'test/reliability/long/projector-failover.test.ts',
};
const wanted = process.argv.slice(2).filter((a) => a in SCENARIOS);
const files = (wanted.length > 0 ? wanted : Object.keys(SCENARIOS)).map((k) => SCENARIOS[k]);
const env = { ...process.env, RELIABILITY_HOSTILE_RUNS: process.env.RELIABILITY_HOSTILE_RUNS ?? '1000' };
const started = Date.now();
const figures = [];
let pending = '';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=14400000', '--test-reporter=spec', ...files],
  { env, stdio: ['ignore', 'pipe', 'inherit'] },
);
child.stdout.on('data', (b) => {
  process.stdout.write(b);
  pending += b.toString();
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const l of lines) {
    const m = /^\s*(?:ℹ\s*)?FIGURE ([^:]+): (.*)$/.exec(l);
    if (m !== null && !figures.some((f) => f.scenario === m[1] && f.text === m[2])) figures.push({ scenario: m[1], text: m[2] });
  }
});
child.on('exit', (code, signal) => {
  const w = Math.max(8, ...figures.map((f) => f.scenario.length));
  process.stdout.write(`\nreliability summary (${Math.round((Date.now() - started) / 1000)} s, ${code === 0 ? 'all passed' : `FAILED (${code ?? signal})`})\n`);
  process.stdout.write(`${'scenario'.padEnd(w)} | figures\n${'-'.repeat(w)}-+-${'-'.repeat(60)}\n`);
  for (const f of figures) process.stdout.write(`${f.scenario.padEnd(w)} | ${f.text}\n`);
  process.exitCode = code ?? 1;
});
