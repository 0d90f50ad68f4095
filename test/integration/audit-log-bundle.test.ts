// The evidence bundle end to end: the incident flows through the real broker
// into the sink and the log writer (embedded engine), a checkpoint is signed,
// `trustfold audit export` fetches session S-9's timeline and every record's
// proof from the real routes (fetch → app.inject; proofs read from the stored
// tiles), `audit verify --bundle` checks it with no server, and a file edited
// in the bundle is named and fails it. `audit verify` against the server is
// clean, then names a row rewritten in ClickHouse.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka, Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import { generateSignerKey, parseSignerKey, parseVerifierKey, verifierKey } from '../../services/audit-log/note.ts';
import { createRecordReader } from '../../services/audit-log/record-reader.ts';
import { auditLogRoutes } from '../../services/audit-log/routes.ts';
import { createAuditLogStore } from '../../services/audit-log/store.ts';
import { createVerifier } from '../../services/audit-log/verify.ts';
import { createAuditLogWriter } from '../../services/audit-log/writer.ts';
import { createAuditSink } from '../../services/audit-sink/sink.ts';
import { runCli } from '../../services/cli/cli.ts';
import { createAuthenticator } from '../../services/lib/auth.ts';
import { buildBaseApp } from '../../services/lib/http.ts';
import { createKafka, partitionKeyOf, sessionKey } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { auditRoutes } from '../../services/query/routes.ts';
import { closeTestClickHouse, freshAuditDatabase, newClient } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';
import { injectFetch } from '../unit/audit-log-fixture.ts';
import { createTopic, getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
const log = createLogger('test', 'silent');
const ORIGIN = 'trustfold.test/audit';
const SECRET = 'audit-log-bundle-test-secret-0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'trustfold-bundle-'));
let broker: TestKafka;
let kafka: Kafka;
let producer: Producer;

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-log-bundle-test');
  producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
});
after(async () => {
  await producer?.disconnect();
  await closeTestClickHouse();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a session exported as a bundle verifies offline; an edited file is named; server verify names a rewritten row', async () => {
  const topics = { decisions: uniqueName('dec'), signals: uniqueName('sig'), sessionTrust: uniqueName('trust'), deadLetter: uniqueName('dlq') };
  const cpTopic = `${topics.decisions}-cp`;
  await Promise.all([createTopic(broker.brokers, topics.decisions, 2), createTopic(broker.brokers, topics.signals, 2), createTopic(broker.brokers, topics.sessionTrust, 2), createTopic(broker.brokers, topics.deadLetter, 1), createTopic(broker.brokers, cpTopic, 1)]);
  const inc = incident();
  await producer.send({ topic: topics.decisions, acks: -1, messages: inc.decisions.map((d) => ({ key: partitionKeyOf(d), value: codec.encodeEvent(d) })) });
  await producer.send({ topic: topics.signals, acks: -1, messages: inc.signals.map((s) => ({ key: partitionKeyOf(s), value: codec.encodeEvent(s) })) });
  await producer.send({ topic: topics.sessionTrust, acks: -1, messages: inc.trust.map((t) => ({ key: sessionKey(t.tenant_id, t.session_id), value: codec.encodeTrust(t) })) });
  const total = inc.decisions.length + inc.signals.length + inc.trust.length;

  const { database, writer: sinkClient, reader } = await freshAuditDatabase('auditbundle');
  const store = createAuditLogStore(newClient(database), database);
  await store.ensureTables();
  const s = parseSignerKey(generateSignerKey('trustfold-test'));
  assert.ok(s.ok);
  const key = verifierKey(s.signer);
  const v = parseVerifierKey(key);
  assert.ok(v.ok);
  const sink = createAuditSink({ kafka, clickhouse: sinkClient, database, topics, groupId: uniqueName('sink'), registry: new Registry(), log });
  const writer = createAuditLogWriter({ kafka, store, topics, groupId: uniqueName('log'), signer: s.signer, originPrefix: ORIGIN, checkpointTopic: cpTopic, checkpointIntervalMs: 3_600_000, log });
  await sink.start();
  await writer.start();

  const apiClient = newClient(database);
  const apiStore = createAuditLogStore(apiClient, database);
  const app = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
  await app.register(auditRoutes({ clickhouse: newClient(database), database }));
  const verifier = createVerifier({ client: apiClient, database, store: apiStore, verifiers: [v.verifier], originPrefix: ORIGIN });
  await app.register(auditLogRoutes({ store: apiStore, reader: createRecordReader(apiClient, database), verify: verifier.verify, verifierKeys: [key] }));
  await app.ready();
  const fetchFn = injectFetch(app);
  const cli = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCli(argv, { env: { TRUSTFOLD_JWT_SECRET: SECRET, TRUSTFOLD_DATA_DIR: dir }, fetch: fetchFn, stdout: (x) => void (out += x), stderr: (x) => void (err += x) });
    return { code, out, err };
  };

  try {
    const count = async (): Promise<number> => {
      const rs = await reader.query({ query: `SELECT (SELECT count() FROM ${database}.decisions) + (SELECT count() FROM ${database}.signals) + (SELECT count() FROM ${database}.trust_transitions) AS n`, format: 'JSONEachRow' });
      return Number((await rs.json<{ n: string | number }>())[0]?.n ?? 0);
    };
    const logged = async (): Promise<number> => {
      let n = 0;
      for (const l of await store.logs()) n += (await store.logHead(l)).size;
      return n;
    };
    await waitForValue('the sink to store everything', count, (n) => n === total, 60_000);
    await waitForValue('the writer to log everything', logged, (n) => n === total, 60_000);
    await writer.checkpoint();

    const bundle = join(dir, 'S-9');
    const e = await cli('audit', 'export', '--session', 'S-9', '--bundle', bundle, '--tenant', 'acme');
    assert.equal(e.code, 0, e.err);
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { records: string[] };
    assert.ok(manifest.records.length >= inc.decisions.length, `${manifest.records.length} records in the bundle`);
    assert.ok(manifest.records.some((f) => f.includes(inc.denied.event_id)), 'the denied decision is in the bundle');

    // Offline: the server is gone for this check (no fetch at all).
    await app.close();
    const offline = async (...argv: string[]) => {
      let out = '';
      const code = await runCli(argv, { env: { TRUSTFOLD_JWT_SECRET: SECRET, TRUSTFOLD_DATA_DIR: dir }, fetch: (() => assert.fail('no network for an offline verify')) as unknown as typeof fetch, stdout: (x) => void (out += x), stderr: (x) => void (out += x) });
      return { code, out };
    };
    const clean = await offline('audit', 'verify', '--bundle', bundle, '--key', key);
    assert.equal(clean.code, 0, clean.out);
    assert.match(clean.out, new RegExp(`${manifest.records.length} of ${manifest.records.length} records verified`));

    const file = manifest.records.find((f) => f.includes(inc.denied.event_id)) ?? '';
    const original = readFileSync(join(bundle, file), 'utf8');
    writeFileSync(join(bundle, file), original.replace('"effect": "deny"', '"effect": "allow"'));
    assert.notEqual(readFileSync(join(bundle, file), 'utf8'), original, 'the effect was edited');
    const tampered = await offline('audit', 'verify', '--bundle', bundle, '--key', key);
    assert.equal(tampered.code, 1);
    assert.match(tampered.out, new RegExp(`CHANGED +${file.replace(/[.]/g, '\\.')} +${inc.denied.event_id}`));

    // Against the store: clean, then a rewritten effect named by id.
    const app2 = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
    await app2.register(auditLogRoutes({ store: apiStore, reader: createRecordReader(apiClient, database), verify: verifier.verify, verifierKeys: [key] }));
    await app2.ready();
    const serverCli = async (...argv: string[]) => {
      let out = '';
      const f = injectFetch(app2);
      const code = await runCli(argv, { env: { TRUSTFOLD_JWT_SECRET: SECRET, TRUSTFOLD_DATA_DIR: dir }, fetch: f, stdout: (x) => void (out += x), stderr: (x) => void (out += x) });
      return { code, out };
    };
    try {
      const ok = await serverCli('audit', 'verify');
      assert.equal(ok.code, 0, ok.out);
      await sinkClient.command({ query: `ALTER TABLE ${database}.decisions UPDATE effect = 'allow' WHERE event_id = {id:String}`, query_params: { id: inc.denied.event_id }, clickhouse_settings: { mutations_sync: '2' } });
      const bad = await serverCli('audit', 'verify', '--tenant', 'acme');
      assert.equal(bad.code, 1, bad.out);
      assert.match(bad.out, new RegExp(`CHANGED +\\S+ +${inc.denied.event_id} +\\(leaf \\d+`));
    } finally {
      await app2.close();
    }
  } finally {
    await writer.stop();
    await sink.stop();
  }
});
