// The transmitter's delivery figures in /metrics. Counted where the thing
// happens (a signature, an answer, a hand-out, a settlement), never derived.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type SsfMetrics = {
  /** SETs signed, by event type (trust transitions, verification, stream-updated). */
  signed: Counter<'event_type'>;
  /** Push attempts by outcome (delivered, refused, retry) and HTTP status ("error" when there was no answer). */
  pushed: Counter<'outcome' | 'status'>;
  /** Push attempts that will be repeated after a backoff. */
  retries: Counter;
  /** SETs handed to pollers (a re-hand-out after the redelivery delay counts again). */
  pollServed: Counter;
  /** SETs a poller settled, by outcome (acked, set_err). */
  pollSettled: Counter<'outcome'>;
  /** From the trust record's Kafka timestamp (or a control event's creation) to the receiver's 2xx or ack. */
  lag: Histogram<'method'>;
  /** Streams trustfold paused or disabled itself after inactivity_timeout. */
  inactive: Counter<'action'>;
  /** SETs waiting to be settled, over all streams (set on collect). */
  outstanding: Gauge;
};

export const createSsfMetrics = (registry: Registry, outstanding: () => number): SsfMetrics => ({
  signed: new Counter({ name: 'trustfold_ssf_sets_signed_total', help: 'SETs signed by the transmitter, by event type', labelNames: ['event_type'], registers: [registry] }),
  pushed: new Counter({ name: 'trustfold_ssf_push_total', help: 'SET push attempts (RFC 8935) by outcome and HTTP status', labelNames: ['outcome', 'status'], registers: [registry] }),
  retries: new Counter({ name: 'trustfold_ssf_push_retries_total', help: 'SET pushes to be retried after a backoff', registers: [registry] }),
  pollServed: new Counter({ name: 'trustfold_ssf_poll_served_total', help: 'SETs handed out to pollers (RFC 8936)', registers: [registry] }),
  pollSettled: new Counter({ name: 'trustfold_ssf_poll_settled_total', help: 'SETs settled by pollers, by outcome (acked, set_err)', labelNames: ['outcome'], registers: [registry] }),
  lag: new Histogram({
    name: 'trustfold_ssf_delivery_lag_seconds',
    help: 'From the trust transition reaching Kafka to the receiver accepting its SET (push 2xx, poll ack)',
    labelNames: ['method'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    registers: [registry],
  }),
  inactive: new Counter({ name: 'trustfold_ssf_streams_inactive_total', help: 'Streams paused or disabled by trustfold after inactivity_timeout', labelNames: ['action'], registers: [registry] }),
  outstanding: new Gauge({
    name: 'trustfold_ssf_outstanding_sets',
    help: 'SETs signed and not yet settled, over all streams',
    registers: [registry],
    collect() {
      this.set(outstanding());
    },
  }),
});
