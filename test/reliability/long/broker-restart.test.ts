// Long run of scenario 2 (broker restart); `npm run test:reliability` runs it.
import { after, before, test } from 'node:test';
import { envInt, startBroker, type TestBroker } from '../harness.ts';
import { runBrokerRestartScenario } from '../scenarios/broker-restart.ts';
import { exitIfStuck } from '../../helpers/exit.ts';

exitIfStuck();

let broker: TestBroker;
before(async () => {
  broker = await startBroker({ own: true, heapMb: 384 });
});
after(async () => {
  await broker?.stop();
});

test('2. broker restart', { timeout: 3_600_000 }, async (t) => {
  await runBrokerRestartScenario({
    broker,
    eventsBefore: envInt('RELIABILITY_RESTART_EVENTS', 50_000),
    downMs: envInt('RELIABILITY_DOWN_MS', 15_000),
    eventsAfter: 20_000,
    log: (s) => t.diagnostic(s),
  });
});
