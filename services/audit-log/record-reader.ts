// Reads audit records back from the sink's tables in the form the leaf rule
// hashes (./records.ts): a whole log's records for verify, or the one record
// at a leaf's Kafka coordinates for a proof. Parameterised SQL only.
import type { ClickHouseClient } from '@clickhouse/client';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import type { DecisionRecord } from '../../schemas/clickhouse/rows.ts';
import type { StoredRecord } from './diagnose.ts';
import type { Coordinates, LeafInput, LeafKind } from '../../schemas/audit-log/leaf.ts';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { READ_SETTINGS_SQL } from './store.ts';
import { decisionLeafOfRecord, leafKey, leafOfEvent, leafOfTrust, signalLeafOfRecord, trustLeafOfRecord, type StoredSignal, type StoredTrust } from '../../schemas/audit-log/records.ts';


/** `<topic>/<partition>` → its parts (topics may hold slashes; the partition is after the last). */
export const splitLogId = (log: string): { topic: string; partition: number } => {
  const at = log.lastIndexOf('/');
  return { topic: log.slice(0, at), partition: Number(log.slice(at + 1)) };
};

type Source = { table: string; columns: string; toLeaf: (row: never) => LeafInput };
const SOURCES: Record<LeafKind, Source> = {
  decision: { table: 'decisions', columns: '*', toLeaf: (r: DecisionRecord) => decisionLeafOfRecord(r) },
  signal: { table: 'signals', columns: 'kafka_topic, kafka_partition, kafka_offset, payload', toLeaf: (r: StoredSignal) => signalLeafOfRecord(r) },
  trust: { table: 'trust_transitions', columns: 'kafka_topic, kafka_partition, kafka_offset, state', toLeaf: (r: StoredTrust) => trustLeafOfRecord(r) },
};

export const createRecordReader = (client: ClickHouseClient, database: string) => {
  const read = async (kind: LeafKind, at: { topic: string; partition: number; offset?: string }, tenant: string | undefined): Promise<LeafInput[]> => {
    const s = SOURCES[kind];
    const rs = await client.query({
      query:
        `SELECT ${s.columns} FROM ${qualified(database, s.table)} WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32}` +
        `${at.offset !== undefined ? ' AND kafka_offset = {offset:UInt64}' : ''}${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''} ORDER BY kafka_offset\n${READ_SETTINGS_SQL}`,
      query_params: { ...at, tenant },
      format: 'JSONEachRow',
    });
    return (await rs.json<never>()).map((r) => s.toLeaf(r));
  };

  /** Every stored record of a log (or of one tenant in it), each with its leaf rebuilt from the row. */
  const recordsOf = async (log: string, tenant: string | undefined): Promise<StoredRecord[]> => {
    const at = splitLogId(log);
    const out: StoredRecord[] = [];
    // One after another: one chdb connection runs one operation at a time.
    for (const kind of ['decision', 'signal', 'trust'] as const) for (const leaf of await read(kind, at, tenant)) out.push({ ...leafKey(leaf), leaf });
    return out;
  };

  /**
   * The refused conflicting copies the sink kept at this log's coordinates
   * (the write-once `conflicts` table), each with the leaf rebuilt from the
   * copy as it was sent: a conflicting later copy is a leaf of its own.
   */
  const conflictsOf = async (log: string, tenant: string | undefined): Promise<(StoredRecord & { firstOffset: string })[]> => {
    const at = splitLogId(log);
    const rs = await client.query({
      query:
        `SELECT namespace, copy, kafka_topic, kafka_partition, kafka_offset, first_topic, first_partition, first_offset FROM ${qualified(database, 'conflicts')}` +
        ` WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32}${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''} ORDER BY kafka_offset LIMIT 1 BY kafka_offset\n${READ_SETTINGS_SQL}`,
      query_params: { ...at, tenant },
      format: 'JSONEachRow',
    });
    type Row = { namespace: string; copy: string; kafka_topic: string; kafka_partition: number; kafka_offset: number | string; first_topic: string; first_partition: number; first_offset: number | string };
    const out: (StoredRecord & { firstOffset: string })[] = [];
    for (const r of await rs.json<Row>()) {
      const coords = { topic: r.kafka_topic, partition: Number(r.kafka_partition), offset: String(r.kafka_offset) };
      let copy: unknown;
      try {
        copy = JSON.parse(r.copy);
      } catch {
        continue; // not JSON: nothing to rebuild a leaf from; the leaf then reports as deleted
      }
      const leaf = r.namespace === 'trust' ? leafOfTrust(copy as SessionTrust, coords) : leafOfEvent(copy as TrustfoldEvent, coords);
      out.push({ ...leafKey(leaf), leaf, firstOffset: String(r.first_offset) });
    }
    return out;
  };

  /** The record of a kind stored at exactly these coordinates (of this tenant), as its leaf input. */
  const recordAt = async (kind: LeafKind, at: Coordinates, tenant: string | undefined): Promise<LeafInput | undefined> => (await read(kind, at, tenant))[0];

  return { recordsOf, recordAt, conflictsOf };
};

export type RecordReader = ReturnType<typeof createRecordReader>;
