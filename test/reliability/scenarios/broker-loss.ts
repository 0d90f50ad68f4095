// Scenario broker-loss: the roles (ingest, projector, audit sink, query) run in
// this process against a three-node cluster (replication 3, min ISR 2) while
// events flow. The node leading the most traffic of the event topics is
// SIGKILLed mid-run and started again later. Ingest keeps answering: every
// 503 is counted, and none may come once new leaders are elected; every
// acknowledged event is on its topic and in ClickHouse, no decision is stored
// twice, and the published trust equals a fresh fold of the topics. The
// FIGURE line gives the time from the kill to the last moved leadership, and
// from the restart to every ISR full again.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Admin } from 'kafkajs';
import type { TrustfoldEvent } from '../../../schemas/events.ts';
import { mintToken } from '../../../services/lib/auth.ts';
import { configFrom } from '../../../services/lib/config.ts';
import { createKafka } from '../../../services/lib/kafka.ts';
import { createLogger } from '../../../services/lib/log.ts';
import { startSystem } from '../../helpers/system.ts';
import { createWorkload, printFigure, readEvents, SECRET, REL_ACTOR, REL_SCOPES, sleep, tempDir, uniqueEnv, waitUntil, type Figure, type TestBroker } from '../harness.ts';
import { checkStoredDecisions, checkTrustEqualsFold } from '../checks.ts';

export type BrokerLossOptions = {
  broker: TestBroker;
  /** Events acknowledged before the kill. */
  eventsBefore: number;
  /** How long the node stays down after its partitions have new leaders. */
  downMs: number;
  /** Events that must be acknowledged while the node is down (after the election), before it is restarted. */
  eventsWhileDown: number;
  /** Events acknowledged after the node is back in every ISR. */
  eventsAfter: number;
  log?: (s: string) => void;
};

type Leadership = { topic: string; partition: number; leader: number; isr: number[]; replicas: number[] };

const leaderships = async (admin: Admin, topics?: string[]): Promise<Leadership[]> => {
  const md = await admin.fetchTopicMetadata(topics !== undefined ? { topics } : undefined);
  return md.topics.flatMap((t) => t.partitions.map((p) => ({ topic: t.name, partition: p.partitionId, leader: p.leader, isr: p.isr, replicas: p.replicas })));
};

