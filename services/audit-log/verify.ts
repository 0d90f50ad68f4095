// `audit verify` against the store: for every log, its signed checkpoints
// (signature, origin, and each one's root against the stored leaves), then
// every stored record against the leaves (./diagnose.ts).
import type { ClickHouseClient } from '@clickhouse/client';
import { qualified } from '../../schemas/clickhouse/ddl.ts';
import type { DecisionRecord } from '../../schemas/clickhouse/rows.ts';
import { diagnoseLog, rootsAt, type Finding, type LogReport, type StoredRecord } from './diagnose.ts';
import { equalHash } from './merkle.ts';
import { openCheckpoint, type Verifier } from './note.ts';
import { decisionLeafOfRecord, leafKey, signalLeafOfRecord, trustLeafOfRecord, type StoredSignal, type StoredTrust } from './records.ts';
import type { AuditLogStore } from './store.ts';
import { originOf } from './writer.ts';

export type VerifyReport = { ok: boolean; logs: LogReport[]; findings: Finding[] };

const SETTINGS = { date_time_output_format: 'iso', output_format_json_quote_64bit_integers: 0 } as const;

export const splitLogId = (log: string): { topic: string; partition: number } => {
  const at = log.lastIndexOf('/');
  return { topic: log.slice(0, at), partition: Number(log.slice(at + 1)) };
};

export const createVerifier = (deps: { client: ClickHouseClient; database: string; store: AuditLogStore; verifiers: readonly Verifier[]; originPrefix: string }) => {
  const rows = async <T>(table: string, columns: string, log: string, tenant: string | undefined): Promise<T[]> => {
    const { topic, partition } = splitLogId(log);
    const rs = await deps.client.query({
      query: `SELECT ${columns} FROM ${qualified(deps.database, table)} WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32}${tenant !== undefined ? ' AND tenant = {tenant:String}' : ''} ORDER BY kafka_offset`,
      query_params: { topic, partition, tenant },
      format: 'JSONEachRow',
      clickhouse_settings: SETTINGS,
    });
    return rs.json<T>();
  };

  const recordsOf = async (log: string, tenant: string | undefined): Promise<StoredRecord[]> => {
    const withKey = (leaf: StoredRecord['leaf']): StoredRecord => ({ ...leafKey(leaf), leaf });
    const decisions = (await rows<DecisionRecord>('decisions', '*', log, tenant)).map((r) => withKey(decisionLeafOfRecord(r)));
    const signals = (await rows<StoredSignal>('signals', 'kafka_topic, kafka_partition, kafka_offset, payload', log, tenant)).map((r) => withKey(signalLeafOfRecord(r)));
    const trust = (await rows<StoredTrust>('trust_transitions', 'kafka_topic, kafka_partition, kafka_offset, state', log, tenant)).map((r) => withKey(trustLeafOfRecord(r)));
    return [...decisions, ...signals, ...trust];
  };

  /** Verifies every log (or one), for all tenants or one tenant's records. */
  const verify = async (o: { log?: string | undefined; tenant?: string | undefined } = {}): Promise<VerifyReport> => {
    const logs = o.log !== undefined ? [o.log] : [...new Set([...(await deps.store.logs()), ...(await deps.store.latestCheckpoints()).map((c) => c.log)])].sort();
    const reports: LogReport[] = [];
    for (const log of logs) {
      const checkpoints = await deps.store.checkpointsOf(log);
      const leaves = await deps.store.leaves(log);
      const findings: Finding[] = [];
      const good = checkpoints.filter((c) => {
        const opened = openCheckpoint(c.note, deps.verifiers);
        const problem = !opened.ok ? opened.reason : opened.checkpoint.origin !== originOf(deps.originPrefix, log) ? `origin ${opened.checkpoint.origin} is not this log's` : opened.checkpoint.size !== c.size || !equalHash(opened.checkpoint.root, c.root) ? 'the stored size/root differ from the signed note' : undefined;
        if (problem !== undefined) findings.push({ kind: 'bad_checkpoint', log, message: `checkpoint of size ${c.size}: ${problem}` });
        return problem === undefined;
      });
      const latest = good[good.length - 1];
      if (latest === undefined) {
        if (leaves.length > 0) findings.push({ kind: 'bad_checkpoint', log, message: `no valid signed checkpoint for a log of ${leaves.length} leaves` });
        reports.push({ log, checkpoint_size: 0, leaves: leaves.length, records: 0, verified: 0, duplicates: 0, pending: leaves.length, findings });
        continue;
      }
      // Every earlier checkpoint must be a prefix of the same history.
      const roots = rootsAt(leaves.map((l) => l.hash), good.map((c) => c.size));
      for (const c of good.slice(0, -1)) {
        const r = roots.get(c.size);
        if (r === undefined || !equalHash(r, c.root)) findings.push({ kind: 'log_tampered', log, message: `the stored leaves do not hash to the signed root of size ${c.size}` });
      }
      const scoped = o.tenant !== undefined ? leaves.filter((l) => l.tenant === o.tenant) : leaves;
      const report = diagnoseLog({ log, checkpoint: latest, leaves, records: await recordsOf(log, o.tenant), tenant: o.tenant });
      // A tenant's report names its own records only; the log's integrity findings stay in.
      const own = report.findings.filter((f) => o.tenant === undefined || f.tenant === undefined || f.tenant === o.tenant);
      reports.push({ ...report, leaves: scoped.length, findings: [...findings, ...own] });
    }
    const all = reports.flatMap((r) => r.findings);
    return { ok: all.length === 0, logs: reports, findings: all };
  };

  return { verify };
};
