// A preparing thread of ingest (./prepare-thread.ts): answers each body with
// its records, in the order they came.
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../lib/errors.ts';
import { answer, type PrepareRequest } from './prepare-thread.ts';
import { eventEncoder } from './prepare.ts';

const port = parentPort;
if (port === null) throw new Error('prepare-worker.ts runs as a worker thread only');
const encode = eventEncoder();
port.on('message', (r: PrepareRequest) => {
  try {
    const a = answer(encode, r);
    port.postMessage(a.message, a.transfer);
  } catch (e) {
    port.postMessage({ id: r.id, crash: errorMessage(e) });
  }
});
