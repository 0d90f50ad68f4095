// The forensics API over real data: the docs/design.md incident goes through Kafka
// and the audit sink into embedded ClickHouse (twice for one decision, and
// once more for another tenant); the API answers with the story, in order,
// deduplicated, tenant-isolated and deaf to SQL injection.
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
import { referencedSignalIds } from '../../services/query/repository.ts';
import { auditRoutes } from '../../services/query/routes.ts';
import { TIMELINE_RANK, timelineReferencedSignalsSql, timelineSql, withReadSettings, type Sql } from '../../services/query/sql.ts';
import { incident } from '../helpers/audit-incident.ts';
import { closeTestClickHouse, freshAuditDatabase } from '../helpers/clickhouse.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
const secret = 's'.repeat(40);
const acme = incident('acme');
const globex = incident('globex');
// Globex's story has ids of its own, except the delegator and session names, which collide on purpose.
const globexDecisions: DecisionEvent[] = globex.decisions.map((d, i) => ({ ...d, event_id: `01976d2f-0000-7000-8000-00000000000${i}` }));

let broker: TestKafka;
let kafka: Kafka;
let sink: AuditSink;
let app: App;
let database: string;
let reader: ClickHouseClient;

type Json = Record<string, unknown>;
const tokens: Record<string, string> = {};
const get = async (url: string, as = 'acme', accept?: string) => {
  tokens[as] ??= await mintToken({ sub: `responder-${as}`, tenant: as, scopes: as === '*' ? ['audit:read', 'tenants:all'] : ['audit:read'] }, secret);
  return app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${tokens[as]}`, ...(accept !== undefined ? { accept } : {}) } });
};
const getJson = async <T = Json>(url: string, as = 'acme'): Promise<T> => {
  const r = await get(url, as);
  assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
  return r.json<T>();
};

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'query-api-test');
  const topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  for (const t of Object.values(topics)) await createTopic(broker.brokers, t, t === topics.deadLetter ? 1 : 3);
  const db = await freshAuditDatabase('query');
  database = db.database;
  reader = db.reader;

  const producer = kafka.producer();
  await producer.connect();
  const events = [...acme.signals, ...acme.decisions, acme.denied /* re-delivered by a retrying gateway */, ...globex.signals, ...globexDecisions];
  for (const e of events) await producer.send({ topic: topicOf(topics, e), acks: -1, messages: [{ key: partitionKeyOf(e), value: codec.encodeEvent(e) }] });
  for (const s of [...acme.trust, ...globex.trust]) {
    await producer.send({ topic: topics.sessionTrust, acks: -1, messages: [{ key: sessionKey(s.tenant_id, s.session_id), value: codec.encodeTrust(s) }] });
  }
  await producer.disconnect();

  sink = createAuditSink({ kafka, clickhouse: db.writer, database, topics, groupId: uniqueName('q-sink'), registry: new Registry(), log: createLogger('test', 'silent') });
  await sink.start();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const rs = await reader.query({
      query: `SELECT (SELECT uniqExact(tenant, event_id) FROM ${database}.decisions) + (SELECT uniqExact(tenant, event_id) FROM ${database}.signals) + (SELECT uniqExact(tenant, session_id, version) FROM ${database}.trust_transitions) AS n`,
      format: 'JSONEachRow',
    });
    const [row] = await rs.json<{ n: number | string }>();
    // Distinct events: the re-delivered decision may or may not have merged away yet.
    if (Number(row?.n) >= events.length - 1 + 6) break;
    if (Date.now() > deadline) assert.fail(`sink did not deliver: ${Number(row?.n)} rows`);
    await new Promise((r) => setTimeout(r, 150));
  }

  app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
  await app.register(auditRoutes({ clickhouse: reader, database, exportPageSize: 2 }));
  await app.ready();
});

after(async () => {
  await app?.close();
  await sink?.stop();
  await closeTestClickHouse();
  await broker?.stop();
});

describe('forensics API', () => {
  test('explain: the denied delete_file, the trust state it met, the signals behind it, and the story with every id', async () => {
    const x = await getJson<{
      story: string;
      decision: DecisionEvent;
      trust: { met: { version: number; tier: string }; basis: string };
      signals: { kind: string; event_id: string }[];
      links: { session_timeline: string; delegator_sessions: string; signals: unknown[] };
    }>(`/v1/audit/decisions/${acme.denied.event_id}`);
    for (const idInStory of ['2026-06-09T14:03:11Z', 'A-17', 'v3.2', 'U-442', 'S-9', '`delete_file`', 'R-payments-ledger', 'J-1', '`repo:write`', '14:08', 'P-risk-43', 'version 12', 'deny-destructive-when-degraded', '14:01:57', 'SIG-INJ-8821', 'INC-77']) {
      assert.ok(x.story.includes(idInStory), `story lacks ${idInStory}: ${x.story}`);
    }
    assert.match(x.story, /denied it .* because the session's trust was downgraded to restricted at 14:01:57 after injection signal SIG-INJ-8821 and a change freeze \(incident INC-77\) was in force\.$/);
    assert.equal(x.trust.basis, 'trust_version');
    assert.equal(x.trust.met.version, 3);
    assert.deepEqual(x.signals.map((s) => s.kind).sort(), ['change_freeze_raised', 'injection_detected']);
    const { audit: _audit, ...event } = x.decision as DecisionEvent & { audit: unknown };
    assert.deepEqual(event, acme.denied, 'the decision reads back as the gateway sent it');
    assert.equal(x.links.session_timeline, '/v1/audit/sessions/S-9/timeline');
    assert.equal(x.links.delegator_sessions, '/v1/audit/delegators/U-442/sessions');
  });

  test('timeline: signals, trust transitions and decisions of S-9 in order, the freeze included by reference', async () => {
    const t = await getJson<{ entries: { kind: string; at: string; tenant: string; event_id?: string; version?: number }[]; next_cursor: string | null }>('/v1/audit/sessions/S-9/timeline');
    const seq = t.entries.map((e) => (e.kind === 'trust' ? `trust v${e.version}` : e.kind === 'signal' ? `signal ${e.event_id?.slice(-2)}` : `decision ${e.event_id?.slice(-2)}`));
    assert.deepEqual(seq, ['signal 13', 'signal 01', 'trust v1', 'decision 01', 'decision 02', 'signal 03', 'trust v2', 'signal 09', 'trust v3', 'decision 0e']);
    assert.ok(t.entries.every((e) => e.tenant === 'acme'));
    assert.equal(t.next_cursor, null);

    // Page by page, the same sequence, nothing lost or repeated: with 3 a page the first page lists the
    // transitions' references from its own trust rows (all 3 came back); with 1 it cannot (more transitions
    // than the page) and the engine resolves them; later pages always do.
    for (const limit of [3, 1]) {
      const walked: string[] = [];
      let cursor: string | null = null;
      do {
        const page: { entries: { kind: string; at: string; event_id?: string; version?: number }[]; next_cursor: string | null } = await getJson(
          `/v1/audit/sessions/S-9/timeline?limit=${limit}${cursor !== null ? `&cursor=${cursor}` : ''}`,
        );
        assert.ok(page.entries.length <= limit);
        walked.push(...page.entries.map((e) => `${e.kind}:${e.event_id ?? e.version}`));
        cursor = page.next_cursor;
      } while (cursor !== null);
      assert.deepEqual(walked, t.entries.map((e) => `${e.kind}:${e.event_id ?? e.version}`), `pages of ${limit}`);
    }
  });

  test('a first page\'s split (own signals in the statement, the named ones by id) gives the rows of the engine\'s subquery, flags listed or inline, in a tenant or for an operator', async () => {
    type Ranked = { rank: number; row: string };
    const run = async (sql: Sql): Promise<Ranked[]> => (await reader.query({ ...withReadSettings(sql), format: 'JSONEachRow' })).json<Ranked>();
    const sorted = (rows: Ranked[]): string[] => rows.map((r) => `${r.rank} ${r.row}`).sort();
    for (const flags of ['listed', 'inline'] as const) {
      for (const tenant of ['acme', undefined]) {
        const whole = await run(timelineSql(database, tenant, 'S-9', 101, undefined, flags, 'referenced'));
        const own = await run(timelineSql(database, tenant, 'S-9', 101, undefined, flags, 'own'));
        const trust = own.filter((r) => r.rank === TIMELINE_RANK.trust);
        assert.ok(trust.length > 0 && trust.length < 101, 'every transition came back');
        const mine = new Set(own.filter((r) => r.rank === TIMELINE_RANK.signal).map((r) => (JSON.parse(r.row) as { event_id: string }).event_id));
        const named = trust.flatMap((r) => referencedSignalIds(JSON.parse(r.row) as { caused_by: string; state: string })).filter((id) => !mine.has(id));
        assert.ok(named.length > 0, 'the freeze is named by a transition and is not the session\'s own');
        const byId = await run(timelineReferencedSignalsSql(database, tenant, 'S-9', named, 101, flags));
        assert.ok(byId.length > 0);
        assert.deepEqual(sorted([...own, ...byId]), sorted(whole), `${flags}, ${tenant ?? 'operator'}`);
      }
    }
  });

  test('search: a re-delivered event counts once; pages by cursor; never a silent cap', async () => {
    const all = await getJson<{ items: DecisionEvent[]; next_cursor: string | null }>('/v1/audit/decisions?delegator=U-442');
    assert.deepEqual(all.items.map((d) => d.event_id), acme.decisions.map((d) => d.event_id));
    assert.equal(all.next_cursor, null);

    const first = await getJson<{ items: DecisionEvent[]; next_cursor: string | null }>('/v1/audit/decisions?delegator=U-442&limit=2');
    assert.equal(first.items.length, 2);
    assert.ok(first.next_cursor !== null, 'a truncated page says so');
    const second = await getJson<{ items: DecisionEvent[]; next_cursor: string | null }>(`/v1/audit/decisions?delegator=U-442&limit=2&cursor=${first.next_cursor}`);
    assert.deepEqual(second.items.map((d) => d.event_id), [acme.denied.event_id]);
    assert.equal(second.next_cursor, null);

    const reused = await get(`/v1/audit/decisions?delegator=U-443&limit=2&cursor=${first.next_cursor}`);
    assert.equal(reused.statusCode, 400, 'a cursor is bound to its filters');

    const denies = await getJson<{ items: DecisionEvent[] }>('/v1/audit/decisions?effect=deny&rule=deny-destructive-when-degraded&tool=git&action=delete_file&resource=repo:R-payments-ledger&policy=P-risk-43&agent=A-17&session=S-9&jti=J-1&from=2026-06-09T14:03:00Z&to=2026-06-09T14:04:00Z');
    assert.deepEqual(denies.items.map((d) => d.event_id), [acme.denied.event_id]);
    const desc = await getJson<{ items: DecisionEvent[] }>('/v1/audit/decisions?order=desc');
    assert.equal(desc.items[0]?.event_id, acme.denied.event_id);
  });

  test('NDJSON export streams every match; with a limit the last line is the next cursor', async () => {
    const r = await get('/v1/audit/decisions?delegator=U-442', 'acme', 'application/x-ndjson');
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /application\/x-ndjson/);
    const lines = r.body.trim().split('\n').map((l) => JSON.parse(l) as { event_id: string });
    assert.deepEqual(lines.map((l) => l.event_id), acme.decisions.map((d) => d.event_id), 'three rows over two export pages of 2');

    const capped = await get('/v1/audit/decisions?delegator=U-442&limit=2', 'acme', 'application/x-ndjson');
    const capLines = capped.body.trim().split('\n').map((l) => JSON.parse(l) as { event_id?: string; next_cursor?: string });
    assert.equal(capLines.length, 3);
    assert.ok(typeof capLines[2]?.next_cursor === 'string');
  });

  test('delegator sessions: counts of allows and denies and the last tier', async () => {
    const d = await getJson<{ sessions: { session_id: string; tenant: string; allows: number; denies: number; decisions: number; last_tier: string; agents: string[] }[]; next_cursor: string | null }>(
      '/v1/audit/delegators/U-442/sessions?from=2026-06-08T14:03:11Z',
    );
    assert.deepEqual(d.sessions.map((s) => ({ t: s.tenant, s: s.session_id, a: s.allows, d: s.denies, n: s.decisions, tier: s.last_tier, agents: s.agents })), [
      { t: 'acme', s: 'S-9', a: 2, d: 1, n: 3, tier: 'restricted', agents: ['A-17'] },
    ]);
    assert.equal(d.next_cursor, null);
  });

  test('tenant isolation: acme sees nothing of globex, even with globex ids and shared names', async () => {
    assert.equal((await get(`/v1/audit/decisions/${globexDecisions[2]?.event_id}`)).statusCode, 404);
    assert.equal((await get(`/v1/audit/decisions/${globexDecisions[2]?.event_id}`, 'globex')).statusCode, 200);
    const search = await getJson<{ items: DecisionEvent[] }>('/v1/audit/decisions?delegator=U-442&limit=1000');
    assert.ok(search.items.every((d) => d.tenant_id === 'acme') && search.items.length === 3);
    const timeline = await getJson<{ entries: { tenant: string }[] }>('/v1/audit/sessions/S-9/timeline?limit=1000');
    assert.ok(timeline.entries.every((e) => e.tenant === 'acme'));
    assert.equal((await get('/v1/audit/decisions?tenant=globex')).statusCode, 403);
    const ops = await getJson<{ items: DecisionEvent[] }>('/v1/audit/decisions?delegator=U-442&limit=1000', '*');
    assert.equal(ops.items.length, 6, 'an operator reads every tenant');
    const opsOne = await getJson<{ items: DecisionEvent[] }>('/v1/audit/decisions?delegator=U-442&tenant=globex', '*');
    assert.ok(opsOne.items.length === 3 && opsOne.items.every((d) => d.tenant_id === 'globex'));
  });

  test('SQL injection strings in every filter and path are inert', async () => {
    const hostile = ["' OR 1=1 --", "acme' OR tenant != '", '\\\' OR \'\'=\'', "'); DROP TABLE decisions; --", '{tenant:String}', 'S-9\u0000', '%27%20OR%201%3D1'];
    const filters = ['session', 'delegator', 'agent', 'tool', 'action', 'resource', 'rule', 'policy', 'jti'];
    for (const h of hostile) {
      for (const f of filters) {
        const r = await getJson<{ items: unknown[] }>(`/v1/audit/decisions?${f}=${encodeURIComponent(h)}`);
        assert.equal(r.items.length, 0, `${f}=${h}`);
      }
      const t = await getJson<{ entries: unknown[] }>(`/v1/audit/sessions/${encodeURIComponent(h)}/timeline`);
      assert.equal(t.entries.length, 0);
      const s = await getJson<{ sessions: unknown[] }>(`/v1/audit/delegators/${encodeURIComponent(h)}/sessions`);
      assert.equal(s.sessions.length, 0);
      assert.equal((await get(`/v1/audit/decisions?effect=${encodeURIComponent(h)}`)).statusCode, 400);
    }
    const rs = await reader.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
    const [row] = await rs.json<{ n: number | string }>();
    assert.ok(Number(row?.n) >= 6, 'the table is still there, with its rows');
  });
});
