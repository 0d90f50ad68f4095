// The launcher's failures: a closed list of codes, none of which a retry fixes
// by itself (missing jars or JDK, a storage that does not format, a JVM that
// exits or never answers).
export type KafkaBrokerErrorCode =
  | 'KAFKA_JARS_MISSING'
  | 'JAVA_NOT_FOUND'
  | 'KAFKA_STORAGE_FORMAT_FAILED'
  | 'KAFKA_BROKER_EXITED'
  | 'KAFKA_BROKER_START_TIMEOUT';

export class KafkaBrokerError extends Error {
  override readonly name = 'KafkaBrokerError';
  readonly retriable = false;
  constructor(
    readonly code: KafkaBrokerErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
