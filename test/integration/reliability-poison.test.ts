// Fast variant of reliability scenario 3: poison on every consumed topic.
import { after, before, test } from 'node:test';
import { envInt, startBroker, type TestBroker } from '../reliability/harness.ts';
import { runPoisonScenario } from '../reliability/scenarios/poison.ts';
import { exitIfStuck } from '../helpers/exit.ts';

exitIfStuck();

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

test('poison messages: each lands in the dead-letter topic with its origin and reason; good records behind it still flow', { timeout: 180_000 }, async (t) => {
  await runPoisonScenario({ brokers: broker.brokers, rounds: envInt('RELIABILITY_FAST_POISON_ROUNDS', 2), log: (s) => t.diagnostic(s) });
});
