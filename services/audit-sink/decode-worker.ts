// The audit sink's decoding thread (./decode-thread.ts): answers each request
// with its rows, in the order they came.
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../lib/errors.ts';
import { createSinkDecoder } from './decode.ts';
import { answer, transferables, type DecodeAnswer, type DecodeRequest } from './decode-thread.ts';

const port = parentPort;
if (port === null) throw new Error('decode-worker.ts runs as a worker thread only');
const decoder = createSinkDecoder();
port.on('message', (r: DecodeRequest) => {
  let a: DecodeAnswer;
  try {
    a = answer(decoder, r);
  } catch (e) {
    a = { id: r.id, error: errorMessage(e) };
  }
  port.postMessage(a, transferables(a));
});
