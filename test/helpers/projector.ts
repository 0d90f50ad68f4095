// Shared by the projector's integration tests: a unique topic set per test,
// a producer of contract events, a raw reader of the session-trust topic, and
// projector child processes (services/projector/main.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Partitioners, type IHeaders, type Kafka, type Producer } from 'kafkajs';
import { createCodec, parseEvent } from '../../schemas/codec.ts';
import type { SessionTrust, TrustfoldEvent, TrustfoldEventInput } from '../../schemas/events.ts';
import { configFrom, type Config } from '../../services/lib/config.ts';
import { partitionKeyOf, topicOf } from '../../services/lib/kafka.ts';
import { topicEnv, uniqueName } from './kafka.ts';

export const codec = createCodec();

export const testEnv = (brokers: string[], partitions = 3): Record<string, string> & { TRUSTFOLD_PROJECTOR_GROUP: string } => {
  return { ...topicEnv(uniqueName('pt'), brokers, partitions), LOG_LEVEL: 'warn' };
};

export const testConfig = (env: Record<string, string>): Config => configFrom(env);

let seq = 0;
const runId = Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0');
export const newEventId = (): string => `01976d2a-${runId}-7000-8000-${String(++seq).padStart(12, '0')}`;

export const event = (input: Record<string, unknown>): TrustfoldEvent => {
  const r = parseEvent({ event_id: newEventId(), tenant_id: 'acme', occurred_at: new Date().toISOString(), ...input } as TrustfoldEventInput);
  if (!r.ok) throw new Error(`bad test event: ${JSON.stringify(r.error)}`);
  return r.value;
};

export const sessionStarted = (session: string, user: string, extra: Record<string, unknown> = {}): TrustfoldEvent =>
  event({ type: 'signal', kind: 'session_started', session_id: session, chain: [{ kind: 'human', id: user }, { kind: 'agent', id: 'A-17' }], ...extra });

export const createEventProducer = async (kafka: Kafka, config: Config): Promise<{ send(e: TrustfoldEvent): Promise<void>; raw: Producer; close(): Promise<void> }> => {
  const raw = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
  await raw.connect();
  return {
    raw,
    send: async (e) => {
      await raw.send({ topic: topicOf(config.topics, e), acks: -1, messages: [{ key: partitionKeyOf(e), value: codec.encodeEvent(e) }] });
    },
    close: () => raw.disconnect(),
  };
};

/** Every record of the session-trust topic, as committed (read_committed), in partition order. */
export const readTrustTopic = async (kafka: Kafka, topic: string, groupId: string): Promise<{ records: SessionTrust[]; close(): Promise<void> }> => {
  const records: SessionTrust[] = [];
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      if (message.value === null) return;
      const r = codec.decodeTrust(message.value);
      if (!r.ok) throw new Error(r.error.message);
      records.push(r.value);
    },
  });
  return { records, close: () => consumer.disconnect() };
};

export const waitFor = async (what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

export type ProjectorChild = { child: ChildProcess; ready: Promise<void>; partitions: () => number[]; assignedAt: Map<number, number> };

let children = 0;

/**
 * A projector process with `env`; `ready` once it printed "projector ready".
 * PROJECTOR_SCALE_LOG_DIR: keep each child's output (LOG_LEVEL info) there, for diagnosis.
 */
export const startProjectorChild = (env: Record<string, string>): ProjectorChild => {
  const logDir = process.env['PROJECTOR_SCALE_LOG_DIR'];
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/projector/main.ts'], { env: { ...process.env, ...env, ...(logDir !== undefined && { LOG_LEVEL: 'info' }) }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logFile = logDir === undefined ? undefined : join(logDir, `projector-${process.pid}-${++children}.log`);
  if (logFile !== undefined) {
    child.stdout?.on('data', (d: Buffer) => appendFileSync(logFile, d));
    child.stderr?.on('data', (d: Buffer) => appendFileSync(logFile, d));
  }
  let err = '';
  let partitions: number[] = [];
  /** When this child last reported each partition as newly its own. */
  const assignedAt = new Map<number, number>();
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop() ?? '';
      for (const l of lines) {
        if (l.includes('"projector assignment"')) {
          const now = (JSON.parse(l) as { partitions: number[] }).partitions;
          for (const p of now) if (!partitions.includes(p)) assignedAt.set(p, Date.now());
          partitions = now;
        }
        if (l.includes('"projector ready"')) resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`projector exited (${code}) before ready: ${err}`)));
  });
  ready.catch(() => undefined);
  return { child, ready, partitions: () => partitions, assignedAt };
};

/** One record of the session-trust topic as written: where, its key, headers and bytes, and when this reader got it. */
export type RawTrustRecord = { partition: number; offset: string; key: Buffer | null; headers: IHeaders; value: Buffer | null; at: number };

/** Every record of the session-trust topic, raw (epoch records included), in offset order per partition. */
export const readRawTrust = async (kafka: Kafka, topic: string, groupId: string, readUncommitted: boolean): Promise<{ records: RawTrustRecord[]; close(): Promise<void> }> => {
  const records: RawTrustRecord[] = [];
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 50, readUncommitted });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) records.push({ partition: batch.partition, offset: m.offset, key: m.key, headers: m.headers ?? {}, value: m.value, at: Date.now() });
    },
  });
  return { records, close: () => consumer.disconnect() };
};
