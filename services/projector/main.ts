// A projector on its own (`node --import tsx services/projector/main.ts`):
// the child process the kill test runs, and a way to run the role alone.
import { fieldErrorReport, loadConfig } from '../lib/config.ts';
import { createKafkaFor } from '../lib/kafka.ts';
import { createLogger } from '../lib/log.ts';
import { parseProjectorConfig } from './config.ts';
import { createProjector } from './runtime.ts';
import { createScaledProjector } from './scale/instance.ts';

const config = loadConfig();
const logger = createLogger('projector', config.logLevel);
const pc = parseProjectorConfig(process.env);
if (!pc.ok) {
  process.stderr.write(fieldErrorReport('trustfold projector: invalid configuration', pc.error));
  process.exit(2);
}
if (config.kafka.brokers === undefined) {
  process.stderr.write('trustfold projector: KAFKA_BROKERS is required\n');
  process.exit(2);
}
const kafka = createKafkaFor(config.kafka, config.kafka.brokers, `${config.kafka.clientId}-projector`);
const projectorDeps = {
  kafka,
  config,
  logger,
  groupId: pc.value.groupId,
  tickIntervalMs: pc.value.tickIntervalMs,
  fold: pc.value.fold,
  delivery: pc.value.delivery,
  sessionTimeoutMs: pc.value.sessionTimeoutMs,
  standby: pc.value.standby,
  // Scale-out: this member's partitions after every rebalance, on stdout beside "projector ready" (the failover tests read it).
  onAssignment: (partitions: number[]) => process.stdout.write(`${JSON.stringify({ msg: 'projector assignment', pid: process.pid, partitions })}\n`),
};
const projector = pc.value.scaleOut ? createScaledProjector(projectorDeps) : createProjector(projectorDeps);

let stopping = false;
const shutdown = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping projector');
  projector.stop().then(
    () => process.exit(0),
    (e: unknown) => {
      logger.error({ err: e instanceof Error ? e.message : String(e) }, 'projector stop failed');
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

if (pc.value.timingLogMs > 0) {
  // Per-interval averages of each transaction step, on stderr (benchmarks, diagnosis).
  let last = projector.timing();
  setInterval(() => {
    const t = projector.timing();
    const n = t.transactions - last.transactions;
    const avg = (a: number, b: number): string => (n > 0 ? ((a - b) / n).toFixed(2) : '-');
    process.stderr.write(
      `${JSON.stringify({ msg: 'projector transactions', n, batchesPerTxn: n > 0 ? ((t.batches - last.batches) / n).toFixed(1) : '-', beginMs: avg(t.beginMs, last.beginMs), sendMs: avg(t.sendMs, last.sendMs), offsetsMs: avg(t.offsetsMs, last.offsetsMs), commitMs: avg(t.commitMs, last.commitMs), maxMs: t.maxMs.toFixed(1), requests: Object.fromEntries(Object.entries(t.requests).map(([k, v]) => { const b = last.requests[k] ?? { n: 0, ms: 0 }; return [k, `${v.n - b.n}×${v.n - b.n > 0 ? ((v.ms - b.ms) / (v.n - b.n)).toFixed(1) : '-'}ms`]; })) })}\n`,
    );
    last = t;
  }, pc.value.timingLogMs).unref();
}

try {
  await projector.start();
  process.stdout.write(`${JSON.stringify({ msg: 'projector ready', pid: process.pid })}\n`);
} catch (e) {
  logger.error({ err: e instanceof Error ? e.message : String(e) }, 'projector failed to start');
  process.exit(1);
}
