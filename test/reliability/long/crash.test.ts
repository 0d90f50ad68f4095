// Long run of scenario 1 (crash safety); `npm run test:reliability` runs it.
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

test('1. crash safety at scale', { timeout: 3 * HOUR }, async (t) => {
  await long(0, (s) => t.diagnostic(s));
});
