// Long run of scenario 1 (crash safety); `npm run test:reliability` runs it.
import { test } from 'node:test';
import { brokerForFile } from '../harness.ts';
import { LONG_CRASH, runCrashScenario } from '../scenarios/crash.ts';

const HOUR = 3_600_000;
const broker = brokerForFile({ heapMb: 384 });

test('1. crash safety at scale', { timeout: 3 * HOUR }, async (t) => {
  await runCrashScenario({ ...LONG_CRASH, brokers: broker().brokers, log: (s) => t.diagnostic(s) });
});
