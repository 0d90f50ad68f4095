// The write-once index's I/O: which copy of each (tenant, id) was stored
// first, and recording new first copies and conflicting ones. The rule itself
// is pure (judgeWriteOnce in ./batch.ts).
import type { ClickHouseClient } from '@clickhouse/client';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import type { RecordIdentity, StoredCopy } from '../../schemas/clickhouse/rows-identity.ts';
import { RECORD_IDS, type RecordNamespace } from '../../schemas/clickhouse/tables.ts';
import { identityKey } from './batch.ts';

export type Sql = { query: string; query_params: Record<string, unknown> };

/**
 * The first stored copy of each of these ids: the lowest (ingest time, Kafka
 * coordinates) in the index, should two sink instances ever have stored one
 * at the same instant. Tenants and keys go in as two sets so the primary key
 * prunes; the caller keeps only the pairs it asked for.
 */
export const storedCopiesSql = (database: string, namespace: RecordNamespace, ids: readonly Pick<RecordIdentity, 'tenant' | 'key'>[]): Sql => ({
  query:
    `SELECT tenant, record_key, digest, kafka_topic, kafka_partition, kafka_offset FROM ${qualified(database, RECORD_IDS.name)}\n` +
    `WHERE namespace = {namespace:String} AND tenant IN {tenants:Array(String)} AND record_key IN {keys:Array(String)}\n` +
    `ORDER BY tenant, record_key, ingested_at, kafka_topic, kafka_partition, kafka_offset\nLIMIT 1 BY tenant, record_key`,
  query_params: { namespace, tenants: [...new Set(ids.map((i) => i.tenant))], keys: [...new Set(ids.map((i) => i.key))] },
});

/**
 * Characters of keys per lookup: query parameters travel in the URL of an
 * HTTP server (1 MiB by default), URL-encoded (a quote is three characters).
 * Each lookup costs a round trip and a pass over the index's key ranges, so
 * a chunk holds as many keys as that budget allows (about 5,000 UUIDs).
 */
const LOOKUP_CHARS = 192 * 1024;

/** Consecutive runs of ids whose keys fit LOOKUP_CHARS together (a lone longer key still gets its own run). */
const chunksOf = (ids: readonly RecordIdentity[]): RecordIdentity[][] => {
  const out: RecordIdentity[][] = [];
  let run: RecordIdentity[] = [];
  let chars = 0;
  for (const id of ids) {
    const n = id.key.length + 4;
    if (run.length > 0 && chars + n > LOOKUP_CHARS) {
      out.push(run);
      run = [];
      chars = 0;
    }
    run.push(id);
    chars += n;
  }
  if (run.length > 0) out.push(run);
  return out;
};

type StoredRow = { tenant: string; record_key: string; digest: string; kafka_topic: string; kafka_partition: number; kafka_offset: string | number };

export const lookupStoredCopies = async (client: ClickHouseClient, database: string, ids: readonly RecordIdentity[]): Promise<Map<string, StoredCopy>> => {
  const out = new Map<string, StoredCopy>();
  const wanted = new Set(ids.map(identityKey));
  const byNamespace = new Map<RecordNamespace, RecordIdentity[]>();
  for (const id of ids) {
    let list = byNamespace.get(id.namespace);
    if (list === undefined) byNamespace.set(id.namespace, (list = []));
    list.push(id);
  }
  for (const [namespace, list] of byNamespace) {
    for (const chunk of chunksOf(list)) {
      const rs = await client.query({ ...storedCopiesSql(database, namespace, chunk), format: 'JSONEachRow' });
      for (const r of await rs.json<StoredRow>()) {
        const k = identityKey({ tenant: r.tenant, key: r.record_key });
        if (!wanted.has(k)) continue;
        out.set(k, { digest: r.digest, kafka: { topic: r.kafka_topic, partition: Number(r.kafka_partition), offset: String(r.kafka_offset) } });
      }
    }
  }
  return out;
};
