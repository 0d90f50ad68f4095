// What the PDP knew vs what was true, end to end: the docs/design.md incident
// through Kafka and the audit sink into embedded ClickHouse, with the gateway
// stamping trust v1 (a PDP whose view had not caught up) on the delete_file
// calls made after the injection and the freeze. The story and the structured
// answer name both states; the allow is the finding. A conflicting copy of an
// allowed call's id is flagged in search and timeline rows.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { DecisionEvent } from '../../schemas/events.ts';
import { createAuditSink, type AuditSink } from '../../services/audit-sink/sink.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { createKafka, partitionKeyOf, sessionKey, topicOf } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { auditRoutes } from '../../services/query/routes.ts';
import { incident } from '../helpers/audit-incident.ts';
import { closeTestClickHouse, freshAuditDatabase } from '../helpers/clickhouse.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
const secret = 'q'.repeat(40);
const inc = incident('acme');
const onV1 = (d: DecisionEvent, patch: Partial<DecisionEvent>): DecisionEvent => ({ ...d, ...patch, decision: { ...d.decision, ...(patch.decision ?? {}), trust_version: 1 } });
const staleDeny = onV1(inc.denied, {});
const staleAllow = onV1(inc.denied, {
  event_id: '01976d2a-9e1b-7c3a-8d4e-0000000000aa',
  occurred_at: '2026-06-09T14:03:20.000Z',
  decision: { ...inc.denied.decision, effect: 'allow', rule_id: 'allow-scoped-write', reasons: ['within token scope'] },
  outcome: { status: 'executed' },
});
const [read] = inc.decisions;
assert.ok(read);
const readConflict: DecisionEvent = { ...read, outcome: { status: 'failed' } };

let broker: TestKafka;
let kafka: Kafka;
let sink: AuditSink;
let app: App;
let reader: ClickHouseClient;
let token: string;

type Lag = { status: string; pdp_version?: number; in_force_version?: number; versions_behind?: number; ms_behind?: number };
type Summary = { version: number; tier: string; causes: { ref: string }[]; freezes: { freeze_id: string }[] };
type Explained = { story: string; trust: { pdp_used: Summary | null; in_force: Summary | null; lag: Lag; finding?: string }; signals: { kind: string }[] };

const getJson = async <T>(url: string): Promise<T> => {
  const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
  return r.json<T>();
};

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'query-stale-test');
  const topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  for (const t of Object.values(topics)) await createTopic(broker.brokers, t, t === topics.deadLetter ? 1 : 3);
  const db = await freshAuditDatabase('stale');
  reader = db.reader;
  const producer = kafka.producer();
  await producer.connect();
  const events = [...inc.signals, read, staleDeny, staleAllow, readConflict];
  for (const e of events) await producer.send({ topic: topicOf(topics, e), acks: -1, messages: [{ key: partitionKeyOf(e), value: codec.encodeEvent(e) }] });
  for (const s of inc.trust) await producer.send({ topic: topics.sessionTrust, acks: -1, messages: [{ key: sessionKey(s.tenant_id, s.session_id), value: codec.encodeTrust(s) }] });
  await producer.disconnect();

  sink = createAuditSink({ kafka, clickhouse: db.writer, database: db.database, topics, groupId: uniqueName('stale-sink'), registry: new Registry(), log: createLogger('test', 'silent') });
  await sink.start();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const rs = await reader.query({
      query:
        `SELECT (SELECT uniqExact(tenant, event_id) FROM ${db.database}.decisions) + (SELECT uniqExact(tenant, event_id) FROM ${db.database}.signals)` +
        ` + (SELECT uniqExact(tenant, session_id, version) FROM ${db.database}.trust_transitions) + (SELECT count() FROM ${db.database}.conflicts) AS n`,
      format: 'JSONEachRow',
    });
    const [row] = await rs.json<{ n: number | string }>();
    if (Number(row?.n) >= 3 + 4 + 3 + 1) break;
    if (Date.now() > deadline) assert.fail(`sink did not deliver: ${Number(row?.n)} rows`);
    await new Promise((r) => setTimeout(r, 150));
  }
  app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(auditRoutes({ clickhouse: reader, database: db.database }));
  await app.ready();
  token = await mintToken({ sub: 'responder', tenant: 'acme', scopes: ['audit:read'] }, secret);
});

