// kafkajs's transaction manager (InitProducerId — a new owner's fence — and
// TxnOffsetCommit) retries with the library's retry defaults, whatever the
// client's retry option says; services/lib/kafka.ts tunes those defaults.
// The retrier kafkajs builds for it must start at 10 ms, not 300 ms.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { TRANSACTION_RETRY_DEFAULTS, transactionRetriesTuned } from '../../services/lib/kafka.ts';

type Retrier = (fn: (bail: (e: Error) => void, retryCount: number, retryTime: number) => Promise<void>) => Promise<void>;
const require = createRequire(import.meta.url);
// The same module kafkajs's eosManager requires (createRetry(cluster.retry), cluster.retry being undefined).
const createRetry = require('kafkajs/src/retry/index.js') as (options?: Record<string, number>) => Retrier;

test('the transaction manager retries from 10 ms and as often as before in total', async () => {
  assert.equal(transactionRetriesTuned, true);
  const waits: number[] = [];
  const retriable = Object.assign(new Error('concurrent transactions'), { retriable: true, name: 'KafkaJSProtocolError' });
  await createRetry(undefined)(async (_bail, retryCount, retryTime) => {
    waits.push(retryTime);
    if (retryCount < 3) throw retriable;
  });
  assert.equal(waits.length, 4);
  // kafkajs randomises each wait by ±20 % and doubles it.
  const first = waits[0] ?? Number.NaN;
  assert.ok(first >= TRANSACTION_RETRY_DEFAULTS.initialRetryTime * 0.8 && first <= TRANSACTION_RETRY_DEFAULTS.initialRetryTime * 1.2 + 1, `first wait ${first} ms`);
  assert.ok((waits[3] ?? 0) < 200, `fourth wait ${waits[3]} ms`);
  // Patience: ten retries from 10 ms, doubling, cover ~10 s, as the library's five from 300 ms did.
  const total = Array.from({ length: TRANSACTION_RETRY_DEFAULTS.retries }, (_, i) => TRANSACTION_RETRY_DEFAULTS.initialRetryTime * 2 ** i).reduce((a, b) => a + b, 0);
  assert.ok(total >= 9_000, `${total} ms of retries in all`);
});

test('a client retry option still decides every other retrier', async () => {
  const waits: number[] = [];
  const retriable = Object.assign(new Error('x'), { retriable: true, name: 'KafkaJSProtocolError' });
  await createRetry({ initialRetryTime: 100, retries: 8 })(async (_bail, retryCount, retryTime) => {
    waits.push(retryTime);
    if (retryCount < 1) throw retriable;
  });
  const first = waits[0] ?? Number.NaN;
  assert.ok(first >= 80 && first <= 121, `first wait ${first} ms`);
});
