// Long run of scenario 2 (broker restart); `npm run test:reliability` runs it.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../harness.ts';
import { runBrokerRestartScenario } from '../scenarios/broker-restart.ts';

const broker = brokerForFile({ own: true, heapMb: 384 });

test('2. broker restart', { timeout: 3_600_000 }, async (t) => {
  await runBrokerRestartScenario({
    broker: broker(),
    eventsBefore: envInt('RELIABILITY_RESTART_EVENTS', 50_000),
    downMs: envInt('RELIABILITY_DOWN_MS', 15_000),
    eventsAfter: 20_000,
    log: (s) => t.diagnostic(s),
  });
});
