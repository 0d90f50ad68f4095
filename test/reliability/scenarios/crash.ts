// Scenario 1, crash safety: events go in through ingest while the projector
// and the audit sink — each `trustfold serve --role …` in a child process —
// are SIGKILLed at random moments and restarted. Afterwards ClickHouse holds
// exactly the accepted decisions, and every session's published trust state
// equals a fresh fold of the topics from the beginning.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TrustfoldEvent } from '../../../schemas/events.ts';
import { mintToken } from '../../../services/lib/auth.ts';
import { createClickHouse } from '../../../services/lib/clickhouse.ts';
import { configFrom } from '../../../services/lib/config.ts';
import { createKafka } from '../../../services/lib/kafka.ts';
import { createLogger } from '../../../services/lib/log.ts';
import { startSystem } from '../../helpers/system.ts';
import {
  createTrustTopicUncompacted,
  createWorkload,
  dataEnds,
  envInt,
  groupReached,
  freshFold,
  groupProgress,
  killHard,
  latestTrust,
  printFigure,
  projectorUnpublished,
  readEvents,
  readTopics,
  SECRET,
  REL_ACTOR,
  REL_SCOPES,
  sleep,
  spawnRole,
  startCpuBurners,
  stopGracefully,
  tempDir,
  trustDifferences,
  uniqueEnv,
  waitUntil,
  codec,
  type Figure,
  type RoleProcess,
} from '../harness.ts';
import { auditSinkGroupOf } from '../../../services/audit-sink/group.ts';

export type CrashOptions = {
  brokers: string[];
  /** Decisions + signals to send. */
  events: number;
  /** SIGKILLs, alternating projector and audit sink. */
  kills: number;
  sessions: number;
  batchSize: number;
  /** Random pause between a restart being ready and the next kill, ms. */
  killGapMs: [number, number];
  /** Production is stretched to at least this long so kills land mid-stream. */
  minProduceMs: number;
  catchUpTimeoutMs: number;
  /**
   * CPU pressure: this many busy-looping processes run beside the scenario
   * (on 2 cores, 2 of them leave the roles and the broker a fraction of a
   * core) — restores, sends and commits then interleave as on a loaded host.
   */
  cpuBurners?: number;
  log?: (s: string) => void;
};

/** Sizes of the fast variant (npm test) and the long one (npm run test:reliability); brokers, burners and log come from the caller. */
export const FAST_CRASH: Omit<CrashOptions, 'brokers' | 'cpuBurners' | 'log'> = {
  events: envInt('RELIABILITY_FAST_EVENTS', 20_000),
  kills: envInt('RELIABILITY_FAST_KILLS', 2),
  sessions: 200,
  batchSize: 500,
  killGapMs: [1_500, 3_000],
  minProduceMs: 8_000,
  catchUpTimeoutMs: 120_000,
};
export const LONG_CRASH: Omit<CrashOptions, 'brokers' | 'cpuBurners' | 'log'> = {
  events: envInt('RELIABILITY_EVENTS', 1_000_000),
  kills: envInt('RELIABILITY_KILLS', 10),
  sessions: 5_000,
  batchSize: 2_000,
  killGapMs: [3_000, 12_000],
  minProduceMs: envInt('RELIABILITY_MIN_PRODUCE_MS', 60_000),
  catchUpTimeoutMs: 2 * 3_600_000,
};

