// Errors carry a code from a closed list and say whether a retry can help; a
// consumer loop chooses retry or dead-letter from `retriable` alone.
export const ERROR_CODES = [
  'config_invalid',
  'kafka_unavailable',
  'kafka_timeout',
  'clickhouse_unavailable',
  'clickhouse_query_failed',
  'decode_failed',
  'invalid_event',
  'unauthorized',
  'forbidden',
  'not_found',
  'payload_too_large',
  'bad_request',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class TrustfoldError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retriable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'TrustfoldError';
  }
}

export const isRetriable = (e: unknown): boolean =>
  e instanceof TrustfoldError ? e.retriable : isTransientKafkaError(e);

/** kafkajs marks its own transient failures with `retriable`. */
const isTransientKafkaError = (e: unknown): boolean =>
  typeof e === 'object' && e !== null && 'retriable' in e && (e as { retriable: unknown }).retriable === true;

export const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));
