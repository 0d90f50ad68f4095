// Fast variant of reliability scenario 1 (test/reliability has the long one):
// ~20k events while the projector and the audit sink are SIGKILLed.
import { test } from 'node:test';
import { envInt, brokerForFile } from '../reliability/harness.ts';
import { runCrashScenario } from '../reliability/scenarios/crash.ts';

const broker = brokerForFile();

test('crash safety: SIGKILLed projector and audit sink lose nothing, double nothing, and the trust equals a fresh fold', { timeout: 240_000 }, async (t) => {
  await runCrashScenario({
    brokers: broker().brokers,
    events: envInt('RELIABILITY_FAST_EVENTS', 20_000),
    kills: envInt('RELIABILITY_FAST_KILLS', 2),
    sessions: 200,
    batchSize: 500,
    killGapMs: [1_500, 3_000],
    minProduceMs: 8_000,
    catchUpTimeoutMs: 120_000,
    log: (s) => t.diagnostic(s),
  });
});