export const runCrashScenario = async (o: CrashOptions): Promise<Figure> => {
  const log = o.log ?? (() => undefined);
  const dataDir = tempDir('trustfold-rel-crash-');
  const env: Record<string, string> = { ...uniqueEnv(o.brokers, 3), TRUSTFOLD_DATA_DIR: dataDir };
  const config = configFrom(env);
  const kafka = createKafka(o.brokers, `${env['KAFKA_CLIENT_ID'] ?? 'rel'}-test`);
  await createTrustTopicUncompacted(kafka, config);
  const ingest = await startSystem({ config, roles: new Set(['ingest']), brokers: o.brokers, logger: createLogger('rel', 'silent'), env, listen: false });
  const procs: { projector?: RoleProcess; sink?: RoleProcess } = {};
  const burners = startCpuBurners(o.cpuBurners ?? 0);
  const started = Date.now();
  let kills = 0;
  let restartsMs = 0;
  try {
    procs.projector = spawnRole('projector', env);
    procs.sink = spawnRole('audit-sink', env);
    await Promise.all([procs.projector.ready, procs.sink.ready]);
    log(`children ready in ${Date.now() - started} ms`);

    const token = await mintToken({ sub: REL_ACTOR, tenant: 'acme', scopes: REL_SCOPES, ttlSeconds: 24 * 3600 }, SECRET);
    const workload = createWorkload({ tenant: 'acme', sessions: o.sessions, signalEvery: 9 });
    const accepted: TrustfoldEvent[] = [];
    let producing = true;

    const produce = async (): Promise<void> => {
      const t0 = Date.now();
      let sent = 0;
      while (sent < o.events) {
        const batch = workload.batch(Math.min(o.batchSize, o.events - sent));
        const body = batch.map((e) => JSON.stringify(e)).join('\n');
        for (let attempt = 0; ; attempt++) {
          const r = await ingest.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' }, payload: body });
          if (r.statusCode === 202) {
            const j = r.json<{ accepted: number; rejected: unknown[] }>();
            assert.equal(j.accepted, batch.length, `every event of the batch accepted: ${r.body.slice(0, 500)}`);
            accepted.push(...batch);
            break;
          }
          assert.equal(r.statusCode, 503, `ingest answers 202 or 503, got ${r.statusCode}: ${r.body.slice(0, 500)}`);
          if (attempt > 20) assert.fail('ingest kept answering 503 with the broker up');
          await sleep(200);
        }
        sent += batch.length;
        // Stretch production over minProduceMs, so kills land while events flow.
        const due = t0 + (o.minProduceMs * sent) / o.events;
        if (Date.now() < due) await sleep(due - Date.now());
      }
      producing = false;
    };

    // One kill loop per role, so one role's slow restart does not hold the other's kills back.
    const killer = async (which: 'projector' | 'sink', count: number): Promise<void> => {
      for (let k = 0; k < count; k++) {
        const [lo, hi] = o.killGapMs;
        await sleep(lo + Math.random() * (hi - lo));
        const during = producing ? 'while producing' : 'while catching up';
        await killHard(procs[which]);
        kills++;
        const t = Date.now();
        const fresh = spawnRole(which === 'projector' ? 'projector' : 'audit-sink', env);
        procs[which] = fresh;
        await fresh.ready;
        restartsMs += Date.now() - t;
        log(`kill of ${which} ${during}; back in ${Date.now() - t} ms`);
      }
    };
    await Promise.all([produce(), killer('projector', Math.ceil(o.kills / 2)), killer('sink', Math.floor(o.kills / 2))]);
    log(`produced ${accepted.length} events and made ${kills} kills in ${Date.now() - started} ms`);

    // Everything consumed: the projector's input, then the sink's (it reads the trust topic too).
    const inputs = [config.topics.decisions, config.topics.signals];
    const projectorGroup = env['TRUSTFOLD_PROJECTOR_GROUP'] ?? '';
    const sinkGroup = auditSinkGroupOf(config.kafka.clientId);
    // "Caught up" means published: the committed input reached the end, and
    // the projector holds no folded state that the trust topic lacks.
    let unpublished = -1;
    await waitUntil('projector caught up and published', async () => {
      const p = await groupProgress(kafka, projectorGroup, inputs);
      if (p.committed < p.end) return false;
      unpublished = await projectorUnpublished(procs.projector);
      return unpublished === 0;
    }, o.catchUpTimeoutMs, 500);
    await stopGracefully(procs.projector);
    // The trust topic is transactional: its end offset counts commit markers the sink never sees.
    const targets = await dataEnds(kafka, [...inputs, config.topics.sessionTrust]);
    await waitUntil('audit sink caught up', () => groupReached(kafka, sinkGroup, targets), o.catchUpTimeoutMs, 500);
    await stopGracefully(procs.sink);

    // Trust: what the projector published equals a fresh fold of the topics.
    const topicEvents = await readEvents(kafka, inputs);
    const topicIds = new Set(topicEvents.map((e) => e.event_id));
    const lost = accepted.filter((e) => !topicIds.has(e.event_id)).length;
    assert.equal(lost, 0, 'every accepted event is on its topic');
    const expected = freshFold(topicEvents);
    const published = await latestTrust(kafka, config.topics.sessionTrust);
    const diff = trustDifferences(published.latest, expected);
    const first = diff[0]?.split(' ')[0] ?? '';
    assert.deepEqual(diff.slice(0, 10), [], `${diff.length} sessions differ from the fresh fold; ${first}: published ${JSON.stringify(published.latest.get(first))} fold ${JSON.stringify(expected.get(first))}`);
    assert.equal(published.undecodable, 0);
    // Exactly-once publishing: per session the committed versions are 1..n, each once.
    const versions = new Map<string, number[]>();
    for (const r of await readTopics(kafka, [config.topics.sessionTrust])) {
      if (r.value === null) continue;
      const d = codec.decodeTrust(r.value);
      if (!d.ok) continue;
      const k = `${d.value.tenant_id}/${d.value.session_id}`;
      const list = versions.get(k) ?? [];
      list.push(d.value.version);
      versions.set(k, list);
    }
    let trustDuplicates = 0;
    let trustGaps = 0;
    for (const list of versions.values()) {
      const sorted = [...list].sort((a, b) => a - b);
      trustDuplicates += sorted.length - new Set(sorted).size;
      const max = sorted.at(-1) ?? 0;
      trustGaps += max - new Set(sorted).size;
    }
    assert.equal(trustDuplicates, 0, 'no trust version published twice');
    assert.equal(trustGaps, 0, 'no trust version missing');

    // Audit: only now, with every sink process gone, this process opens their ClickHouse.
    const ch = createClickHouse({ kind: 'embedded', path: join(dataDir, 'clickhouse'), database: config.clickhouse.database });
    let figure: Figure;
    try {
      const db = config.clickhouse.database;
      const rs = await ch.query({
        query: `SELECT (SELECT count() FROM ${db}.decisions) AS raw, (SELECT count() FROM ${db}.decisions FINAL) AS final, (SELECT uniqExact(event_id) FROM ${db}.decisions) AS ids,
                       (SELECT count() FROM ${db}.signals FINAL) AS signals, (SELECT uniqExact(event_id) FROM ${db}.signals) AS signal_ids`,
        format: 'JSONEachRow',
      });
      const [c] = await rs.json<Record<string, string | number>>();
      const counts = { raw: Number(c?.['raw']), final: Number(c?.['final']), ids: Number(c?.['ids']), signals: Number(c?.['signals']), signalIds: Number(c?.['signal_ids']) };
      const acceptedDecisions = accepted.filter((e) => e.type === 'decision');
      const acceptedSignals = accepted.length - acceptedDecisions.length;
      const idsRs = await ch.query({ query: `SELECT toString(event_id) AS id FROM ${db}.decisions FINAL`, format: 'TabSeparated' });
      const stored = new Set((await idsRs.text()).split('\n').filter((l) => l !== ''));
      const missing = acceptedDecisions.filter((e) => !stored.has(e.event_id)).length;
      const acceptedIds = new Set(acceptedDecisions.map((e) => e.event_id));
      const extra = [...stored].filter((id) => !acceptedIds.has(id)).length;
      assert.equal(missing, 0, 'no accepted decision missing from ClickHouse');
      assert.equal(extra, 0, 'no decision in ClickHouse that was not accepted');
      assert.equal(counts.final, acceptedDecisions.length, 'decisions: one row per accepted decision');
      assert.equal(counts.ids, acceptedDecisions.length);
      assert.equal(counts.signals, acceptedSignals, 'signals: one row per accepted signal');
      assert.equal(counts.signalIds, acceptedSignals);
      figure = printFigure('crash-safety', {
        events: accepted.length,
        decisions: acceptedDecisions.length,
        signals: acceptedSignals,
        sessions: expected.size,
        kills,
        'avg restart ms': kills === 0 ? 0 : Math.round(restartsMs / kills),
        lost: missing + lost,
        duplicated: counts.final - counts.ids,
        'raw re-inserted rows (before merge)': counts.raw - counts.ids,
        'trust states = fresh fold': `${expected.size - diff.length}/${expected.size}`,
        'trust versions dup/gap': `${trustDuplicates}/${trustGaps}`,
        'unpublished at catch-up': unpublished,
        'cpu burners': burners.count,
        seconds: Math.round((Date.now() - started) / 1000),
      });
    } finally {
      await ch.close();
    }
    assert.ok(kills >= o.kills, `made ${kills} kills`);
    return figure;
  } finally {
    burners.stop();
    await Promise.all([killHard(procs.projector), killHard(procs.sink)]);
    await ingest.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
};
