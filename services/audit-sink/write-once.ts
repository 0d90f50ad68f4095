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

/** Ids per lookup: query parameters travel in the URL of an HTTP server (1 MiB by default). */
const LOOKUP_CHUNK = 1000;

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
    for (let i = 0; i < list.length; i += LOOKUP_CHUNK) {
      const rs = await client.query({ ...storedCopiesSql(database, namespace, list.slice(i, i + LOOKUP_CHUNK)), format: 'JSONEachRow' });
      for (const r of await rs.json<StoredRow>()) {
        const k = identityKey({ tenant: r.tenant, key: r.record_key });
        if (!wanted.has(k)) continue;
        out.set(k, { digest: r.digest, kafka: { topic: r.kafka_topic, partition: Number(r.kafka_partition), offset: String(r.kafka_offset) } });
      }
    }
  }
  return out;
};
