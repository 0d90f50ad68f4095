// The Cerbos adapter role: a consumer of Cerbos's Kafka audit backend
// (`audit.backend: kafka`, `encoding: json`). Cerbos keys each record by the
// call id and says in headers what it is (`cerbos.audit.kind`: decision |
// access, `cerbos.audit.encoding`: json | protobuf). Every decision log entry
// becomes one trustfold decision per resource × action on the decisions
// topic; the rest of the pipeline (projector, audit sink) sees ordinary events.
//
// Per batch: classify and map each record (pure), set poison aside on the
// dead-letter topic with its reason, write the decisions (acks=all), and only
// then commit. A crash before the commit re-reads the batch and re-writes the
// same deterministic event ids, which downstream dedupe absorbs. The loop
// never stops on bad input, and restarts itself after Kafka trouble. An entry
// dated outside the event-time bounds (TRUSTFOLD_MAX_FUTURE_SKEW_MS,
// TRUSTFOLD_MAX_EVENT_AGE_MS) is poison like any other: dead-lettered with
// the reason, so an operator can widen the horizon and replay it.
import type { Consumer, IHeaders, Kafka, KafkaMessage, Producer } from 'kafkajs';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { Codec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import type { Topics } from '../lib/config.ts';
import { errorMessage, type DeadLetterReason } from '../lib/errors.ts';
import { DEFAULT_EVENT_TIME_BOUNDS, eventTimeError, type EventTimeBounds } from '../lib/event-time.ts';
import { sendToDeadLetter, type DeadLetter } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import type { CerbosAdapterConfig } from './config.ts';
import { mapCerbosEntry, type CerbosDecisionLogEntry, type Mapped } from './mapping.ts';
import { adapterMetrics } from './metrics.ts';
import { createDecisionWriter, type DecisionWriter } from './writer.ts';

export const CERBOS_HEADERS = { kind: 'cerbos.audit.kind', encoding: 'cerbos.audit.encoding' } as const;

const attrs = z.record(z.string(), z.unknown());
const checkInput = z.looseObject({
  requestId: z.string().optional(),
  resource: z.looseObject({ kind: z.string().optional(), id: z.string().optional(), policyVersion: z.string().optional(), scope: z.string().optional(), attr: attrs.optional() }).optional(),
  principal: z
    .looseObject({ id: z.string().optional(), roles: z.array(z.string()).optional(), policyVersion: z.string().optional(), scope: z.string().optional(), attr: attrs.optional() })
    .optional(),
  actions: z.array(z.string()).optional(),
  auxData: z.looseObject({ jwt: attrs.optional() }).optional(),
});
const checkOutput = z.looseObject({
  requestId: z.string().optional(),
  resourceId: z.string().optional(),
  actions: z.record(z.string(), z.looseObject({ effect: z.string().optional(), policy: z.string().optional(), scope: z.string().optional() })).optional(),
  effectiveDerivedRoles: z.array(z.string()).optional(),
  validationErrors: z.array(z.looseObject({ path: z.string().optional(), message: z.string().optional(), source: z.string().optional() })).optional(),
  outputs: z.array(z.looseObject({ src: z.string().optional(), val: z.unknown(), action: z.string().optional() })).optional(),
});
const decisionLogEntry = z.looseObject({
  callId: z.string().min(1),
  timestamp: z.string().optional(),
  peer: attrs.optional(),
  checkResources: z.looseObject({ inputs: z.array(checkInput).optional(), outputs: z.array(checkOutput).optional(), error: z.string().optional() }).optional(),
  planResources: z.unknown().optional(),
  inputs: z.array(checkInput).optional(),
  outputs: z.array(checkOutput).optional(),
  error: z.string().optional(),
  metadata: z.record(z.string(), z.looseObject({ values: z.array(z.string()).optional() })).optional(),
  auditTrail: z.looseObject({ effectivePolicies: attrs.optional() }).optional(),
  policySource: z.unknown().optional(),
  requestContext: z.looseObject({ annotations: attrs.optional() }).optional(),
});

export type CerbosRecordOutcome =
  | { kind: 'ignored'; why: 'access_log' | 'plan_resources' | 'no_decisions' }
  | { kind: 'poison'; reason: 'empty' | 'unsupported_encoding' | 'bad_json' | 'not_a_decision_log_entry' | 'occurred_at_out_of_bounds'; message: string }
  | { kind: 'mapped'; mapped: Mapped[]; failures: string[] };

const header = (headers: IHeaders | undefined, name: string): string | undefined => {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
};

/** The clock and the bounds an entry's time is checked against. */
export type CerbosTime = { nowMs: number; bounds: EventTimeBounds };

/** What one record of the Cerbos audit topic becomes. Pure: bytes, headers and the time in, a value out. */
export const classifyCerbosRecord = (
  value: Buffer | null,
  headers: IHeaders | undefined,
  cfg: Pick<CerbosAdapterConfig, 'convention' | 'defaultTenant' | 'pdpId'>,
  time: CerbosTime,
): CerbosRecordOutcome => {
  const kind = header(headers, CERBOS_HEADERS.kind);
  if (kind === 'access') return { kind: 'ignored', why: 'access_log' };
  const encoding = header(headers, CERBOS_HEADERS.encoding);
  if (encoding !== undefined && encoding !== 'json') {
    return { kind: 'poison', reason: 'unsupported_encoding', message: `cerbos.audit.encoding is ${encoding}; set audit.kafka.encoding: json in Cerbos` };
  }
  if (value === null || value.length === 0) return { kind: 'poison', reason: 'empty', message: 'record has no value' };
  let json: unknown;
  try {
    json = JSON.parse(value.toString('utf8'));
  } catch (e) {
    return { kind: 'poison', reason: 'bad_json', message: `not JSON: ${errorMessage(e)}` };
  }
  const parsed = decisionLogEntry.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    return { kind: 'poison', reason: 'not_a_decision_log_entry', message: `not a Cerbos decision log entry: ${issues.join('; ')}` };
  }
  const entry = parsed.data as CerbosDecisionLogEntry;
  if (entry.planResources !== undefined && entry.checkResources === undefined) return { kind: 'ignored', why: 'plan_resources' };
  const { mapped, failures } = mapCerbosEntry(entry, {
    convention: cfg.convention,
    defaultTenant: cfg.defaultTenant,
    pdpId: cfg.pdpId,
    emittedBy: `cerbos-adapter:${cfg.pdpId}`,
  });
  if (mapped.length === 0 && failures.length === 0) return { kind: 'ignored', why: 'no_decisions' };
  // One entry, one timestamp: if any of its decisions is out of bounds, the whole record is set aside.
  for (const m of mapped) {
    const late = eventTimeError(m.event.occurred_at, time.nowMs, time.bounds);
    if (late !== undefined) return { kind: 'poison', reason: 'occurred_at_out_of_bounds', message: `${late.path}: ${late.message}` };
  }
  return { kind: 'mapped', mapped, failures };
};

