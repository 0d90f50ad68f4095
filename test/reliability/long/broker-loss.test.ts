// Long run of the broker-loss scenario (a node of a three-node cluster
// SIGKILLed and restarted mid-run); `npm run test:reliability -- broker-loss` runs it.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../harness.ts';
import { runBrokerLossScenario } from '../scenarios/broker-loss.ts';

const broker = brokerForFile({ own: true, nodes: 3, heapMb: 384 });

test('broker loss: the busiest leader of a 3-node cluster SIGKILLed and restarted', { timeout: 3_600_000 }, async (t) => {
  await runBrokerLossScenario({
    broker: broker(),
    eventsBefore: envInt('RELIABILITY_LOSS_EVENTS', 50_000),
    downMs: envInt('RELIABILITY_LOSS_DOWN_MS', 15_000),
    eventsWhileDown: 10_000,
    eventsAfter: 20_000,
    log: (s) => t.diagnostic(s),
  });
});
