// The environment is read here, once, into a typed and validated object.
// Nothing else reads process.env; services take the parts they need.
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';
import { err, ok, type FieldError, type Result } from '../../schemas/result.ts';
import { secretWeakness } from './auth.ts';

const list = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x !== ''));
const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);
const flag = z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1').default(false);
const DAY_MS = 86_400_000;

const envSchema = z.object({
  KAFKA_BROKERS: list.pipe(z.array(z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port')).min(1)).optional(),
  KAFKA_CLIENT_ID: z.string().min(1).default('trustfold'),
  KAFKA_SASL_MECHANISM: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  KAFKA_SASL_USERNAME: z.string().min(1).optional(),
  KAFKA_SASL_PASSWORD: z.string().min(1).optional(),
  KAFKA_TLS: flag,
  KAFKA_TLS_CA_FILE: z.string().min(1).optional(),
  KAFKA_TLS_CERT_FILE: z.string().min(1).optional(),
  KAFKA_TLS_KEY_FILE: z.string().min(1).optional(),
  KAFKA_TLS_REJECT_UNAUTHORIZED: z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1').default(true),
  TRUSTFOLD_TOPIC_DECISIONS: z.string().min(1).default('trustfold.decisions.v1'),
  TRUSTFOLD_TOPIC_SIGNALS: z.string().min(1).default('trustfold.signals.v1'),
  TRUSTFOLD_TOPIC_SESSION_TRUST: z.string().min(1).default('trustfold.session-trust.v1'),
  TRUSTFOLD_TOPIC_DEAD_LETTER: z.string().min(1).default('trustfold.dead-letter.v1'),
  TRUSTFOLD_PARTITIONS: int(6, 1, 1024),
  TRUSTFOLD_REPLICATION: int(1, 1, 16),
  // min.insync.replicas of the topics trustfold creates; default min(2, TRUSTFOLD_REPLICATION).
  TRUSTFOLD_MIN_INSYNC_REPLICAS: z.coerce.number().int().min(1).max(16).optional(),
  CLICKHOUSE_URL: z.url().optional(),
  CLICKHOUSE_USER: z.string().default('default'),
  CLICKHOUSE_PASSWORD: z.string().default(''),
  CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier').default('trustfold'),
  TRUSTFOLD_CLICKHOUSE_CLUSTER: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  // TTL is computed as a DateTime (up to 2106): a longer retention overflows and expires every row at insert.
  TRUSTFOLD_AUDIT_TTL_DAYS: int(400, 1, 25_000),
  // The sink's in-memory mirror of the write-once index (services/audit-sink/write-once-filter.ts); false: look every id up.
  TRUSTFOLD_AUDIT_WRITE_ONCE_FILTER: z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1').default(true),
  TRUSTFOLD_AUDIT_WRITE_ONCE_FILTER_MB: int(1024, 1, 1024 * 1024),
  TRUSTFOLD_DATA_DIR: z.string().min(1).default('.data'),
  PORT: int(8080, 0, 65535),
  HOST: z.string().default('127.0.0.1'),
  TRUSTFOLD_JWT_SECRET: z
    .string()
    .superRefine((s, ctx) => {
      const weak = secretWeakness(s);
      if (weak !== undefined) ctx.addIssue({ code: 'custom', message: `the secret ${weak}` });
    })
    .optional(),
  TRUSTFOLD_JWKS_URL: z.url().optional(),
  TRUSTFOLD_JWT_ISSUER: z.string().optional(),
  TRUSTFOLD_JWT_AUDIENCE: z.string().optional(),
  TRUSTFOLD_JWT_MAX_TTL_S: int(24 * 3600, 60, 366 * 24 * 3600),
  TRUSTFOLD_JWT_ALLOW_LONG_LIVED: flag,
  TRUSTFOLD_JWT_CLOCK_SKEW_S: int(60, 0, 3600),
  TRUSTFOLD_JWKS_ALLOW_ALL_TENANTS: flag,
  TRUSTFOLD_METRICS_TOKEN: z.string().min(32, 'use at least 32 characters').optional(),
  TRUSTFOLD_MAX_FUTURE_SKEW_MS: int(60_000, 0, DAY_MS),
  // One insert may touch at most 100 monthly partitions of the audit tables: 8 years keeps a batch under that.
  TRUSTFOLD_MAX_EVENT_AGE_MS: int(30 * DAY_MS, 60_000, 8 * 365 * DAY_MS),
  TRUSTFOLD_SSE_MAX_STREAMS: int(1_000, 1, 1_000_000),
  TRUSTFOLD_SSE_MAX_STREAMS_PER_SUBJECT: int(20, 1, 1_000_000),
  TRUSTFOLD_MAX_BODY_BYTES: int(16 * 1024 * 1024, 1024),
  TRUSTFOLD_MAX_EVENTS_PER_REQUEST: int(10_000, 1),
  TRUSTFOLD_PRODUCE_TIMEOUT_MS: int(5_000, 100),
  TRUSTFOLD_INGEST_PRODUCERS: int(3, 1, 64),
  TRUSTFOLD_INGEST_RECENT_IDS: int(100_000, 0, 10_000_000),
  TRUSTFOLD_INGEST_PREPARE_THREADS: int(0, 0, 16),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Env = z.infer<typeof envSchema>;

export type Topics = { decisions: string; signals: string; sessionTrust: string; deadLetter: string };

/** How every Kafka client authenticates and encrypts (services/lib/kafka.ts turns it into client options). */
export type KafkaSecurity = {
  sasl: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string } | undefined;
  /** TLS to the brokers; files are PEM, read when a client is created. */
  tls: { caFile: string | undefined; certFile: string | undefined; keyFile: string | undefined; rejectUnauthorized: boolean } | undefined;
};

export type Config = {
  kafka: { brokers: string[] | undefined; clientId: string; partitions: number; replication: number; minInsyncReplicas: number; security: KafkaSecurity };
  topics: Topics;
  clickhouse: {
    url: string | undefined;
    user: string;
    password: string;
    database: string;
    cluster: string | undefined;
    ttlDays: number;
    /** The audit sink mirrors the write-once index in memory (off by itself on a cluster or a non-MergeTree index). */
    writeOnceFilter: boolean;
    /** Memory budget of that filter, in bytes; past it the sink looks every id up. */
    writeOnceFilterMaxBytes: number;
    /** Embedded engine's data directory, used when `url` is unset. */
    path: string;
  };
  dataDir: string;
  http: {
    port: number;
    host: string;
    maxBodyBytes: number;
    maxEventsPerRequest: number;
    produceTimeoutMs: number;
    ingestProducers: number;
    /** Worker threads that parse, check and encode POST /v1/events bodies off the event loop (0: on the event loop). */
    prepareThreads: number;
    /** Ingest's per-instance cache of recently acknowledged (tenant, event_id) → content digest (0 turns it off). */
    recentIdCapacity: number;
    /** When set, /metrics answers only `Authorization: Bearer <this>`. */
    metricsToken: string | undefined;
    /** Open SSE streams, in all and per token subject (429 beyond). */
    maxStreams: number;
    maxStreamsPerSubject: number;
  };
  auth: {
    secret: string | undefined;
    jwksUrl: string | undefined;
    issuer: string | undefined;
    audience: string | undefined;
    maxTtlSeconds: number;
    allowLongLived: boolean;
    clockSkewSeconds: number;
    jwksAllowAllTenants: boolean;
  };
  /** Bounds on an event's occurred_at at every entry (HTTP ingest, OPA, Cerbos). */
  eventTime: { maxFutureSkewMs: number; maxAgeMs: number };
  logLevel: Env['LOG_LEVEL'];
};

/** SASL needs a mechanism, a user and a password together, or none of them. */
const kafkaSasl = (e: Env): Result<KafkaSecurity['sasl'], FieldError[]> => {
  const given = [e.KAFKA_SASL_MECHANISM, e.KAFKA_SASL_USERNAME, e.KAFKA_SASL_PASSWORD].some((v) => v !== undefined);
  if (!given) return ok(undefined);
  const missing = (['KAFKA_SASL_MECHANISM', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD'] as const).filter((k) => e[k] === undefined);
  if (missing.length > 0 || e.KAFKA_SASL_MECHANISM === undefined || e.KAFKA_SASL_USERNAME === undefined || e.KAFKA_SASL_PASSWORD === undefined) {
    return err(missing.map((path) => ({ path, message: 'SASL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD' })));
  }
  return ok({ mechanism: e.KAFKA_SASL_MECHANISM, username: e.KAFKA_SASL_USERNAME, password: e.KAFKA_SASL_PASSWORD });
};

export const parseConfig = (env: Record<string, string | undefined>): Result<Config, FieldError[]> => {
  // An empty variable means "unset", as in most shells' `FOO= cmd`.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) return err(zodIssues(r.error));
  const e = r.data;
  if (e.TRUSTFOLD_JWKS_URL !== undefined) {
    // Somebody else's issuer: without iss and aud pinned, a token it signed for another service would do here.
    const missing = (['TRUSTFOLD_JWT_ISSUER', 'TRUSTFOLD_JWT_AUDIENCE'] as const).filter((k) => e[k] === undefined);
    if (missing.length > 0) return err(missing.map((path) => ({ path, message: 'required with TRUSTFOLD_JWKS_URL' })));
  }
  if (e.TRUSTFOLD_MIN_INSYNC_REPLICAS !== undefined && e.TRUSTFOLD_MIN_INSYNC_REPLICAS > e.TRUSTFOLD_REPLICATION) {
    // A topic whose ISR can never reach its minimum refuses every acks=all write.
    return err([{ path: 'TRUSTFOLD_MIN_INSYNC_REPLICAS', message: `must be at most TRUSTFOLD_REPLICATION (${e.TRUSTFOLD_REPLICATION})` }]);
  }
  const sasl = kafkaSasl(e);
  if (!sasl.ok) return sasl;
  const tlsFiles = e.KAFKA_TLS_CA_FILE !== undefined || e.KAFKA_TLS_CERT_FILE !== undefined || e.KAFKA_TLS_KEY_FILE !== undefined;
  if ((e.KAFKA_TLS_CERT_FILE === undefined) !== (e.KAFKA_TLS_KEY_FILE === undefined)) {
    return err([{ path: e.KAFKA_TLS_CERT_FILE === undefined ? 'KAFKA_TLS_CERT_FILE' : 'KAFKA_TLS_KEY_FILE', message: 'a client certificate needs both KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE' }]);
  }
  return ok({
    kafka: {
      brokers: e.KAFKA_BROKERS,
      clientId: e.KAFKA_CLIENT_ID,
      partitions: e.TRUSTFOLD_PARTITIONS,
      replication: e.TRUSTFOLD_REPLICATION,
      minInsyncReplicas: e.TRUSTFOLD_MIN_INSYNC_REPLICAS ?? Math.min(2, e.TRUSTFOLD_REPLICATION),
      security: {
        sasl: sasl.value,
        // TLS files imply TLS; a SASL password never travels in the clear unless KAFKA_TLS=false is the deployment's choice.
        tls: e.KAFKA_TLS || tlsFiles
          ? { caFile: e.KAFKA_TLS_CA_FILE, certFile: e.KAFKA_TLS_CERT_FILE, keyFile: e.KAFKA_TLS_KEY_FILE, rejectUnauthorized: e.KAFKA_TLS_REJECT_UNAUTHORIZED }
          : undefined,
      },
    },
    topics: {
      decisions: e.TRUSTFOLD_TOPIC_DECISIONS,
      signals: e.TRUSTFOLD_TOPIC_SIGNALS,
      sessionTrust: e.TRUSTFOLD_TOPIC_SESSION_TRUST,
      deadLetter: e.TRUSTFOLD_TOPIC_DEAD_LETTER,
    },
    clickhouse: {
      url: e.CLICKHOUSE_URL,
      user: e.CLICKHOUSE_USER,
      password: e.CLICKHOUSE_PASSWORD,
      database: e.CLICKHOUSE_DATABASE,
      cluster: e.TRUSTFOLD_CLICKHOUSE_CLUSTER,
      ttlDays: e.TRUSTFOLD_AUDIT_TTL_DAYS,
      writeOnceFilter: e.TRUSTFOLD_AUDIT_WRITE_ONCE_FILTER,
      writeOnceFilterMaxBytes: e.TRUSTFOLD_AUDIT_WRITE_ONCE_FILTER_MB * 1024 * 1024,
      path: `${e.TRUSTFOLD_DATA_DIR}/clickhouse`,
    },
    dataDir: e.TRUSTFOLD_DATA_DIR,
    http: {
      port: e.PORT,
      host: e.HOST,
      maxBodyBytes: e.TRUSTFOLD_MAX_BODY_BYTES,
      maxEventsPerRequest: e.TRUSTFOLD_MAX_EVENTS_PER_REQUEST,
      produceTimeoutMs: e.TRUSTFOLD_PRODUCE_TIMEOUT_MS,
      ingestProducers: e.TRUSTFOLD_INGEST_PRODUCERS,
      recentIdCapacity: e.TRUSTFOLD_INGEST_RECENT_IDS,
      prepareThreads: e.TRUSTFOLD_INGEST_PREPARE_THREADS,
      metricsToken: e.TRUSTFOLD_METRICS_TOKEN,
      maxStreams: e.TRUSTFOLD_SSE_MAX_STREAMS,
      maxStreamsPerSubject: e.TRUSTFOLD_SSE_MAX_STREAMS_PER_SUBJECT,
    },
    auth: {
      secret: e.TRUSTFOLD_JWT_SECRET,
      jwksUrl: e.TRUSTFOLD_JWKS_URL,
      issuer: e.TRUSTFOLD_JWT_ISSUER,
      audience: e.TRUSTFOLD_JWT_AUDIENCE,
      maxTtlSeconds: e.TRUSTFOLD_JWT_MAX_TTL_S,
      allowLongLived: e.TRUSTFOLD_JWT_ALLOW_LONG_LIVED,
      clockSkewSeconds: e.TRUSTFOLD_JWT_CLOCK_SKEW_S,
      jwksAllowAllTenants: e.TRUSTFOLD_JWKS_ALLOW_ALL_TENANTS,
    },
    eventTime: { maxFutureSkewMs: e.TRUSTFOLD_MAX_FUTURE_SKEW_MS, maxAgeMs: e.TRUSTFOLD_MAX_EVENT_AGE_MS },
    logLevel: e.LOG_LEVEL,
  });
};

/**
 * The one formatter of configuration errors (every parser returns FieldError[]):
 * `PATH: message` per field, joined by `separator` (one per line for a
 * terminal, `; ` inside an exception message).
 */
export const formatFieldErrors = (errors: readonly FieldError[], separator = '; '): string =>
  errors.map((e) => `${e.path}: ${e.message}`).join(separator);

/** What a terminal shows for a bad configuration: a title, then each field indented on its own line. */
export const fieldErrorReport = (title: string, errors: readonly FieldError[]): string =>
  `${title}\n${errors.map((e) => `  ${formatFieldErrors([e])}`).join('\n')}\n`;

/** A parse result, or an exception naming every bad field (for callers that cannot return a Result). */
export const valueOrThrow = <T>(what: string, r: Result<T, FieldError[]>): T => {
  if (r.ok) return r.value;
  throw new Error(`invalid ${what}: ${formatFieldErrors(r.error)}`);
};

/** For main entry points: parse or exit with every bad variable named. */
export const loadConfig = (env: Record<string, string | undefined> = process.env): Config => {
  const r = parseConfig(env);
  if (r.ok) return r.value;
  process.stderr.write(fieldErrorReport('trustfold: invalid configuration', r.error));
  process.exit(2);
};

/** A test or embedded config: the defaults with the given overrides. */
export const configFrom = (env: Record<string, string | undefined>): Config => valueOrThrow('config', parseConfig(env));
