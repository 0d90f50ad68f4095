// Scenario 2, broker restart mid-run: every role runs in this process against
// a broker that is stopped and started again on the same data while events
// flow. While it is down ingest answers 503 + Retry-After; the roles reconnect
// by themselves; afterwards every accepted event is in Kafka and ClickHouse,
// and the published trust equals a fresh fold of the topics.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { TrustfoldEvent } from '../../../schemas/events.ts';
import { mintToken } from '../../../services/lib/auth.ts';
import { configFrom } from '../../../services/lib/config.ts';
import { createKafka } from '../../../services/lib/kafka.ts';
import { createLogger } from '../../../services/lib/log.ts';
import { startSystem } from '../../helpers/system.ts';
import { createWorkload, printFigure, readEvents, SECRET, REL_ACTOR, REL_SCOPES, sleep, tempDir, uniqueEnv, type Figure, type TestBroker } from '../harness.ts';
import { checkStoredDecisions, checkTrustEqualsFold } from '../checks.ts';

export type BrokerRestartOptions = { broker: TestBroker; eventsBefore: number; downMs: number; eventsAfter: number; log?: (s: string) => void };

export const runBrokerRestartScenario = async (o: BrokerRestartOptions): Promise<Figure> => {
  assert.ok(o.broker.restartable, 'needs a broker of its own');
  const started = Date.now();
  const dataDir = tempDir('trustfold-rel-restart-');
  const env: Record<string, string> = { ...uniqueEnv(o.broker.brokers, 3), TRUSTFOLD_DATA_DIR: dataDir, TRUSTFOLD_PRODUCE_TIMEOUT_MS: '1500' };
  const config = configFrom(env);
  const system = await startSystem({ config, roles: new Set(['ingest', 'projector', 'audit-sink', 'query']), brokers: o.broker.brokers, logger: createLogger('rel', process.env.RELIABILITY_LOG ?? 'silent'), env, listen: false });
  const token = await mintToken({ sub: REL_ACTOR, tenant: 'acme', scopes: REL_SCOPES, ttlSeconds: 3600 }, SECRET);
  const workload = createWorkload({ tenant: 'acme', sessions: 50, signalEvery: 9 });
  const accepted: TrustfoldEvent[] = [];
  const refused: { status: number; retryAfter: string; code: string }[] = [];
  let restartedAt = 0;
  let firstAcceptAfterRestart = 0;
  // Like a gateway (and the emitter client): a refused batch is sent again,
  // the same events, until it is accepted. A refused send may still land
  // later (Kafka cannot cancel a produce in flight); the event ids make the
  // second copy harmless.
  let retry: TrustfoldEvent[] | undefined;
  const post = async (): Promise<void> => {
    const batch = retry ?? workload.batch(200);
    const r = await system.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${token}` }, payload: batch });
    if (r.statusCode === 202) {
      retry = undefined;
      accepted.push(...batch);
      if (restartedAt > 0 && firstAcceptAfterRestart === 0) firstAcceptAfterRestart = Date.now();
      return;
    }
    retry = batch;
    assert.equal(r.statusCode, 503, `only 202 or 503, got ${r.statusCode}: ${r.body}`);
    refused.push({ status: r.statusCode, retryAfter: String(r.headers['retry-after'] ?? ''), code: r.json<{ error: { code: string } }>().error.code });
    await sleep(200);
  };
  try {
    while (accepted.length < o.eventsBefore) await post();
    o.log?.(`${accepted.length} accepted; stopping the broker`);
    await o.broker.kill();
    o.log?.('broker stopped');
    const downSince = Date.now();
    const refusedBefore = refused.length;
    while (Date.now() - downSince < o.downMs) await post();
    const refusedWhileDown = refused.length - refusedBefore;
    o.log?.(`${refused.length - refusedBefore} refused while down; starting the broker`);
    await o.broker.start();
    o.log?.('broker back');
    restartedAt = Date.now();
    const target = accepted.length + o.eventsAfter;
    while (accepted.length < target) {
      await post();
      if (Date.now() - restartedAt > 120_000) assert.fail('ingest did not recover within 120 s of the restart');
    }
    const ingestRecoveryMs = firstAcceptAfterRestart - restartedAt;
    o.log?.(`ingest recovered ${ingestRecoveryMs} ms after the broker was back; ${refusedWhileDown} requests refused while down`);
    assert.ok(refusedWhileDown >= 1, 'requests while the broker was down were refused');
    assert.ok(refused.every((x) => x.retryAfter !== '' && ['kafka_timeout', 'kafka_unavailable'].includes(x.code)), `503s carry Retry-After: ${JSON.stringify(refused.slice(0, 3))}`);

    // Nothing accepted is missing: on the topics, in ClickHouse, and in the trust the projector published.
    const kafka = createKafka(o.broker.brokers, `${config.kafka.clientId}-check`);
    const topicEvents = await readEvents(kafka, [config.topics.decisions, config.topics.signals]);
    const onTopic = new Set(topicEvents.map((e) => e.event_id));
    const missingInKafka = accepted.filter((e) => !onTopic.has(e.event_id)).length;
    assert.equal(missingInKafka, 0, 'every accepted event is on its topic');
    const decisions = accepted.filter((e) => e.type === 'decision').map((e) => e.event_id);
    const { stored, duplicatedRows, waitedMs: caughtUpMs } = await checkStoredDecisions({ dataDir, database: config.clickhouse.database, decisions, timeoutMs: 180_000 });
    const { finalEvents, expected, published, equalToFold } = await checkTrustEqualsFold(kafka, { eventTopics: [config.topics.decisions, config.topics.signals], trustTopic: config.topics.sessionTrust, timeoutMs: 60_000 });
    const ready = await system.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200, `every role ready again: ${ready.body}`);
    assert.equal(duplicatedRows, 0, 'no decision stored twice');
    return printFigure('broker-restart', {
      events: accepted.length,
      'down ms': o.downMs,
      '503 while down': refusedWhileDown,
      'ingest recovery ms': ingestRecoveryMs,
      'audit check waited ms': caughtUpMs,
      lost: missingInKafka + (decisions.length - stored),
      duplicated: duplicatedRows,
      'trust states = fresh fold': `${equalToFold}/${expected.size}`,
      'sessions published': published.size,
      'second copies on the topics (refused sends that landed, re-sent)': finalEvents.length - new Set(finalEvents.map((e) => e.event_id)).size,
      seconds: Math.round((Date.now() - started) / 1000),
    });
  } finally {
    await system.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
};
