// The real Cerbos PDP decides agent tool calls; its Kafka audit backend writes
// the decision logs; the adapter turns them into trustfold decisions on the
// decisions topic; the audit sink puts them in ClickHouse; and they come out
// of GET /v1/audit/decisions with the right delegator, session, effect and
// policy. Poison on the Cerbos topic goes to the dead-letter topic with its
// reason and the loop keeps going; a redelivered entry is a duplicate, never a
// second decision.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Kafka, Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import { actingAgentOf, delegatorOf, type DecisionEvent } from '../../schemas/events.ts';
import { createAuditSink, type AuditSink } from '../../services/audit-sink/sink.ts';
import { createCerbosAuditConsumer, type CerbosAuditConsumer } from '../../services/adapters/cerbos.ts';
import { adapterConfigFrom } from '../../services/adapters/config.ts';
import { UNMAPPED_MARKER } from '../../services/adapters/mapping.ts';
import { auditRoutes } from '../../services/query/routes.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import type { Topics } from '../../services/lib/config.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { createKafka, DEAD_LETTER_HEADERS } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { closeTestClickHouse, freshAuditDatabase } from '../helpers/clickhouse.ts';
import { createTopic, getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';
import { cerbosBinary, checkResources, startCerbos, unsignedJwt, type CerbosPdp, type ToolCall } from '../helpers/cerbos-pdp.ts';

const binary = cerbosBinary();
const codec = createCodec();
const log = createLogger('adapters-cerbos-test', 'silent');
const secret = 'integration-secret-integration-secret-0123456789';

let broker: TestKafka;
let kafka: Kafka;
let producer: Producer;

const waitFor = async <T>(what: string, probe: () => Promise<T> | T, done: (v: T) => boolean, timeoutMs = 45_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last value ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
};

/** Every record of a topic, decoded, as it arrives. */
const tail = async (topic: string, decode: (v: Buffer | null, headers: Record<string, string>) => void) => {
  const c = kafka.consumer({ groupId: uniqueName('tail') });
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  await c.run({
    eachMessage: async ({ message }) => {
      const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
      decode(message.value, headers);
    },
  });
  return c;
};

const call = (requestId: string, session: string | undefined, tier: string, resources: ToolCall['resources']): ToolCall => ({
  requestId,
  principal: {
    id: 'A-17',
    roles: ['agent'],
    attr: { delegator: 'U-442', agent_version: '3.2', trust_tier: tier, tenant_id: 'acme', ...(session !== undefined ? { session_id: session } : {}) },
  },
  resources,
  auxData: { jwt: { token: unsignedJwt({ sub: 'U-442', jti: 'J-1', scope: 'repo:write repo:read', act: { sub: 'A-17' }, exp: 2_000_000_000 }) } },
});

const gitRepo = (id: string, actions: string[]) => ({ actions, resource: { kind: 'git', id, attr: { args_digest: 'sha256:0f1e' } } });

describe('Cerbos → adapter → decisions topic → audit → GET /v1/audit/decisions', { skip: binary === undefined ? 'no @cerbos/cerbos-linux-x64 binary installed (npm install)' : false }, () => {
  let pdp: CerbosPdp | undefined;
  let adapter: CerbosAuditConsumer | undefined;
  let sink: AuditSink | undefined;
  let app: App | undefined;
  const tails: { disconnect(): Promise<void> }[] = [];

  before(async () => {
    broker = await getTestKafka();
    kafka = createKafka(broker.brokers, 'adapters-cerbos-test');
    producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
  });
  after(async () => {
    await app?.close();
    for (const t of tails) await t.disconnect();
    await adapter?.stop();
    await sink?.stop();
    await pdp?.stop();
    await producer?.disconnect();
    await closeTestClickHouse();
    await broker?.stop();
  });

  test('real Cerbos decisions arrive as trustfold decisions, in ClickHouse and through the query API', { timeout: 180_000 }, async (t) => {
    const cerbosTopic = uniqueName('cerbos-audit');
    const topics: Topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
    await Promise.all([
      createTopic(broker.brokers, cerbosTopic, 3),
      createTopic(broker.brokers, topics.decisions, 3),
      createTopic(broker.brokers, topics.signals, 1),
      createTopic(broker.brokers, topics.sessionTrust, 1),
      createTopic(broker.brokers, topics.deadLetter, 1),
    ]);
    assert.ok(binary);
    pdp = await startCerbos({ brokers: broker.brokers, topic: cerbosTopic, binary });
    t.diagnostic(`cerbos pid ${pdp.pid} at ${pdp.url}`);

    // Poison first: the loop must set it aside and keep going.
    await producer.send({
      topic: cerbosTopic,
      acks: -1,
      messages: [
        { key: 'poison-1', value: '{"callId": "broken', headers: { 'cerbos.audit.kind': 'decision', 'cerbos.audit.encoding': 'json' } },
        { key: 'poison-2', value: 'binary', headers: { 'cerbos.audit.kind': 'decision', 'cerbos.audit.encoding': 'protobuf' } },
        { key: 'access-1', value: '{"callId":"x"}', headers: { 'cerbos.audit.kind': 'access', 'cerbos.audit.encoding': 'json' } },
      ],
    });

    const registry = new Registry();
    const cfg = adapterConfigFrom({ TRUSTFOLD_CERBOS_TOPIC: cerbosTopic, TRUSTFOLD_CERBOS_GROUP_ID: uniqueName('cerbos-adapter'), TRUSTFOLD_CERBOS_PDP_ID: 'cerbos-it' });
    adapter = createCerbosAuditConsumer({ kafka, topics, cerbos: cfg.cerbos, registry, logger: log, produceTimeoutMs: 10_000 });
    await adapter.start();

    const decisions: DecisionEvent[] = [];
    tails.push(
      await tail(topics.decisions, (v) => {
        assert.ok(v);
        const d = codec.decodeEvent(v);
        assert.ok(d.ok, d.ok ? '' : d.error.message);
        assert.equal(d.value.type, 'decision');
        if (d.value.type === 'decision') decisions.push(d.value);
      }),
    );
    const dead: Record<string, string>[] = [];
    tails.push(await tail(topics.deadLetter, (_v, headers) => void dead.push(headers)));
    const raw: Buffer[] = [];
    tails.push(await tail(cerbosTopic, (v, headers) => void (headers['cerbos.audit.kind'] === 'decision' && v && v.toString().includes('checkResources') && raw.push(v))));

    const S = uniqueName('S');
    // Five calls, seven resource × action decisions: allow, deny (degraded), allow (trusted), a fan-out, and one without a session.
    const calls = [
      call('r1', S, 'trusted', [gitRepo('repo:R-payments-ledger', ['read_file'])]),
      call('r2', S, 'degraded', [gitRepo('repo:R-payments-ledger', ['delete_file'])]),
      call('r3', S, 'trusted', [gitRepo('repo:R-docs', ['delete_file'])]),
      call('r4', S, 'degraded', [gitRepo('repo:R-a', ['read_file', 'delete_file']), gitRepo('repo:R-b', ['list_files'])]),
      call('r5', undefined, 'trusted', [gitRepo('repo:R-c', ['read_file'])]),
    ];
    const answers = [];
    for (const c of calls) answers.push(await checkResources(pdp.url, c));
    assert.equal(answers[1]?.results[0]?.actions['delete_file'], 'EFFECT_DENY', 'Cerbos itself denied the degraded delete');
    assert.equal(answers[2]?.results[0]?.actions['delete_file'], 'EFFECT_ALLOW');

    await waitFor('7 decisions on the decisions topic', () => decisions.length, (n) => n >= 7);
    const inSession = decisions.filter((d) => d.session_id === S);
    assert.equal(inSession.length, 6);
    for (const d of decisions) {
      assert.equal(d.tenant_id, 'acme');
      assert.equal(delegatorOf(d.chain)?.id, 'U-442');
      assert.equal(actingAgentOf(d.chain)?.id, 'A-17');
      assert.equal(actingAgentOf(d.chain)?.version, '3.2');
      assert.equal(d.decision.policy_id, 'resource.git.vdefault');
      assert.equal(d.decision.policy_version, 'default');
      assert.equal(d.decision.pdp_id, 'cerbos-it');
      assert.deepEqual(d.token?.scopes, ['repo:write', 'repo:read']);
      assert.equal(d.request.tool, 'git');
    }
    const find = (resource: string, action: string) => decisions.find((d) => d.request.resource === resource && d.request.action === action);
    assert.equal(find('repo:R-payments-ledger', 'read_file')?.decision.effect, 'allow');
    const denied = find('repo:R-payments-ledger', 'delete_file');
    assert.equal(denied?.decision.effect, 'deny');
    assert.equal(denied?.decision.rule_id, 'deny-destructive-when-degraded');
    assert.deepEqual(denied?.decision.reasons, ['session trust is degraded']);
    assert.equal(find('repo:R-docs', 'delete_file')?.decision.effect, 'allow');
    assert.equal(find('repo:R-docs', 'delete_file')?.decision.rule_id, 'allow-delete-when-trusted');
    assert.equal(find('repo:R-a', 'delete_file')?.decision.effect, 'deny');
    assert.equal(find('repo:R-b', 'list_files')?.decision.effect, 'allow');
    // The call without a session is stored, with what is missing listed and counted.
    const partial = find('repo:R-c', 'read_file');
    assert.ok(partial);
    assert.match(partial.session_id, /^unmapped:cerbos:/);
    assert.equal(partial.decision.reasons.at(-1), `${UNMAPPED_MARKER}session_id`);
    assert.match(await registry.metrics(), /trustfold_adapter_unmapped_fields_total\{engine="cerbos",field="session_id"\} 1/);

    await waitFor('2 dead letters', () => dead.length, (n) => n >= 2);
    assert.deepEqual(dead.map((h) => h[DEAD_LETTER_HEADERS.reason]).sort(), ['bad_json', 'unsupported_encoding']);
    assert.ok(dead.every((h) => h[DEAD_LETTER_HEADERS.topic] === cerbosTopic));

    // Redelivery: the same Cerbos record again yields the same event ids, not new decisions.
    await waitFor('raw cerbos records', () => raw.length, (n) => n >= 5);
    const before = decisions.length;
    const first = raw[0];
    assert.ok(first);
    await producer.send({ topic: cerbosTopic, acks: -1, messages: [{ key: 'again', value: first, headers: { 'cerbos.audit.kind': 'decision', 'cerbos.audit.encoding': 'json' } }] });
    await waitFor('the redelivered decisions', () => decisions.length, (n) => n > before);
    const again = decisions.slice(before);
    for (const d of again) assert.ok(decisions.slice(0, before).some((x) => x.event_id === d.event_id), `redelivered ${d.event_id} is a duplicate`);
    assert.equal(new Set(decisions.map((d) => d.event_id)).size, 7);

    // Audit: the sink writes ClickHouse; the query API reads it.
    const { database, writer, reader } = await freshAuditDatabase('adapters');
    sink = createAuditSink({ kafka, clickhouse: writer, database, topics, groupId: uniqueName('sink'), registry: new Registry(), log, subscribe: [topics.decisions] });
    await sink.start();
    app = await buildBaseApp({ auth: createAuthenticator({ secret }), registry: new Registry() });
    await app.register(auditRoutes({ clickhouse: reader, database }));
    await app.ready();
    const token = await mintToken({ sub: 'responder', tenant: 'acme', scopes: ['audit:read'] }, secret);
    type Page = { items: DecisionEvent[]; count: number; next_cursor: string | null };
    const search = async (q: string): Promise<Page> => {
      const r = await app?.inject({ url: `/v1/audit/decisions?${q}`, headers: { authorization: `Bearer ${token}` } });
      assert.equal(r?.statusCode, 200, r?.body);
      return r.json<Page>();
    };
    const page = await waitFor('6 audited decisions of the session', () => search(`session=${encodeURIComponent(S)}&limit=100`), (p) => p.count >= 6);
    assert.equal(page.count, 6, 'the redelivered entry did not add decisions');
    for (const d of page.items) {
      assert.equal(delegatorOf(d.chain)?.id, 'U-442');
      assert.equal(d.session_id, S);
      assert.equal(d.decision.policy_id, 'resource.git.vdefault');
    }
    const deny = await search(`session=${encodeURIComponent(S)}&effect=deny`);
    assert.deepEqual(deny.items.map((d) => `${d.request.resource} ${d.request.action}`).sort(), ['repo:R-a delete_file', 'repo:R-payments-ledger delete_file']);
    assert.deepEqual(deny.items.map((d) => d.decision.rule_id), ['deny-destructive-when-degraded', 'deny-destructive-when-degraded']);
    const byDelegator = await search(`delegator=U-442&policy=resource.git.vdefault&limit=100`);
    assert.equal(byDelegator.count, 7);
  });
});
