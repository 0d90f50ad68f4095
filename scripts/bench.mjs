// `npm run bench`: every benchmark in turn, each printing its figures beside
// its baseline from the same run; a failing one does not stop the others.
// `npm run bench -- ingest audit` runs a subset.
import { spawnSync } from 'node:child_process';

const ALL = ['ingest', 'projector', 'audit', 'adapters'];
const wanted = process.argv.slice(2).filter((a) => ALL.includes(a));
const benches = wanted.length > 0 ? wanted : ALL;
const results = [];
for (const name of benches) {
  process.stdout.write(`\n=== bench:${name} ===\n`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${name}.ts`], { stdio: 'inherit' });
  results.push({ name, ok: r.status === 0, seconds: (Date.now() - t0) / 1000 });
}
process.stdout.write('\n=== summary ===\n');
for (const r of results) process.stdout.write(`${r.ok ? 'ok    ' : 'FAILED'} bench:${r.name} (${r.seconds.toFixed(0)} s)\n`);
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