after(async () => {
  await app?.close();
  await sink?.stop();
  await closeTestClickHouse();
  await broker?.stop();
});

describe('explain on stale trust', () => {
  test('a deny stamped v1 names the injection signal and the freeze and says the PDP decided on stale trust', async () => {
    const x = await getJson<Explained>(`/v1/audit/decisions/${staleDeny.event_id}`);
    assert.match(
      x.story,
      /denied it by rule deny-destructive-when-degraded because .*; the PDP decided on trust v1 \(trusted\) although the session had been restricted since 14:01:57 after injection signal SIG-INJ-8821 and change freeze INC-77 was in force\.$/,
    );
    assert.deepEqual(x.trust.lag, { status: 'stale', pdp_version: 1, in_force_version: 3, versions_behind: 2, ms_behind: 74_000, stale_since: '2026-06-09T14:01:57.000Z' });
    assert.equal(x.trust.pdp_used?.version, 1);
    assert.equal(x.trust.pdp_used?.tier, 'trusted');
    assert.deepEqual({ v: x.trust.in_force?.version, tier: x.trust.in_force?.tier, causes: x.trust.in_force?.causes.map((c) => c.ref), freezes: x.trust.in_force?.freezes.map((f) => f.freeze_id) }, {
      v: 3,
      tier: 'restricted',
      causes: ['SIG-INJ-8821'],
      freezes: ['INC-77'],
    });
    assert.equal(x.trust.finding, undefined, 'the deny held: no finding');
    assert.deepEqual(x.signals.map((s) => s.kind).sort(), ['change_freeze_raised', 'injection_detected', 'session_started'], 'the signals behind both states');
  });

  test('the same call allowed on v1 is flagged as the finding', async () => {
    const x = await getJson<Explained>(`/v1/audit/decisions/${staleAllow.event_id}`);
    assert.equal(x.trust.finding, 'allowed_on_stale_trust');
    assert.equal(x.trust.lag.status, 'stale');
    assert.equal(x.trust.lag.ms_behind, 83_000);
    assert.match(x.story, /allowed it by rule allow-scoped-write; the PDP decided on trust v1 \(trusted\) although the session had been restricted since 14:01:57 after injection signal SIG-INJ-8821 and change freeze INC-77 was in force\. Outcome: executed\. Finding: the call was allowed on stale trust\.$/);
  });

  test('a call on the version in force is current, and its story has no lag clause', async () => {
    const x = await getJson<Explained>(`/v1/audit/decisions/${read.event_id}`);
    assert.equal(x.trust.lag.status, 'current');
    assert.doesNotMatch(x.story, /the PDP decided on/);
  });
});

describe('conflict flags on rows', () => {
  test('search, export and timeline flag the id with a refused conflicting copy, and only it', async () => {
    const search = await getJson<{ items: (DecisionEvent & { audit: { conflicted: boolean } })[] }>('/v1/audit/decisions?session=S-9');
    assert.deepEqual(
      search.items.map((d) => [d.event_id, d.audit.conflicted]),
      [
        [read.event_id, true],
        [staleDeny.event_id, false],
        [staleAllow.event_id, false],
      ],
    );
    const ndjson = await app.inject({ method: 'GET', url: '/v1/audit/decisions?session=S-9', headers: { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' } });
    const lines = ndjson.body.trim().split('\n').map((l) => JSON.parse(l) as { event_id: string; audit: { conflicted: boolean } });
    assert.deepEqual(lines.filter((l) => l.audit.conflicted).map((l) => l.event_id), [read.event_id]);
    const t = await getJson<{ entries: { kind: string; event_id?: string; conflicted: boolean }[] }>('/v1/audit/sessions/S-9/timeline');
    assert.ok(t.entries.length >= 3 + 3);
    assert.deepEqual(t.entries.filter((e) => e.conflicted).map((e) => e.event_id), [read.event_id]);
    assert.ok(t.entries.every((e) => typeof e.conflicted === 'boolean'));
  });
});
