// The writer's hashing thread: decoding and canonicalising every record is
// JavaScript, and on the main thread it would compete with the sink's own
// decoding in the same process (`--role all`). Requests and answers carry an id.
import { parentPort } from 'node:worker_threads';
import { createCodec } from '../../schemas/codec.ts';
import { hashBatch, type RawMessage } from './leaf-batch.ts';

export type LeafRequest = { id: number; trust: boolean; topic: string; partition: number; messages: RawMessage[] };

const codec = createCodec();
parentPort?.on('message', (q: LeafRequest) => {
  try {
    parentPort?.postMessage({ id: q.id, leaves: hashBatch(codec, q.trust, q.topic, q.partition, q.messages) });
  } catch (e) {
    parentPort?.postMessage({ id: q.id, error: e instanceof Error ? e.message : String(e) });
  }
});
