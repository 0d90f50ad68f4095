// Preparing request bodies off the HTTP thread. JSON.parse, the contract
// check and the Avro encoding of a 500-event body cost more than producing
// it; on the event loop they serialise every request behind the one being
// parsed and leave the other core to the broker. Here a body's text goes to
// one of N worker threads, which runs prepareBody (./prepare.ts, the same
// function the inline path runs) and sends back the records, their values
// packed end to end in one transferred buffer. The event loop keeps the
// duplicate check, the produce and the answer.
//
// The threads are pure computation and hold no state a request depends on:
// if one cannot start or dies, the requests it had and every later one are
// prepared inline by the same function (a warning says so). A body is
// prepared exactly once either way, and nothing is accepted before Kafka
// acknowledged it, so the 202 means what it meant.
import type { Worker } from 'node:worker_threads';
import type { Codec } from '../../schemas/codec.ts';
import { ok, type Result } from '../../schemas/result.ts';
import { errorMessage } from '../lib/errors.ts';
import type { BodyError } from './body.ts';
import { eventEncoder, prepareBody, type EventEncoder, type PreparedEvent, type Prepared, type PrepareInput } from './prepare.ts';
import { startModuleWorker } from '../lib/worker.ts';

export type Preparer = {
  prepare(input: PrepareInput): Promise<Result<Prepared, BodyError>>;
  close(): Promise<void>;
};

export type PrepareRequest = { id: number; input: PrepareInput };
/**
 * The prepared events as columns: arrays of strings and typed arrays clone
 * much more cheaply than an array of objects, and the values travel packed
 * end to end in one transferred buffer. The strings a batch repeats (tenant,
 * kind, record key) cross once each, in `words`; `numbers` holds per event
 * its index, value length, key hash and the word numbers of its tenant, kind
 * and key; `streams` is 0 for decisions, 1 for signals; `keys` and
 * `digests` are the duplicate check's columns (Prepared).
 */
type WireEvents = {
  numbers: Int32Array;
  streams: Uint8Array;
  words: string[];
  ids: string[];
  keys: Int32Array;
  digests: Int32Array;
  values: ArrayBuffer;
};
const PER_EVENT = 6;
export type PrepareAnswer =
  | ({ id: number; ok: true; rejected: Prepared['rejected']; reasons: Prepared['reasons'] } & WireEvents)
  | { id: number; ok: false; error: BodyError }
  | { id: number; crash: string };

/** The worker's whole job: one body, its values packed into one buffer. */
export const answer = (encode: EventEncoder, r: PrepareRequest): { message: PrepareAnswer; transfer: ArrayBuffer[] } => {
  const p = prepareBody(r.input, encode);
  if (!p.ok) return { message: { id: r.id, ok: false, error: p.error }, transfer: [] };
  const { events, keys, digests } = p.value;
  const n = events.length;
  const numbers = new Int32Array(PER_EVENT * n);
  const streams = new Uint8Array(n);
  const words: string[] = [];
  const wordOf = new Map<string, number>();
  const word = (w: string): number => {
    let i = wordOf.get(w);
    if (i === undefined) {
      i = words.push(w) - 1;
      wordOf.set(w, i);
    }
    return i;
  };
  const ids = new Array<string>(n);
  let total = 0;
  for (const e of events) total += e.value.length;
  const values = new ArrayBuffer(total);
  const into = new Uint8Array(values);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const e = events[i];
    if (e === undefined) continue;
    const k = PER_EVENT * i;
    numbers[k] = e.index;
    numbers[k + 1] = e.value.length;
    numbers[k + 2] = e.hash;
    numbers[k + 3] = word(e.tenant);
    numbers[k + 4] = word(e.kind);
    numbers[k + 5] = word(e.key);
    streams[i] = e.stream === 'decisions' ? 0 : 1;
    ids[i] = e.id;
    into.set(e.value, at);
    at += e.value.length;
  }
  return {
    message: { id: r.id, ok: true, numbers, streams, words, ids, keys, digests, values, rejected: p.value.rejected, reasons: p.value.reasons },
    transfer: [values, numbers.buffer as ArrayBuffer, streams.buffer as ArrayBuffer, keys.buffer as ArrayBuffer, digests.buffer as ArrayBuffer],
  };
};

