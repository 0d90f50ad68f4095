// Long run of scenario 1 under CPU pressure (RELIABILITY_CPU_BURNERS busy loops, default 2); its own
// process, as the embedded ClickHouse binds one data directory per process. `npm run test:reliability` runs it.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../harness.ts';
import { runCrashScenario } from '../scenarios/crash.ts';

const HOUR = 3_600_000;
const broker = brokerForFile({ heapMb: 384 });

const long = (cpuBurners: number, log: (s: string) => void) =>
  runCrashScenario({
    brokers: broker().brokers,
    events: envInt('RELIABILITY_EVENTS', 1_000_000),
    kills: envInt('RELIABILITY_KILLS', 10),
    sessions: 5_000,
    batchSize: 2_000,
    killGapMs: [3_000, 12_000],
    minProduceMs: envInt('RELIABILITY_MIN_PRODUCE_MS', 60_000),
    catchUpTimeoutMs: 2 * HOUR,
    cpuBurners,
    log,
  });

test('1b. crash safety at scale under CPU pressure', { timeout: 3 * HOUR }, async (t) => {
  await long(envInt('RELIABILITY_CPU_BURNERS', 2), (s) => t.diagnostic(s));
});
