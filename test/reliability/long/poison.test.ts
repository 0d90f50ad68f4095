// Long run of scenario 3 (poison messages); `npm run test:reliability` runs it.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../harness.ts';
import { runPoisonScenario } from '../scenarios/poison.ts';

const broker = brokerForFile({ heapMb: 384 });

test('3. poison messages', { timeout: 3_600_000 }, async (t) => {
  await runPoisonScenario({ brokers: broker().brokers, rounds: envInt('RELIABILITY_POISON_ROUNDS', 20), log: (s) => t.diagnostic(s) });
});
