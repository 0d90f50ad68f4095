// The long reliability suite (`npm run test:reliability`): every scenario at
// full size, one after another, then the summary table. Sizes come from the
// environment (RELIABILITY_*), defaults as in issue 6.
import { after, before, test } from 'node:test';
import { closeTestClickHouse } from '../helpers/clickhouse.ts';
import { envInt, startBroker, summaryTable, type TestBroker } from './harness.ts';
import { runBrokerRestartScenario } from './scenarios/broker-restart.ts';
import { runCrashScenario } from './scenarios/crash.ts';
import { runLoadScenario } from './scenarios/load.ts';
import { runPoisonScenario } from './scenarios/poison.ts';

let broker: TestBroker;
before(async () => {
  broker = await startBroker({ heapMb: 384 });
});
after(async () => {
  await broker?.stop();
  await closeTestClickHouse();
  process.stdout.write(`\nreliability summary\n${summaryTable()}\n`);
});

const HOUR = 3_600_000;

test('1. crash safety at scale', { timeout: 3 * HOUR }, async (t) => {
  const events = envInt('RELIABILITY_EVENTS', 1_000_000);
  await runCrashScenario({
    brokers: broker.brokers,
    events,
    kills: envInt('RELIABILITY_KILLS', 10),
    sessions: 5_000,
    batchSize: 2_000,
    killGapMs: [3_000, 12_000],
    minProduceMs: envInt('RELIABILITY_MIN_PRODUCE_MS', 60_000),
    catchUpTimeoutMs: 2 * HOUR,
    log: (s) => t.diagnostic(s),
  });
});

test('2. broker restart', { timeout: HOUR }, async (t) => {
  const own = await startBroker({ own: true });
  try {
    await runBrokerRestartScenario({ broker: own, eventsBefore: envInt('RELIABILITY_RESTART_EVENTS', 50_000), downMs: envInt('RELIABILITY_DOWN_MS', 15_000), eventsAfter: 20_000, log: (s) => t.diagnostic(s) });
  } finally {
    await own.stop();
  }
});

test('3. poison messages', { timeout: HOUR }, async (t) => {
  await runPoisonScenario({ brokers: broker.brokers, rounds: envInt('RELIABILITY_POISON_ROUNDS', 20), log: (s) => t.diagnostic(s) });
});

test('6. sustained mixed load', { timeout: HOUR }, async (t) => {
  await runLoadScenario({ brokers: broker.brokers, durationMs: envInt('RELIABILITY_LOAD_MS', 300_000), batchSize: 200, log: (s) => t.diagnostic(s) });
});

// 4 and 5 run in this process too, so their figures join the summary table.
import '../unit/hostile-input.test.ts';
import '../unit/hostile-authz.test.ts';