export type CerbosAuditConsumerDeps = {
  kafka: Kafka;
  /** decisions (written) and deadLetter (poison); config.topics. */
  topics: Pick<Topics, 'decisions' | 'deadLetter'>;
  cerbos: CerbosAdapterConfig;
  registry: Registry;
  logger: Logger;
  codec?: Codec;
  now?: () => Date;
  /** How long one produce of mapped decisions may take (config.http.produceTimeoutMs is a good value). */
  produceTimeoutMs?: number;
  /** Injected in tests; by default one is created on the kafka client. */
  writer?: DecisionWriter;
  /** occurred_at bounds (config.eventTime). Default 60 s ahead, 30 days old. */
  eventTime?: EventTimeBounds;
  consumer?: { maxBytesPerPartition?: number; maxWaitTimeInMs?: number; partitionsConsumedConcurrently?: number };
};

export type CerbosAuditConsumer = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True between start() and stop(); the consumer restarts itself after a crash. */
  isRunning(): boolean;
};

const WRITE_CHUNK = 2_000;

export const createCerbosAuditConsumer = (deps: CerbosAuditConsumerDeps): CerbosAuditConsumer => {
  const metrics = adapterMetrics(deps.registry);
  const now = deps.now ?? (() => new Date());
  const log = deps.logger;
  const ownWriter = deps.writer === undefined;
  const writer =
    deps.writer ??
    createDecisionWriter({ kafka: deps.kafka, topic: deps.topics.decisions, timeoutMs: deps.produceTimeoutMs ?? 30_000, ...(deps.codec ? { codec: deps.codec } : {}) });
  let consumer: Consumer | undefined;
  let dlq: Producer | undefined;
  let running = false;

  const deadLetter = (topic: string, partition: number, m: KafkaMessage, reason: DeadLetterReason, message: string): DeadLetter => ({
    topic,
    partition,
    offset: m.offset,
    key: m.key,
    value: m.value,
    reason,
    message,
    consumer: deps.cerbos.groupId,
  });

  return {
    async start() {
      if (running) return;
      dlq = deps.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await dlq.connect();
      consumer = deps.kafka.consumer({
        groupId: deps.cerbos.groupId,
        maxBytesPerPartition: deps.consumer?.maxBytesPerPartition ?? 4 * 1024 * 1024,
        maxWaitTimeInMs: deps.consumer?.maxWaitTimeInMs ?? 250,
        // Never give up: after Kafka trouble the consumer rejoins and re-reads from the last commit.
        retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 5_000, restartOnFailure: async () => true },
      });
      consumer.on(consumer.events.CRASH, (e) => log.error({ err: e.payload.error, restart: e.payload.restart }, 'cerbos adapter consumer crashed; restarting'));
      await consumer.connect();
      await consumer.subscribe({ topic: deps.cerbos.topic, fromBeginning: deps.cerbos.fromBeginning });
      const producer = dlq;
      await consumer.run({
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: deps.consumer?.partitionsConsumedConcurrently ?? 1,
        eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
          if (!isRunning() || isStale() || batch.messages.length === 0) return;
          const events: DecisionEvent[] = [];
          const dead: DeadLetter[] = [];
          for (const m of batch.messages) {
            let outcome: CerbosRecordOutcome;
            try {
              outcome = classifyCerbosRecord(m.value, m.headers, deps.cerbos, { nowMs: now().getTime(), bounds: deps.eventTime ?? DEFAULT_EVENT_TIME_BOUNDS });
            } catch (e) {
              // A bug in the mapping must not stop the loop; the record is kept for replay.
              outcome = { kind: 'poison', reason: 'not_a_decision_log_entry', message: `mapping threw: ${errorMessage(e)}` };
            }
            switch (outcome.kind) {
              case 'ignored':
                metrics.entries.inc({ engine: 'cerbos', result: outcome.why });
                break;
              case 'poison':
                metrics.entries.inc({ engine: 'cerbos', result: 'dead_letter' });
                metrics.deadLetters.inc({ engine: 'cerbos', reason: outcome.reason });
                dead.push(deadLetter(batch.topic, batch.partition, m, outcome.reason, outcome.message));
                break;
              case 'mapped':
                metrics.entries.inc({ engine: 'cerbos', result: 'mapped' });
                metrics.observe('cerbos', outcome.mapped);
                for (const x of outcome.mapped) events.push(x.event);
                if (outcome.failures.length > 0) {
                  metrics.deadLetters.inc({ engine: 'cerbos', reason: 'unmappable' });
                  dead.push(deadLetter(batch.topic, batch.partition, m, 'unmappable', outcome.failures.join('; ')));
                }
                break;
              default: {
                const unreachable: never = outcome;
                return unreachable;
              }
            }
          }
          for (const d of dead) {
            log.warn({ topic: d.topic, partition: d.partition, offset: d.offset, reason: d.reason, message: d.message }, 'cerbos audit record set aside');
            await sendToDeadLetter(producer, deps.topics.deadLetter, d, now());
          }
          for (let i = 0; i < events.length; i += WRITE_CHUNK) {
            await writer.write(events.slice(i, i + WRITE_CHUNK));
            await heartbeat();
          }
          const last = batch.messages[batch.messages.length - 1];
          if (last) resolveOffset(last.offset);
          await commitOffsetsIfNecessary();
          await heartbeat();
        },
      });
      running = true;
      log.info({ topic: deps.cerbos.topic, groupId: deps.cerbos.groupId }, 'cerbos adapter consuming');
    },
    async stop() {
      running = false;
      await consumer?.disconnect().catch((e: unknown) => log.warn({ err: e }, 'cerbos adapter consumer disconnect failed'));
      consumer = undefined;
      if (ownWriter) await writer.close();
      await dlq?.disconnect().catch(() => undefined);
      dlq = undefined;
    },
    isRunning: () => running,
  };
};
