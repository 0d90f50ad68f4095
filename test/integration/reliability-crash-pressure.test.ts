// The fast crash-safety scenario under CPU pressure: a busy loop takes one of
// the two cores (the long suite runs two), which stretches restores, sends and
// commits, so kills land before a first recording, mid-round and mid-restore.
// Its own file: the embedded ClickHouse binds one data directory per process.
import { test } from 'node:test';
import { brokerForFile, envInt } from '../reliability/harness.ts';
import { FAST_CRASH, runCrashScenario } from '../reliability/scenarios/crash.ts';

const broker = brokerForFile();

test('crash safety under CPU pressure: the same guarantees with a busy loop taking a core', { timeout: 300_000 }, async (t) => {
  await runCrashScenario({ ...FAST_CRASH, brokers: broker().brokers, cpuBurners: envInt('RELIABILITY_FAST_CPU_BURNERS', 1), log: (s) => t.diagnostic(s) });
});
