// `npm run bench`: every benchmark in turn, each printing its figures beside
// its baseline from the same run and each target as a `TARGET … MET|MISSED`
// line (bench/target.ts); a failing one does not stop the others. The summary
// repeats every TARGET line, so the verdicts are in one place.
// `npm run bench -- ingest audit` runs a subset.
import { spawn } from 'node:child_process';

const ALL = ['ingest', 'projector', 'audit', 'audit-log', 'adapters', 'ssf', 'gate', 'detect'];
const wanted = process.argv.slice(2).filter((a) => ALL.includes(a));
const benches = wanted.length > 0 ? wanted : ALL;

/** Runs one bench, passing its output through and keeping its TARGET lines. */
const run = (name) =>
  new Promise((resolve) => {
    const targets = [];
    let pending = '';
    const child = spawn(process.execPath, ['--import', 'tsx', `bench/${name}.ts`], { stdio: ['inherit', 'pipe', 'inherit'] });
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('TARGET ')) targets.push(l);
    });
    child.on('close', (code) => {
      if (pending.startsWith('TARGET ')) targets.push(pending);
      resolve({ ok: code === 0, targets });
    });
  });

const results = [];
for (const name of benches) {
  process.stdout.write(`\n=== bench:${name} ===\n`);
  const t0 = Date.now();
  const r = await run(name);
  results.push({ name, ...r, seconds: (Date.now() - t0) / 1000 });
}
process.stdout.write('\n=== summary ===\n');
for (const r of results) {
  process.stdout.write(`${r.ok ? 'ok    ' : 'FAILED'} bench:${r.name} (${r.seconds.toFixed(0)} s)\n`);
  for (const t of r.targets) process.stdout.write(`       ${t}\n`);
}
const all = results.flatMap((r) => r.targets);
const missed = all.filter((t) => t.endsWith(' MISSED')).length;
process.stdout.write(`targets: ${all.length - missed} MET, ${missed} MISSED\n`);
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
