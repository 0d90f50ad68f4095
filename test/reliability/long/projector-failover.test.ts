// Projector failover at scale (three scaled-out projectors, ~1M events, a
// SIGKILL every ~20 s); `npm run test:reliability -- projector-failover` runs it.
import { test } from 'node:test';
import { brokerForFile } from '../harness.ts';
import { LONG_FAILOVER, runFailoverScenario } from '../scenarios/projector-failover.ts';

const HOUR = 3_600_000;
const broker = brokerForFile({ heapMb: 384 });

test('projector failover: three instances, SIGKILLs every ~20 s, trust equals a fresh fold', { timeout: 3 * HOUR }, async (t) => {
  await runFailoverScenario({ ...LONG_FAILOVER, brokers: broker().brokers, log: (s) => t.diagnostic(s) });
});
