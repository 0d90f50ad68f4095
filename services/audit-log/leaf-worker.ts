// The stand-alone writer's hashing thread: decoding and canonicalising every
// record is JavaScript, kept off the thread that runs its consumer. (The
// writer hooked into the audit sink gets its leaves hashed by the sink's
// decoding threads.) Requests and answers carry an id.
import { parentPort } from 'node:worker_threads';
import { createCodec } from '../../schemas/codec.ts';
import { hashBatch, type RawMessage } from '../../schemas/audit-log/leaf-batch.ts';

/** Raw Kafka values from the stand-alone writer's own consumer. */
export type LeafRequest = { id: number; trust: boolean; topic: string; partition: number; messages: RawMessage[] };

const codec = createCodec();
parentPort?.on('message', (q: LeafRequest) => {
  try {
    const leaves = hashBatch(codec, q.trust, q.topic, q.partition, q.messages);
    parentPort?.postMessage({ id: q.id, leaves });
  } catch (e) {
    parentPort?.postMessage({ id: q.id, error: e instanceof Error ? e.message : String(e) });
  }
});
