// Long run of scenario 1 under CPU pressure (RELIABILITY_CPU_BURNERS busy loops, default 2); its own
// process, as the embedded ClickHouse binds one data directory per process. `npm run test:reliability` runs it.
import { test } from 'node:test';
import { brokerForFile, envInt } from '../harness.ts';
import { LONG_CRASH, runCrashScenario } from '../scenarios/crash.ts';

const HOUR = 3_600_000;
const broker = brokerForFile({ heapMb: 384 });

test('1b. crash safety at scale under CPU pressure', { timeout: 3 * HOUR }, async (t) => {
  await runCrashScenario({ ...LONG_CRASH, brokers: broker().brokers, cpuBurners: envInt('RELIABILITY_CPU_BURNERS', 2), log: (s) => t.diagnostic(s) });
});
