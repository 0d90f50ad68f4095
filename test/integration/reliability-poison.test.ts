// Fast variant of reliability scenario 3: poison on every consumed topic.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../reliability/harness.ts';
import { runPoisonScenario } from '../reliability/scenarios/poison.ts';

const broker = brokerForFile();

test('poison messages: each lands in the dead-letter topic with its origin and reason; good records behind it still flow', { timeout: 180_000 }, async (t) => {
  await runPoisonScenario({ brokers: broker().brokers, rounds: envInt('RELIABILITY_FAST_POISON_ROUNDS', 2), log: (s) => t.diagnostic(s) });
});
