// Fast variant of reliability scenario 2: the broker stops and comes back mid-run.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../reliability/harness.ts';
import { runBrokerRestartScenario } from '../reliability/scenarios/broker-restart.ts';

const broker = brokerForFile({ own: true });

test('broker restart: 503 + Retry-After while down, services reconnect, nothing accepted is missing', { timeout: 240_000 }, async (t) => {
  await runBrokerRestartScenario({ broker: broker(), eventsBefore: envInt('RELIABILITY_FAST_RESTART_EVENTS', 3_000), downMs: 3_000, eventsAfter: 2_000, log: (s) => { t.diagnostic(s); process.stderr.write(`[restart] ${s}\n`); } });
});
