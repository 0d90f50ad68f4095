// Real broker + embedded ClickHouse: the audit is write-once per (tenant, id).
// A forged re-send never replaces the first copy — not before a merge, not
// after OPTIMIZE FINAL, on no read path — and is kept as evidence; a re-read
// of the same offsets is no conflict; records spread over more months than
// one insert may touch all land; an operator is never shown another tenant's
// copy of an id as the one asked for.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Kafka, Producer } from 'kafkajs';
import { Registry, type Counter } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent, SignalEvent } from '../../schemas/events.ts';
import { createAuditSink, type AuditSink } from '../../services/audit-sink/sink.ts';
import { DEFAULT_OPA_CONVENTION, mapOpaEvent } from '../../services/adapters/mapping.ts';
import { createDecisionWriter } from '../../services/adapters/writer.ts';
import type { Topics } from '../../services/lib/config.ts';
import { createKafka, partitionKeyOf, topicOf } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp } from '../../services/lib/http.ts';
import { AmbiguousTenantError, createAuditRepository } from '../../services/query/repository.ts';
import { auditRoutes } from '../../services/query/routes.ts';
import { incident } from '../helpers/audit-incident.ts';
import { closeTestClickHouse, freshAuditDatabase, newClient } from '../helpers/clickhouse.ts';
import { createAuditTopics, getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';
import { opaEvent } from '../unit/adapters-fixtures.ts';

const codec = createCodec();
const log = createLogger('test', (process.env['TEST_LOG'] ?? 'silent') as 'silent');

let broker: TestKafka;
let kafka: Kafka;
let producer: Producer;
const sinks: AuditSink[] = [];

const newTopics = (): Promise<Topics> => createAuditTopics(broker.brokers);

const waitFor = <T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => waitForValue(what, probe, done, timeoutMs);

const send = async (topics: Topics, events: readonly (DecisionEvent | SignalEvent)[]): Promise<void> => {
  for (const e of events) await producer.send({ topic: topicOf(topics, e), acks: -1, messages: [{ key: partitionKeyOf(e), value: codec.encodeEvent(e) }] });
};

const startSink = async (topics: Topics, writer: Parameters<typeof createAuditSink>[0]['clickhouse'], database: string, registry: Registry): Promise<AuditSink> => {
  const sink = createAuditSink({ kafka, clickhouse: writer, database, topics, groupId: uniqueName('sink'), registry, log });
  sinks.push(sink);
  await sink.start();
  return sink;
};

const counter = async (registry: Registry, name: string): Promise<number> => {
  const m = registry.getSingleMetric(name) as Counter | undefined;
  if (m === undefined) return 0;
  return (await m.get()).values.reduce((s, v) => s + v.value, 0);
};

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-write-once-test');
  producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
});
after(async () => {
  for (const s of sinks) await s.stop().catch(() => undefined);
  await producer?.disconnect();
  await closeTestClickHouse();
  await broker?.stop();
});

