// Long run of scenario 6 (sustained mixed load); `npm run test:reliability` runs it.
import { after, before, test } from 'node:test';
import { envInt, startBroker, type TestBroker } from '../harness.ts';
import { runLoadScenario } from '../scenarios/load.ts';
import { exitIfStuck } from '../../helpers/exit.ts';

exitIfStuck();

let broker: TestBroker;
before(async () => {
  broker = await startBroker({ heapMb: 384 });
});
after(async () => {
  await broker?.stop();
});

test('6. sustained mixed load', { timeout: 3_600_000 }, async (t) => {
  await runLoadScenario({ brokers: broker.brokers, durationMs: envInt('RELIABILITY_LOAD_MS', 300_000), batchSize: 200, log: (s) => t.diagnostic(s) });
});
