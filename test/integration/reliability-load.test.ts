// Fast variant of reliability scenario 6: mixed load for a fixed time.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../reliability/harness.ts';
import { runLoadScenario } from '../reliability/scenarios/load.ts';

const broker = brokerForFile();

test('load: ingest + trust stream + audit queries, no error response, bounded memory', { timeout: 180_000 }, async (t) => {
  await runLoadScenario({ brokers: broker().brokers, durationMs: envInt('RELIABILITY_FAST_LOAD_MS', 20_000), batchSize: 100, log: (s) => t.diagnostic(s) });
});