export const runBrokerLossScenario = async (o: BrokerLossOptions): Promise<Figure> => {
  const cluster = o.broker.cluster;
  assert.ok(cluster !== undefined && cluster.nodes.length >= 3, 'needs a cluster of three nodes of its own (startBroker({ own: true, nodes: 3 }))');
  const started = Date.now();
  const dataDir = tempDir('trustfold-rel-loss-');
  const env: Record<string, string> = {
    ...uniqueEnv(o.broker.brokers, 3),
    TRUSTFOLD_DATA_DIR: dataDir,
    TRUSTFOLD_REPLICATION: String(cluster.replicationFactor),
    TRUSTFOLD_MIN_INSYNC_REPLICAS: String(cluster.minInsyncReplicas),
  };
  const config = configFrom(env);
  const system = await startSystem({ config, roles: new Set(['ingest', 'projector', 'audit-sink', 'query']), brokers: o.broker.brokers, logger: createLogger('rel', process.env['RELIABILITY_LOG'] ?? 'silent'), env, listen: false });
  const kafka = createKafka(o.broker.brokers, `${config.kafka.clientId}-check`);
  const admin = kafka.admin();
  await admin.connect();
  const token = await mintToken({ sub: REL_ACTOR, tenant: 'acme', scopes: REL_SCOPES, ttlSeconds: 3600 }, SECRET);
  const workload = createWorkload({ tenant: 'acme', sessions: 50, signalEvery: 9 });
  const eventTopics = [config.topics.decisions, config.topics.signals];
  const accepted: TrustfoldEvent[] = [];
  // Each refusal with the time its request was sent: after the election, none.
  const refused: { sentMs: number; status: number; code: string; retryAfter: string }[] = [];
  const acks: number[] = [];
  const firstAckAfter = (ms: number): number | undefined => acks.find((t) => t > ms);
  // Like a gateway: a refused batch is sent again, the same events, until accepted.
  let retry: TrustfoldEvent[] | undefined;
  const post = async (): Promise<void> => {
    const batch = retry ?? workload.batch(200);
    const sentMs = Date.now();
    const r = await system.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${token}` }, payload: batch });
    if (r.statusCode === 202) {
      retry = undefined;
      accepted.push(...batch);
      acks.push(Date.now());
      return;
    }
    retry = batch;
    assert.equal(r.statusCode, 503, `only 202 or 503, got ${r.statusCode}: ${r.body}`);
    refused.push({ sentMs, status: r.statusCode, code: r.json<{ error: { code: string } }>().error.code, retryAfter: String(r.headers['retry-after'] ?? '') });
    await sleep(200);
  };
  let flowing = true;
  let flowError: unknown;
  const flow = (async () => {
    try {
      while (flowing) await post();
    } catch (e) {
      flowError = e;
    }
  })();
  const untilAccepted = async (n: number, what: string): Promise<void> => {
    await waitUntil(what, () => accepted.length >= n || flowError !== undefined, 600_000, 50);
    if (flowError !== undefined) throw flowError;
  };
  try {
    await untilAccepted(o.eventsBefore, `${o.eventsBefore} events acknowledged`);

    // The busiest partitions: the node leading the most records of the event topics.
    const before = await leaderships(admin, eventTopics);
    const load = new Map<number, number>();
    for (const t of eventTopics) {
      for (const p of await admin.fetchTopicOffsets(t)) {
        const leader = before.find((l) => l.topic === t && l.partition === p.partition)?.leader ?? -1;
        load.set(leader, (load.get(leader) ?? 0) + Number(p.high));
      }
    }
    const [victimId] = [...load].filter(([id]) => id >= 0).sort((a, b) => b[1] - a[1])[0] ?? [-1];
    const victim = cluster.nodes.find((n) => n.nodeId === victimId);
    assert.ok(victim !== undefined, `the busiest leader is a node of the cluster (${String(victimId)})`);
    const allBefore = await leaderships(admin);
    const led = allBefore.filter((l) => l.leader === victim.nodeId);
    o.log?.(`${accepted.length} acknowledged; SIGKILL node ${victim.nodeId} (pid ${victim.pid() ?? '?'}), leader of ${led.length} partitions, ${load.get(victim.nodeId) ?? 0} records of the event topics`);
    const acceptedAtKill = accepted.length;
    const killedMs = Date.now();
    await victim.kill();

    // Election: every partition the node led has another leader (of the whole cluster, internal topics included).
    const electionMs = await waitUntil(
      'new leaders for the killed node\'s partitions',
      async () => {
        const now = await leaderships(admin, [...new Set(led.map((l) => l.topic))]).catch(() => undefined);
        return now !== undefined && led.every((l) => { const x = now.find((n) => n.topic === l.topic && n.partition === l.partition); return x !== undefined && x.leader >= 0 && x.leader !== victim.nodeId; });
      },
      120_000,
      50,
    );
    const electedAt = killedMs + electionMs;
    const shrunk = (await leaderships(admin)).filter((l) => l.isr.includes(victim.nodeId)).length;
    o.log?.(`leaders elected ${electionMs} ms after the kill; ${refused.length} refused so far; partitions still listing the node in their ISR: ${shrunk}`);
    // Down for downMs at least, and until ingest acknowledged events again without the node.
    const downSince = Date.now();
    await untilAccepted(accepted.length + o.eventsWhileDown, `${o.eventsWhileDown} events acknowledged while node ${victim.nodeId} is down`);
    await sleep(Math.max(0, o.downMs - (Date.now() - downSince)));
    const acceptedWhileDown = accepted.length - acceptedAtKill;
    const firstAckAfterKillMs = (firstAckAfter(killedMs) ?? Date.now()) - killedMs;

    const restartMs = Date.now();
    await victim.start();
    const nodeBackMs = Date.now() - restartMs;
    const isrMs = await waitUntil(
      'every ISR full again',
      async () => (await leaderships(admin).catch(() => [])).every((l) => l.isr.length === l.replicas.length) ,
      300_000,
      100,
    ) + nodeBackMs;
    o.log?.(`node ${victim.nodeId} listed again ${nodeBackMs} ms after its start, every ISR full ${isrMs} ms after it`);

    await untilAccepted(accepted.length + o.eventsAfter, `${o.eventsAfter} more events acknowledged`);
    flowing = false;
    await flow;
    if (flowError !== undefined) throw flowError;

    const refusedBeforeKill = refused.filter((r) => r.sentMs < killedMs).length;
    const refusedBeforeElection = refused.filter((r) => r.sentMs >= killedMs && r.sentMs < electedAt).length;
    const refusedAfterElection = refused.filter((r) => r.sentMs >= electedAt);
    assert.ok(refused.every((x) => x.retryAfter !== '' && ['kafka_timeout', 'kafka_unavailable'].includes(x.code)), `503s carry Retry-After: ${JSON.stringify(refused.slice(0, 3))}`);

    // Nothing acknowledged is missing: on the topics, in ClickHouse, in the trust the projector published.
    const topicEvents = await readEvents(kafka, eventTopics);
    const onTopic = new Set(topicEvents.map((e) => e.event_id));
    const missingInKafka = accepted.filter((e) => !onTopic.has(e.event_id)).length;
    const decisions = accepted.filter((e) => e.type === 'decision').map((e) => e.event_id);
    const { stored, duplicatedRows, waitedMs: caughtUpMs } = await checkStoredDecisions({ dataDir, database: config.clickhouse.database, decisions, timeoutMs: 300_000 });
    const { expected, equalToFold } = await checkTrustEqualsFold(kafka, { eventTopics, trustTopic: config.topics.sessionTrust, timeoutMs: 120_000 });
    const ready = await system.app.inject({ method: 'GET', url: '/readyz' });
    const figure = printFigure('broker-loss', {
      events: accepted.length,
      'killed node': `${victim.nodeId} (led ${led.length} partitions)`,
      'time to leader election ms': electionMs,
      'first 202 after the kill ms': firstAckAfterKillMs,
      'acked while down': acceptedWhileDown,
      'time to full ISR ms (from restart)': isrMs,
      '503 sent before the kill': refusedBeforeKill,
      '503 kill→election': refusedBeforeElection,
      '503 after election': refusedAfterElection.length,
      lost: missingInKafka + (decisions.length - stored),
      'duplicate audit rows': duplicatedRows,
      'trust states = fresh fold': `${equalToFold}/${expected.size}`,
      'audit check waited ms': caughtUpMs,
      seconds: Math.round((Date.now() - started) / 1000),
    });
    assert.equal(refusedAfterElection.length, 0, `no 503 once leaders were elected: ${JSON.stringify(refusedAfterElection.slice(0, 3).map((r) => ({ ...r, afterElectionMs: r.sentMs - electedAt })))}`);
    assert.equal(missingInKafka, 0, 'every acknowledged event is on its topic');
    assert.equal(duplicatedRows, 0, 'no decision stored twice');
    assert.equal(ready.statusCode, 200, `every role ready: ${ready.body}`);
    return figure;
  } finally {
    flowing = false;
    await flow;
    await admin.disconnect().catch(() => undefined);
    await system.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
};
