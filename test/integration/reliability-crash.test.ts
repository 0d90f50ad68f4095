// Fast variant of reliability scenario 1 (test/reliability has the long one):
// ~20k events while the projector and the audit sink are SIGKILLed.
import { test } from 'node:test';
import { brokerForFile } from '../reliability/harness.ts';
import { FAST_CRASH, runCrashScenario } from '../reliability/scenarios/crash.ts';

const broker = brokerForFile();

test('crash safety: SIGKILLed projector and audit sink lose nothing, double nothing, and the trust equals a fresh fold', { timeout: 240_000 }, async (t) => {
  await runCrashScenario({ ...FAST_CRASH, brokers: broker().brokers, log: (s) => t.diagnostic(s) });
});
