// Long run of the broker-loss scenario (a node of a three-node cluster
// SIGKILLed and restarted mid-run); `npm run test:reliability -- broker-loss` runs it.
// Sizes: RELIABILITY_LOSS_EVENTS (before the kill), RELIABILITY_LOSS_DOWN_MS,
// RELIABILITY_LOSS_WHILE_DOWN, RELIABILITY_LOSS_AFTER. No fast variant in
// test/integration: three JVMs and the roles take 90 s here even at 2 000 events.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../harness.ts';
import { runBrokerLossScenario } from '../scenarios/broker-loss.ts';

const broker = brokerForFile({ own: true, nodes: 3, heapMb: 384 });

test('broker loss: the busiest leader of a 3-node cluster SIGKILLed and restarted', { timeout: 3_600_000 }, async (t) => {
  await runBrokerLossScenario({
    broker: broker(),
    eventsBefore: envInt('RELIABILITY_LOSS_EVENTS', 50_000),
    downMs: envInt('RELIABILITY_LOSS_DOWN_MS', 15_000),
    eventsWhileDown: envInt('RELIABILITY_LOSS_WHILE_DOWN', 10_000),
    eventsAfter: envInt('RELIABILITY_LOSS_AFTER', 20_000),
    log: (s) => t.diagnostic(s),
  });
});
