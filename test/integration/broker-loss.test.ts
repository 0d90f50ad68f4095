// Fast variant of the broker-loss scenario: on a three-node cluster, the node
// leading the most event traffic is SIGKILLed mid-run and restarted; no 503
// after the election, nothing acknowledged lost, no duplicate audit row, trust
// equals a fresh fold.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../reliability/harness.ts';
import { runBrokerLossScenario } from '../reliability/scenarios/broker-loss.ts';

const broker = brokerForFile({ own: true, nodes: 3 });

test('broker loss: a killed leader of a 3-node cluster costs no acknowledged event, no 503 after the election', { timeout: 300_000 }, async (t) => {
  await runBrokerLossScenario({ broker: broker(), eventsBefore: envInt('RELIABILITY_FAST_LOSS_EVENTS', 2_000), downMs: 1_000, eventsWhileDown: 1_000, eventsAfter: 1_000, log: (s) => { t.diagnostic(s); process.stderr.write(`[loss] ${s}\n`); } });
});
