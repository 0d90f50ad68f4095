// Long run of scenario 3 (poison messages); `npm run test:reliability` runs it.
import { after, before, test } from 'node:test';
import { envInt, startBroker, type TestBroker } from '../harness.ts';
import { runPoisonScenario } from '../scenarios/poison.ts';
import { exitIfStuck } from '../../helpers/exit.ts';

exitIfStuck();

let broker: TestBroker;
before(async () => {
  broker = await startBroker({ heapMb: 384 });
});
after(async () => {
  await broker?.stop();
});

test('3. poison messages', { timeout: 3_600_000 }, async (t) => {
  await runPoisonScenario({ brokers: broker.brokers, rounds: envInt('RELIABILITY_POISON_ROUNDS', 20), log: (s) => t.diagnostic(s) });
});
