// The scenarios' poll (test/reliability/wait.ts): a probe failing because the
// broker could not be asked this once is "not yet", for a bounded time; any
// other error, and a probe that keeps failing, end the wait.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTransientProbeError, waitUntil } from '../reliability/wait.ts';

const kafkaError = (message: string): Error => Object.assign(new Error(message), { name: 'KafkaJSConnectionError' });

test('transient probe errors: kafkajs errors and the pool\'s "Broker not connected", nothing else', () => {
  assert.equal(isTransientProbeError(kafkaError('Connection timeout')), true);
  assert.equal(isTransientProbeError(new Error('Broker not connected')), true);
  assert.equal(isTransientProbeError(new Error('broker not connected, maybe')), false);
  assert.equal(isTransientProbeError(new TypeError('x is undefined')), false);
  assert.equal(isTransientProbeError('Broker not connected'), false);
});

test('a probe that fails twice with "Broker not connected" and then holds: the wait ends well', async () => {
  let calls = 0;
  await waitUntil('the condition', () => {
    calls++;
    if (calls <= 2) throw new Error('Broker not connected');
    return true;
  }, 5_000, 5);
  assert.equal(calls, 3);
});

test('any other probe error ends the wait at once', async () => {
  let calls = 0;
  await assert.rejects(
    waitUntil('the condition', () => {
      calls++;
      throw new TypeError('a bug in the probe');
    }, 5_000, 5),
    /a bug in the probe/,
  );
  assert.equal(calls, 1);
});

test('a probe that keeps failing ends the wait after the grace, naming what was awaited', async () => {
  const t0 = Date.now();
  await assert.rejects(waitUntil('the group caught up', () => Promise.reject(kafkaError('Connection timeout')), 60_000, 5, 100), /waiting for the group caught up: the probe failed for \d+ ms in a row: Connection timeout/);
  assert.ok(Date.now() - t0 < 5_000);
});

test('a condition never met still times out, and says the probe was failing when it was', async () => {
  await assert.rejects(waitUntil('never', () => false, 50, 5), /^Error: timed out after 50 ms waiting for never$/);
  let calls = 0;
  await assert.rejects(
    waitUntil('never', () => {
      calls++;
      if (calls % 2 === 0) throw new Error('Broker not connected');
      return false;
    }, 50, 5, 10_000),
    /timed out after 50 ms waiting for never/,
  );
});
