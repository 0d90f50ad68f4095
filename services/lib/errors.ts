// One error vocabulary. Errors carry a code from a closed list and say whether
// a retry can help; an HTTP refusal names one of these codes (sendError takes
// nothing else); a record set aside names one of the dead-letter reasons. A
// consumer chooses between reading a batch again and setting a record aside
// from `isRetriable` alone: a retriable failure is the infrastructure's (the
// batch is read again), anything else is the record's (it is dead-lettered).
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
  'unsupported_media_type',
  'bad_request',
  'method_not_allowed',
  'not_ready',
  'too_many_requests',
  'too_many_streams',
  /** A proof asked of a record no signed checkpoint covers yet (audit log). */
  'not_checkpointed',
  /** An operator named no tenant and several tenants hold the id. */
  'ambiguous_tenant',
  /** The console's one-time sign-in codes. */
  'sign_in_code_unknown',
  'sign_in_code_used',
  'sign_in_code_expired',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const isErrorCode = (s: unknown): s is ErrorCode => typeof s === 'string' && (ERROR_CODES as readonly string[]).includes(s);

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

/**
 * A kafkajs error a retry can fix: one marked retriable, or the plain
 * `Error('Broker not connected')` kafkajs throws when a request is looked up
 * on a connection whose API versions are not negotiated yet — a race seen on
 * a loaded host (a role failed to start on it in the long crash scenario).
 */
export const isTransientKafkaError = (e: unknown): boolean =>
  typeof e === 'object' && e !== null && ((e as { retriable?: unknown }).retriable === true || (e as { message?: unknown }).message === 'Broker not connected');

/** Whether trying again can help: a TrustfoldError says so itself; of anything else, only Kafka's transient errors. */
export const isRetriable = (e: unknown): boolean => (e instanceof TrustfoldError ? e.retriable : isTransientKafkaError(e));

/** The code of a failure, `otherwise` when it is not one of ours. */
export const codeOf = (e: unknown, otherwise: ErrorCode): ErrorCode => (e instanceof TrustfoldError ? e.code : otherwise);

/**
 * Why a consumer set a record aside (the `trustfold-dlq-reason` header), a
 * closed list: what the dead-letter topic's readers can count on.
 */
export const DEAD_LETTER_REASONS = [
  // Any consumer of the contract's topics (schemas/codec.ts DecodeErrorCode, and an empty value).
  'empty_value',
  'bad_framing',
  'unknown_schema',
  'bad_avro',
  'invalid_event',
  // The projector: the record's Kafka key is not the one its event implies.
  'key_mismatch',
  // The audit sink.
  'decode_failed',
  'wrong_topic',
  'clickhouse_rejected',
  // The Cerbos adapter, reading Cerbos's own audit topic.
  'empty',
  'unsupported_encoding',
  'bad_json',
  'not_a_decision_log_entry',
  'occurred_at_out_of_bounds',
  'unmappable',
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));
