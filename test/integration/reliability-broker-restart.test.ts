// Fast variant of reliability scenario 2: the broker stops and comes back mid-run.
import { after, before, test } from 'node:test';
import { envInt, startBroker, type TestBroker } from '../reliability/harness.ts';
import { runBrokerRestartScenario } from '../reliability/scenarios/broker-restart.ts';
import { exitIfStuck } from '../helpers/exit.ts';

exitIfStuck();

let broker: TestBroker;
before(async () => {
  broker = await startBroker({ own: true });
});
after(async () => {
  await broker?.stop();
});

test('broker restart: 503 + Retry-After while down, services reconnect, nothing accepted is missing', { timeout: 240_000 }, async (t) => {
  await runBrokerRestartScenario({ broker, eventsBefore: envInt('RELIABILITY_FAST_RESTART_EVENTS', 3_000), downMs: 3_000, eventsAfter: 2_000, log: (s) => { t.diagnostic(s); process.stderr.write(`[restart] ${s}\n`); } });
});
