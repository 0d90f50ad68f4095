// A test file's process lives while any handle is open. A kafkajs client that
// keeps reconnecting to a broker its test stopped would keep it alive after
// every result was reported, and the run would hang. (`--test-force-exit` is
// not used: on Node 20 it was seen to end a file's process before all of its
// suites had reported, dropping their results silently.)
import { after } from 'node:test';

/** Once this file's tests and hooks are done, gives the process `ms` to exit by itself, then ends it with the runner's exit code. */
export const exitIfStuck = (ms = 15_000): void => {
  after(() => {
    setTimeout(() => {
      process.stderr.write(`test file still alive ${ms} ms after its tests finished (open handles); exiting\n`);
      process.exit(process.exitCode ?? 0);
    }, ms).unref();
  });
};