describe('write-once audit', () => {
  test('a forged re-send (allow for a deny, another time or session, a changed signal, an OPA re-upload) never becomes the record; identical copies are harmless; a re-read is no conflict', { timeout: 180_000 }, async () => {
    const topics = await newTopics();
    const { database, writer, reader } = await freshAuditDatabase('once');
    const repo = createAuditRepository(reader, database);
    const inc = incident();
    const denied = inc.denied;
    const injection = inc.signals.find((s) => s.kind === 'injection_detected');
    assert.ok(injection);

    // The OPA path: ids derive from decision_id, so a re-upload with another result carries the same id.
    const opaOpts = { convention: DEFAULT_OPA_CONVENTION, callerTenant: 'acme', defaultTenant: 'default', emittedBy: 'opa-uploader', receivedAt: '2026-06-09T15:00:00.000Z' };
    const opaFirst = mapOpaEvent(opaEvent({ decision_id: 'dec-opa-1' }), opaOpts);
    const opaForged = mapOpaEvent(opaEvent({ decision_id: 'dec-opa-1', result: { allow: true, rule_id: 'allow-all', reasons: ['forged'] } }), opaOpts);
    assert.ok(opaFirst.ok && opaForged.ok);
    assert.equal(opaForged.value.event.event_id, opaFirst.value.event.event_id);
    assert.notEqual(opaForged.value.event.decision.effect, opaFirst.value.event.decision.effect);

    const forgedAllow: DecisionEvent = { ...denied, decision: { ...denied.decision, effect: 'allow', rule_id: 'allow-everything', reasons: ['forged'] } };
    const elsewhere: DecisionEvent = { ...denied, session_id: 'S-other', occurred_at: '2026-07-01T00:00:00.000Z' };
    const changedSignal: SignalEvent = { ...injection, severity: 'low' } as SignalEvent;

    // First copies, then (after they are stored) the copies.
    await send(topics, [...inc.decisions, ...inc.signals]);
    const opa = createDecisionWriter({ kafka, topic: topics.decisions, timeoutMs: 10_000 });
    await opa.write([opaFirst.value.event]);
    const registry = new Registry();
    await startSink(topics, writer, database, registry);
    const decisionCount = async (): Promise<number> => {
      const rs = await reader.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
      return Number((await rs.json<{ n: string }>())[0]?.n);
    };
    await waitFor('first copies', decisionCount, (n) => n === inc.decisions.length + 1);

    await send(topics, [forgedAllow, elsewhere, changedSignal, denied /* identical: a duplicate */]);
    await opa.write([opaForged.value.event, opaFirst.value.event /* identical */]);
    await opa.close();
    const conflicts = await waitFor('conflicts counted', () => counter(registry, 'trustfold_audit_sink_conflicts_total'), (n) => n >= 4);
    assert.equal(conflicts, 4, 'forged allow, other time/session, changed signal, forged OPA result');
    assert.equal(await waitFor('duplicates counted', () => counter(registry, 'trustfold_audit_sink_duplicates_total'), (n) => n >= 2), 2);

    // After merges too.
    for (const t of ['decisions', 'signals', 'record_ids', 'conflicts']) await writer.command({ query: `OPTIMIZE TABLE ${database}.${t} FINAL` });

    const checkReads = async (): Promise<void> => {
      assert.equal(await decisionCount(), inc.decisions.length + 1, 'no copy became a row');
      const x = await repo.decisionById('acme', denied.event_id);
      assert.equal(x?.decision.effect, 'deny');
      assert.equal(x?.session_id, 'S-9');
      assert.equal(x?.audit.conflicts?.length, 2, 'the forged allow and the other-session copy, shown beside the record');
      assert.ok(x?.audit.conflicts?.every((c) => c.kafka.topic === topics.decisions));
      const copies = (x?.audit.conflicts ?? []).map((c) => c.copy as DecisionEvent);
      assert.deepEqual(copies.map((c) => c.decision.effect).sort(), ['allow', 'deny']);
      assert.ok(copies.some((c) => c.session_id === 'S-other'));

      const search = await repo.searchDecisions('acme', {}, { limit: 100, order: 'asc' });
      const mine = search.items.filter((d) => d.event_id === denied.event_id);
      assert.deepEqual(mine.map((d) => [d.decision.effect, d.session_id]), [['deny', 'S-9']]);
      assert.equal(search.items.find((d) => d.event_id === opaFirst.value.event.event_id)?.decision.effect, 'deny', 'the first OPA upload stands');
      assert.equal((await repo.searchDecisions('acme', { session: 'S-other' }, { limit: 10, order: 'asc' })).items.length, 0);

      const timeline = await repo.timeline('acme', 'S-9', 100);
      const tDecision = timeline.items.filter((e) => e.kind === 'decision' && e.event_id === denied.event_id);
      assert.equal(tDecision.length, 1);
      const tSignal = timeline.items.find((e) => e.kind === 'signal' && e.event_id === injection.event_id);
      assert.ok(tSignal?.kind === 'signal');
      assert.deepEqual(tSignal.signal, injection, 'the first signal, not the changed copy');

      const sessions = await repo.delegatorSessions('acme', 'U-442', {}, 10);
      const s9 = sessions.items.find((s) => s.session_id === 'S-9');
      assert.equal(s9?.denies, inc.decisions.filter((d) => d.decision.effect === 'deny').length + 1, 'the incident denies + the OPA deny, no forged allow');
      assert.equal(sessions.items.some((s) => s.session_id === 'S-other'), false);
    };
    await checkReads();

    // A second sink re-reading every offset from the start (a crash that lost all commits): replays, no new evidence.
    const again = new Registry();
    await startSink(topics, writer, database, again);
    const expectedRecords = inc.decisions.length + inc.signals.length + 1;
    assert.equal(await waitFor('first copies re-read', () => counter(again, 'trustfold_audit_sink_replays_total'), (n) => n >= expectedRecords), expectedRecords);
    await waitFor('copies re-judged', async () => (await counter(again, 'trustfold_audit_sink_conflicts_total')) + (await counter(again, 'trustfold_audit_sink_duplicates_total')), (n) => n >= 6);
    assert.equal(await counter(again, 'trustfold_audit_sink_rows_total'), 0, `none of the ${expectedRecords} first copies is stored again`);
    assert.equal(await counter(again, 'trustfold_audit_sink_conflicts_total'), 4, 'the same four copies conflict; no first copy conflicts with itself');
    const rs = await reader.query({ query: `SELECT count() AS n FROM ${database}.conflicts FINAL`, format: 'JSONEachRow' });
    assert.equal(Number((await rs.json<{ n: string }>())[0]?.n), 4, 'the evidence is one row per refused copy');
    await checkReads();
  });

  for (const [how, budget, beside] of [
    ['with the write-once filter read before joining', undefined, false],
    ['with the filter read on its own connection beside consuming', undefined, true],
    ['with the filter dropped past its memory budget', 1, false],
  ] as const)
  test(`two sink instances in one group, ${how}: a forged copy on the other instance's partition, sent after both started and the first copy was stored, is a conflict there`, { timeout: 120_000 }, async () => {
    const topics = await newTopics();
    const { database, writer, reader } = await freshAuditDatabase('once_two');
    const groupId = uniqueName('sink-pair');
    const owned = [new Set<number>(), new Set<number>()];
    const registries = [new Registry(), new Registry()];
    for (const i of [0, 1]) {
      const sink = createAuditSink({
        kafka, clickhouse: writer, database, topics, groupId, registry: registries[i] as Registry, log,
        consumer: { sessionTimeoutMs: 6_000 },
        ...(budget !== undefined ? { writeOnceFilterMaxBytes: budget } : {}),
        ...(beside ? { indexClient: newClient(database) } : {}),
        onAssigned: (a) => {
          owned[i] = new Set(a[topics.decisions] ?? []);
        },
      });
      sinks.push(sink);
      await sink.start();
    }
    // Both members hold partitions of the decisions topic (3 of them), and neither holds the other's.
    await waitFor('both sinks assigned', async () => owned.map((o) => o.size), (n) => (n[0] ?? 0) > 0 && (n[1] ?? 0) > 0 && (n[0] ?? 0) + (n[1] ?? 0) === 3);
    const [pA] = [...(owned[0] ?? [])];
    const [pB] = [...(owned[1] ?? [])];
    assert.ok(pA !== undefined && pB !== undefined);

    const first = incident().denied;
    const forged: DecisionEvent = { ...first, decision: { ...first.decision, effect: 'allow', rule_id: 'allow-everything', reasons: ['forged'] } };
    const sendTo = (partition: number, e: DecisionEvent) => producer.send({ topic: topics.decisions, acks: -1, messages: [{ partition, key: partitionKeyOf(e), value: codec.encodeEvent(e) }] });
    await sendTo(pA, first);
    const count = async (): Promise<number> => {
      const rs = await reader.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
      return Number((await rs.json<{ n: string }>())[0]?.n);
    };
    await waitFor('the first copy stored by the first instance', count, (n) => n === 1);
    await sendTo(pB, forged);
    await sendTo(pB, first);
    assert.equal(await waitFor('the forged copy refused by the second instance', () => counter(registries[1] as Registry, 'trustfold_audit_sink_conflicts_total'), (n) => n >= 1), 1);
    assert.equal(await waitFor('the identical copy dropped by the second instance', () => counter(registries[1] as Registry, 'trustfold_audit_sink_duplicates_total'), (n) => n >= 1), 1);
    const bytes = await counter(registries[1] as Registry, 'trustfold_audit_sink_filter_bytes');
    if (budget === undefined) assert.ok(bytes > 0, 'the second instance judged with its filter');
    else assert.equal(bytes, 0, 'the second instance let its filter go and looked the id up');
    await writer.command({ query: `OPTIMIZE TABLE ${database}.decisions FINAL` });
    assert.equal(await count(), 1);
    const rs = await reader.query({ query: `SELECT effect FROM ${database}.decisions`, format: 'JSONEachRow' });
    assert.deepEqual(await rs.json(), [{ effect: 'deny' }]);
  });

  test('an id in upper case is the same id: a forged copy under it is refused as a conflict, an identical one is a duplicate', { timeout: 120_000 }, async () => {
    const topics = await newTopics();
    const { database, writer, reader } = await freshAuditDatabase('once_case');
    const repo = createAuditRepository(reader, database);
    const { denied } = incident();
    const shouted = denied.event_id.toUpperCase();
    assert.notEqual(shouted, denied.event_id);
    // A producer writing to Kafka directly (past ingest) sends the ids as it likes.
    const forged: DecisionEvent = { ...denied, event_id: shouted, decision: { ...denied.decision, effect: 'allow', rule_id: 'allow-everything', reasons: ['forged'] } };
    await send(topics, [denied]);
    const registry = new Registry();
    await startSink(topics, writer, database, registry);
    await waitFor('the first copy', () => counter(registry, 'trustfold_audit_sink_rows_total'), (n) => n >= 1);
    await send(topics, [forged, { ...denied, event_id: shouted }]);
    assert.equal(await waitFor('the forged copy refused', () => counter(registry, 'trustfold_audit_sink_conflicts_total'), (n) => n >= 1), 1);
    assert.equal(await waitFor('the identical copy skipped', () => counter(registry, 'trustfold_audit_sink_duplicates_total'), (n) => n >= 1), 1);
    const rs = await reader.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
    assert.equal(Number((await rs.json<{ n: string }>())[0]?.n), 1, 'one row for the id');
    const x = await repo.decisionById('acme', denied.event_id);
    assert.equal(x?.decision.effect, 'deny');
    assert.equal(x?.audit.conflicts?.length, 1, 'the forged copy is kept as evidence beside the record');
  });

  test('an operator looking an id up without a tenant is never shown another tenant\'s copy as the one asked for', { timeout: 120_000 }, async () => {
    const topics = await newTopics();
    const { database, writer, reader } = await freshAuditDatabase('optenant');
    const repo = createAuditRepository(reader, database);
    const acme = incident('acme').denied;
    const globex: DecisionEvent = { ...incident('globex').denied, decision: { ...acme.decision, effect: 'allow' } };
    const solo: DecisionEvent = { ...incident('acme').decisions[0] } as DecisionEvent;
    assert.equal(acme.event_id, globex.event_id);
    await send(topics, [acme, globex, solo]);
    await startSink(topics, writer, database, new Registry());
    await waitFor('both tenants stored', async () => (await repo.searchDecisions(undefined, {}, { limit: 10, order: 'asc' })).items.length, (n) => n === 3);

    await assert.rejects(repo.decisionById(undefined, acme.event_id), (e: unknown) => {
      assert.ok(e instanceof AmbiguousTenantError);
      assert.equal(e.statusCode, 409);
      assert.deepEqual([...e.tenants].sort(), ['acme', 'globex']);
      return true;
    });
    assert.equal((await repo.decisionById('acme', acme.event_id))?.decision.effect, 'deny');
    assert.equal((await repo.decisionById('globex', acme.event_id))?.decision.effect, 'allow');
    assert.equal((await repo.decisionById(undefined, solo.event_id))?.tenant_id, 'acme', 'an id one tenant holds is unambiguous');

    // Over HTTP: 409 naming the tenants, and the right one with ?tenant=.
    const secret = 'w'.repeat(40);
    const app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
    await app.register(auditRoutes({ clickhouse: reader, database }));
    await app.ready();
    try {
      const operator = await mintToken({ sub: 'operator-1', tenant: '*', scopes: ['audit:read', 'tenants:all'] }, secret);
      const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${operator}` } });
      const ambiguous = await get(`/v1/audit/decisions/${acme.event_id}`);
      assert.equal(ambiguous.statusCode, 409, ambiguous.body);
      const body = ambiguous.json<{ error: { code: string; message: string } }>();
      assert.equal(body.error.code, 'ambiguous_tenant');
      assert.match(body.error.message, /acme, globex/);
      assert.doesNotMatch(ambiguous.body, /"effect"/, 'neither copy is shown');
      const named = await get(`/v1/audit/decisions/${acme.event_id}?tenant=globex`);
      assert.equal(named.statusCode, 200);
      assert.equal(named.json<{ decision: DecisionEvent }>().decision.tenant_id, 'globex');
    } finally {
      await app.close();
    }
  });
});

describe('the sink never stalls', () => {
  test('a batch spread over 120 months (more than one insert may touch) is stored whole, nothing dead-lettered', { timeout: 240_000 }, async () => {
    const topics = await newTopics();
    const { database, writer, reader } = await freshAuditDatabase('months', 10_000);
    const base = incident().denied;
    const events: DecisionEvent[] = Array.from({ length: 120 }, (_, i) => {
      const month = new Date(Date.UTC(2016, i, 15, 12, 0, 0));
      return { ...base, event_id: `01976d2a-9e1b-7c3a-8d4e-${String(i).padStart(12, '0')}`, occurred_at: month.toISOString() };
    });
    // One send: one partition, one Kafka batch, one block per month on the way in.
    await producer.send({ topic: topics.decisions, acks: -1, messages: events.map((e) => ({ key: partitionKeyOf(e), value: codec.encodeEvent(e) })) });
    const registry = new Registry();
    await startSink(topics, writer, database, registry);
    const stored = await waitFor(
      'all 120 months',
      async () => {
        const rs = await reader.query({ query: `SELECT count() AS n, uniqExact(toYYYYMM(occurred_at)) AS months FROM ${database}.decisions`, format: 'JSONEachRow' });
        const [r] = await rs.json<{ n: string; months: string }>();
        return { n: Number(r?.n), months: Number(r?.months) };
      },
      (v) => v.n >= 120,
      150_000, // each month is a part of its own: the embedded engine takes its time
    );
    assert.deepEqual(stored, { n: 120, months: 120 });
    assert.equal(await counter(registry, 'trustfold_audit_sink_dead_letters_total'), 0);

    const admin = kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topics.deadLetter);
    await admin.disconnect();
    assert.ok(offsets.every((p) => p.high === p.low), `no dead letter: ${JSON.stringify(offsets)}`);
  });
});
