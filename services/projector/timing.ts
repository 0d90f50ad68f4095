// What the projector's output transactions cost, step by step, for benchmarks
// and diagnosis (`Projector.timing()`).
import type { Producer } from 'kafkajs';

/** In idempotent mode: `transactions` counts groups; beginMs and commitMs are 0, sendMs is step (1) (states), offsetsMs the recording transaction, steps (2)+(3) (changelog and offsets). */
export type TransactionTiming = {
  transactions: number;
  /** Partition batches those transactions covered. */
  batches: number;
  beginMs: number;
  sendMs: number;
  offsetsMs: number;
  commitMs: number;
  maxMs: number;
  /** Broker requests of the transactional producer: count and total round-trip ms per API. */
  requests: Record<string, { n: number; ms: number }>;
};

export const emptyTiming = (): TransactionTiming => ({ transactions: 0, batches: 0, beginMs: 0, sendMs: 0, offsetsMs: 0, commitMs: 0, maxMs: 0, requests: {} });

/** A copy the caller may keep (the counters go on moving). */
export const copyTiming = (timing: TransactionTiming): TransactionTiming => ({
  ...timing,
  requests: Object.fromEntries(Object.entries(timing.requests).map(([k, v]) => [k, { ...v }])),
});

/** Counts every broker request of `producer` (by API) into `timing.requests`. */
export const countRequests = (producer: Producer, timing: TransactionTiming): void => {
  producer.on(producer.events.REQUEST, (e) => {
    const r = (timing.requests[e.payload.apiName] ??= { n: 0, ms: 0 });
    r.n++;
    r.ms += e.payload.duration;
  });
};