const fromWire = (a: Extract<PrepareAnswer, { ok: true }>): Prepared => {
  const n = a.streams.length;
  const events = new Array<PreparedEvent>(n);
  const all = Buffer.from(a.values);
  const { numbers, words } = a;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const k = PER_EVENT * i;
    const length = numbers[k + 1] ?? 0;
    events[i] = {
      index: numbers[k] ?? 0,
      tenant: words[numbers[k + 3] ?? 0] ?? '',
      id: a.ids[i] ?? '',
      kind: words[numbers[k + 4] ?? 0] ?? '',
      stream: a.streams[i] === 0 ? 'decisions' : 'signals',
      key: words[numbers[k + 5] ?? 0] ?? '',
      hash: numbers[k + 2] ?? 0,
      value: all.subarray(at, at + length),
    };
    at += length;
  }
  return { events, rejected: a.rejected, reasons: a.reasons, keys: a.keys, digests: a.digests };
};

/** On the calling thread: tests, a custom codec, or the fallback. Without `codec`, the default one with the fast writer. */
export const inlinePreparer = (codec?: Codec): Preparer => {
  const encode = eventEncoder(codec);
  return {
    prepare: (input) => Promise.resolve(prepareBody(input, encode)),
    close: () => Promise.resolve(),
  };
};

type Waiting = { resolve: (r: Result<Prepared, BodyError>) => void; reject: (e: unknown) => void; fallback: () => void };
type Thread = { worker: Worker; waiting: Map<number, Waiting> };

/**
 * `threads` preparing threads; each body goes to the one with the fewest
 * bodies waiting. A thread that fails is dropped (its bodies go inline); with
 * none left, everything is prepared inline.
 */
export const threadPreparer = (threads: number, log: { warn(obj: object, msg: string): void }): Preparer => {
  const inline = inlinePreparer();
  const live: Thread[] = [];
  let next = 0;
  const fail = (t: Thread, e: unknown): void => {
    const at = live.indexOf(t);
    if (at === -1) return;
    live.splice(at, 1);
    log.warn({ err: errorMessage(e) }, `ingest: a preparing thread failed, ${live.length} left${live.length === 0 ? '; preparing inline' : ''}`);
    void t.worker.terminate();
    for (const x of t.waiting.values()) x.fallback();
    t.waiting.clear();
  };
  for (let i = 0; i < threads; i++) {
    let worker: Worker;
    try {
      worker = startModuleWorker(import.meta.url, 'prepare-worker');
    } catch (e) {
      log.warn({ err: errorMessage(e) }, 'ingest: a preparing thread did not start');
      continue;
    }
    worker.unref();
    const t: Thread = { worker, waiting: new Map() };
    live.push(t);
    worker.on('message', (a: PrepareAnswer) => {
      const x = t.waiting.get(a.id);
      if (x === undefined) return;
      t.waiting.delete(a.id);
      // A throw inside prepareBody is a bug, not the body's fault: inline, the same input says it on this thread.
      if ('crash' in a) x.fallback();
      else if (!a.ok) x.resolve({ ok: false, error: a.error });
      else x.resolve(ok(fromWire(a)));
    });
    worker.on('error', (e) => fail(t, e));
    worker.on('exit', (code) => fail(t, new Error(`preparing thread exited with ${code}`)));
  }
  return {
    prepare: (input) => {
      let t: Thread | undefined;
      for (const c of live) if (t === undefined || c.waiting.size < t.waiting.size) t = c;
      if (t === undefined) return inline.prepare(input);
      const thread = t;
      const id = next++;
      return new Promise((resolve, reject) => {
        thread.waiting.set(id, { resolve, reject, fallback: () => void inline.prepare(input).then(resolve, reject) });
        try {
          thread.worker.postMessage({ id, input } satisfies PrepareRequest);
        } catch (e) {
          thread.waiting.delete(id);
          fail(thread, new Error(`preparing thread refused a body: ${errorMessage(e)}`));
          void inline.prepare(input).then(resolve, reject);
        }
      });
    },
    close: async () => {
      const all = live.splice(0);
      for (const t of all) {
        for (const x of t.waiting.values()) x.fallback();
        t.waiting.clear();
      }
      await Promise.all(all.map((t) => t.worker.terminate()));
    },
  };
};
