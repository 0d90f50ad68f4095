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
import { createCodec, type Codec } from '../../schemas/codec.ts';
import { ok, type Result } from '../../schemas/result.ts';
import { errorMessage } from '../lib/errors.ts';
import type { BodyError } from './body.ts';
import { prepareBody, type PreparedEvent, type Prepared, type PrepareInput } from './prepare.ts';
import { startModuleWorker } from '../lib/worker.ts';

export type Preparer = {
  prepare(input: PrepareInput): Promise<Result<Prepared, BodyError>>;
  close(): Promise<void>;
};

export type PrepareRequest = { id: number; input: PrepareInput };
type WireEvent = Omit<PreparedEvent, 'value'>;
export type PrepareAnswer =
  | { id: number; ok: true; events: WireEvent[]; lengths: Int32Array; values: ArrayBuffer; rejected: Prepared['rejected']; reasons: Prepared['reasons'] }
  | { id: number; ok: false; error: BodyError }
  | { id: number; crash: string };

/** The worker's whole job: one body, its values packed into one buffer. */
export const answer = (codec: Codec, r: PrepareRequest): { message: PrepareAnswer; transfer: ArrayBuffer[] } => {
  const p = prepareBody(r.input, codec);
  if (!p.ok) return { message: { id: r.id, ok: false, error: p.error }, transfer: [] };
  const lengths = new Int32Array(p.value.events.length);
  let total = 0;
  p.value.events.forEach((e, i) => {
    lengths[i] = e.value.length;
    total += e.value.length;
  });
  const values = new ArrayBuffer(total);
  const into = new Uint8Array(values);
  let at = 0;
  const events: WireEvent[] = p.value.events.map(({ value, ...rest }) => {
    into.set(value, at);
    at += value.length;
    return rest;
  });
  return {
    message: { id: r.id, ok: true, events, lengths, values, rejected: p.value.rejected, reasons: p.value.reasons },
    transfer: [values, lengths.buffer as ArrayBuffer],
  };
};

const fromWire = (a: Extract<PrepareAnswer, { ok: true }>): Prepared => {
  let at = 0;
  const events = a.events.map((e, i): PreparedEvent => {
    const n = a.lengths[i] ?? 0;
    const value = Buffer.from(a.values, at, n);
    at += n;
    return { ...e, value };
  });
  return { events, rejected: a.rejected, reasons: a.reasons };
};

/** On the calling thread: tests, a custom codec, or the fallback. */
export const inlinePreparer = (codec: Codec = createCodec()): Preparer => ({
  prepare: (input) => Promise.resolve(prepareBody(input, codec)),
  close: () => Promise.resolve(),
});

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
