// The fast crash-safety scenario under CPU pressure: a busy loop takes one of
// the two cores (the long suite runs two), which stretches restores, sends and commits, so kills land before a first
// recording, mid-round and mid-restore. Its own file: the embedded ClickHouse
// binds one data directory per process.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../reliability/harness.ts';
import { runCrashScenario } from '../reliability/scenarios/crash.ts';

const broker = brokerForFile();

test('crash safety under CPU pressure: the same guarantees with a busy loop taking a core', { timeout: 300_000 }, async (t) => {
  await runCrashScenario({
    brokers: broker().brokers,
    events: envInt('RELIABILITY_FAST_EVENTS', 20_000),
    kills: envInt('RELIABILITY_FAST_KILLS', 2),
    sessions: 200,
    batchSize: 500,
    killGapMs: [1_500, 3_000],
    minProduceMs: 8_000,
    catchUpTimeoutMs: 120_000,
    cpuBurners: envInt('RELIABILITY_FAST_CPU_BURNERS', 1),
    log: (s) => t.diagnostic(s),
  });
});
