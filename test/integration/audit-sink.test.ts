// Real broker + embedded ClickHouse: the docs/design.md incident flows through
// Kafka into the audit tables; poison goes to the dead-letter topic without
// holding back the good records around it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Kafka, Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { createAuditSink, type AuditSink } from '../../services/audit-sink/sink.ts';
import { createCodec } from '../../schemas/codec.ts';
import type { Topics } from '../../services/lib/config.ts';
import { createKafka, DEAD_LETTER_HEADERS, partitionKeyOf, sessionKey, topicOf } from '../../services/lib/kafka.ts';
import { createLogger } from '../../services/lib/log.ts';
import { closeTestClickHouse, freshAuditDatabase } from '../helpers/clickhouse.ts';
import { incident } from '../helpers/audit-incident.ts';
import { createAuditTopics, getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';

const codec = createCodec();
const log = createLogger('test', 'silent');

let broker: TestKafka;
let kafka: Kafka;
let producer: Producer;

const newTopics = (): Promise<Topics> => createAuditTopics(broker.brokers);

const waitFor = <T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 30_000): Promise<T> => waitForValue(what, probe, done, timeoutMs);

before(async () => {
  broker = await getTestKafka();
  kafka = createKafka(broker.brokers, 'audit-sink-test');
  producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
});
after(async () => {
  await producer?.disconnect();
  await closeTestClickHouse();
  await broker?.stop();
});

describe('audit sink', () => {
  let sink: AuditSink | undefined;
  after(async () => sink?.stop());

  test('the incident lands in ClickHouse once; poison goes to the dead-letter topic with its reason', async () => {
    const topics = await newTopics();
    const { database, writer, reader } = await freshAuditDatabase('sink');
    const inc = incident();
    const [first, second, denied] = inc.decisions;
    assert.ok(first && second && denied);

    // Good records on both sides of the poison, on one partition (one session key).
    const key = sessionKey('acme', 'S-9');
    await producer.send({
      topic: topics.decisions,
      acks: -1,
      messages: [
        { key, value: codec.encodeEvent(first) },
        { key, value: Buffer.from('not avro at all') },
        { key, value: codec.encode('decision', { ...second, event_id: 'not-a-uuid' }) },
        { key, value: codec.encodeEvent(second) },
        { key, value: codec.encodeEvent(denied) },
      ],
    });
    for (const s of inc.signals) await producer.send({ topic: topicOf(topics, s), acks: -1, messages: [{ key: partitionKeyOf(s), value: codec.encodeEvent(s) }] });
    await producer.send({ topic: topics.sessionTrust, acks: -1, messages: [...inc.trust.map((s) => ({ key, value: codec.encodeTrust(s) })), { key, value: null }] });

    const registry = new Registry();
    const blocks: string[] = [];
    sink = createAuditSink({ kafka, clickhouse: writer, database, topics, groupId: uniqueName('sink'), registry, log, afterInsert: (b) => void blocks.push(b.token) });
    await sink.start();

    const counts = () =>
      reader
        .query({
          query: `SELECT (SELECT count() FROM ${database}.decisions) AS d, (SELECT count() FROM ${database}.signals) AS s, (SELECT count() FROM ${database}.trust_transitions) AS t`,
          format: 'JSONEachRow',
        })
        .then((r) => r.json<{ d: string; s: string; t: string }>())
        .then(([r]) => ({ d: Number(r?.d), s: Number(r?.s), t: Number(r?.t) }));
    const c = await waitFor('rows', counts, (v) => v.d >= 3 && v.s >= 4 && v.t >= 3);
    assert.deepEqual(c, { d: 3, s: 4, t: 3 });

    const rs = await reader.query({
      query: `SELECT event_id, delegator, agent_id, effect, kafka_topic, kafka_partition, toString(kafka_offset) AS off FROM ${database}.decisions ORDER BY occurred_at`,
      format: 'JSONEachRow',
    });
    const rows = await rs.json<{ event_id: string; delegator: string; agent_id: string; effect: string; kafka_topic: string; off: string }>();
    assert.deepEqual(rows.map((r) => r.event_id), inc.decisions.map((d) => d.event_id));
    assert.deepEqual(rows.map((r) => r.off), ['0', '3', '4'], 'offsets of the good records, around the poison');
    assert.ok(rows.every((r) => r.delegator === 'U-442' && r.agent_id === 'A-17' && r.kafka_topic === topics.decisions));
    assert.equal(rows[2]?.effect, 'deny');

    // Dead letters: two, with where they came from and why.
    const dlq = kafka.consumer({ groupId: uniqueName('dlq-reader') });
    await dlq.connect();
    await dlq.subscribe({ topics: [topics.deadLetter], fromBeginning: true });
    const dead: { reason: string; offset: string }[] = [];
    await dlq.run({
      eachMessage: async ({ message }) => {
        dead.push({ reason: String(message.headers?.[DEAD_LETTER_HEADERS.reason]), offset: String(message.headers?.[DEAD_LETTER_HEADERS.offset]) });
      },
    });
    await waitFor('dead letters', () => Promise.resolve(dead.length), (n) => n >= 2);
    await dlq.disconnect();
    assert.deepEqual(dead.sort((a, b) => a.offset.localeCompare(b.offset)), [
      { reason: 'decode_failed', offset: '1' },
      { reason: 'invalid_event', offset: '2' },
    ]);

    // Metrics: rows per table, dead letters, lag back to zero.
    const text = await registry.metrics();
    assert.match(text, /trustfold_audit_sink_rows_total\{table="decisions"\} 3/);
    assert.match(text, /trustfold_audit_sink_rows_total\{table="trust_transitions"\} 3/);
    assert.match(text, /trustfold_audit_sink_dead_letters_total\{topic="[^"]+",reason="decode_failed"\} 1/);
    assert.match(text, /trustfold_audit_sink_consumer_lag\{topic="[^"]+",partition="\d+"\} 0/);
    assert.ok(blocks.every((t) => /^(decisions|signals|trust_transitions)\|/.test(t)), 'dedup tokens name table and topic');
    await sink.stop();
    sink = undefined;
  });

  test('a block re-sent with the same dedup token is dropped by ClickHouse', async () => {
    const { database, writer } = await freshAuditDatabase('dedup');
    const inc = incident();
    const topics = { decisions: 'd', signals: 's', sessionTrust: 't', deadLetter: 'x' };
    const { mapBatch, dedupToken } = await import('../../services/audit-sink/batch.ts');
    const mapped = mapBatch(codec, 'events', topics.decisions, 0, inc.decisions.map((d, i) => ({ offset: String(i), key: null, value: codec.encodeEvent(d) })));
    const block = mapped.tables[0];
    assert.ok(block);
    const { insertColumns } = await import('../../schemas/clickhouse/tables.ts');
    for (let attempt = 0; attempt < 3; attempt++) {
      await writer.insert({
        table: `${database}.decisions`,
        // The rows as the decoding threads encode them (JSONCompactEachRow lines), back to cells for the client's insert.
        values: block.rows.map((line) => JSON.parse(line) as unknown[]),
        columns: insertColumns(block.table) as [string, ...string[]],
        format: 'JSONCompactEachRow',
        clickhouse_settings: { insert_deduplication_token: dedupToken('decisions', 'd', 0, '0', '2') },
      });
    }
    const rs = await writer.query({ query: `SELECT count() AS n FROM ${database}.decisions`, format: 'JSONEachRow' });
    const [row] = await rs.json<{ n: string | number }>();
    assert.equal(Number(row?.n), 3, 'three attempts, one block');
  });
});
