// Ingest metrics on the registry the app was built with. Looked up by name
// first, so building two apps on one registry (tests) does not throw.
import { Counter, Histogram, type Registry } from 'prom-client';

export type IngestMetrics = {
  accepted: Counter<'kind'>;
  rejected: Counter<'reason'>;
  duplicates: Counter<'where'>;
  requestsRefused: Counter<'reason'>;
  produceSeconds: Histogram<'outcome'>;
};

const counter = <L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> =>
  (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });

export const createIngestMetrics = (registry: Registry): IngestMetrics => ({
  accepted: counter(registry, 'trustfold_ingest_events_accepted_total', 'Events acknowledged by Kafka (acks=all)', ['kind'] as const),
  rejected: counter(
    registry,
    'trustfold_ingest_events_rejected_total',
    'Events not accepted, by reason (invalid, tenant_mismatch, missing_scope, actor_mismatch, occurred_at_out_of_bounds, id_conflict, encode, unavailable)',
    ['reason'] as const,
  ),
  duplicates: counter(
    registry,
    'trustfold_ingest_events_duplicate_total',
    'Events skipped as already seen: within the request, or recently by this instance (best effort; consumers dedupe by event_id)',
    ['where'] as const,
  ),
  requestsRefused: counter(
    registry,
    'trustfold_ingest_requests_refused_total',
    'Whole requests refused before any event was looked at (malformed, too_many_events, unavailable)',
    ['reason'] as const,
  ),
  produceSeconds:
    (registry.getSingleMetric('trustfold_ingest_produce_duration_seconds') as Histogram<'outcome'> | undefined) ??
    new Histogram({
      name: 'trustfold_ingest_produce_duration_seconds',
      help: "Time from handing a request's events to the producer until Kafka acknowledged them all (or gave up)",
      labelNames: ['outcome'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
});
