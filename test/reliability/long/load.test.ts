// Long run of scenario 6 (sustained mixed load); `npm run test:reliability` runs it.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../harness.ts';
import { runLoadScenario } from '../scenarios/load.ts';

const broker = brokerForFile({ heapMb: 384 });

test('6. sustained mixed load', { timeout: 3_600_000 }, async (t) => {
  await runLoadScenario({ brokers: broker().brokers, durationMs: envInt('RELIABILITY_LOAD_MS', 300_000), batchSize: 200, log: (s) => t.diagnostic(s) });
});
