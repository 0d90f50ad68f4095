// The writer's hashing thread: decoding and canonicalising every record is
// JavaScript, and on the main thread it would compete with the sink's own
// decoding in the same process (`--role all`). Requests and answers carry an id.
import { parentPort } from 'node:worker_threads';
import { createCodec } from '../../schemas/codec.ts';
import { hashBatch, hashDecoded, type DecodedRecord, type RawMessage } from './leaf-batch.ts';

/** Raw Kafka values (the stand-alone writer's own consumer), or records the sink decoded (its hook). */
export type LeafRequest =
  | { id: number; op: 'raw'; trust: boolean; topic: string; partition: number; messages: RawMessage[] }
  | { id: number; op: 'decoded'; topic: string; partition: number; records: DecodedRecord[] };

const codec = createCodec();
parentPort?.on('message', (q: LeafRequest) => {
  try {
    const leaves = q.op === 'raw' ? hashBatch(codec, q.trust, q.topic, q.partition, q.messages) : hashDecoded(q.topic, q.partition, q.records);
    parentPort?.postMessage({ id: q.id, leaves });
  } catch (e) {
    parentPort?.postMessage({ id: q.id, error: e instanceof Error ? e.message : String(e) });
  }
});
