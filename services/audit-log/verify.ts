// `audit verify` against the store: for every log, its signed checkpoints
// (signature, origin, and each one's root against the stored leaves), then
// every stored record against the leaves (./diagnose.ts).
import type { ClickHouseClient } from '@clickhouse/client';
import { diagnoseLog, rootsAt, type Finding, type LogReport, type Note } from './diagnose.ts';
import { equalHash } from '../../schemas/audit-log/merkle.ts';
import { openCheckpoint, type Verifier } from './note.ts';
import { createRecordReader } from './record-reader.ts';
import type { AuditLogStore } from './store.ts';
import { originOf } from './writer.ts';

/** `ok` is false on any finding; notes (refused conflicting copies) are reported, not failures. */
export type VerifyReport = { ok: boolean; logs: LogReport[]; findings: Finding[]; notes: Note[] };

export const createVerifier = (deps: { client: ClickHouseClient; database: string; store: AuditLogStore; verifiers: readonly Verifier[]; originPrefix: string }) => {
  const { recordsOf, conflictsOf } = createRecordReader(deps.client, deps.database);

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
        reports.push({ log, checkpoint_size: 0, leaves: leaves.length, records: 0, verified: 0, duplicates: 0, pending: leaves.length, conflicts: 0, findings, notes: [] });
        continue;
      }
      // Every earlier checkpoint must be a prefix of the same history.
      const roots = rootsAt(leaves.map((l) => l.hash), good.map((c) => c.size));
      for (const c of good.slice(0, -1)) {
        const r = roots.get(c.size);
        if (r === undefined || !equalHash(r, c.root)) findings.push({ kind: 'log_tampered', log, message: `the stored leaves do not hash to the signed root of size ${c.size}` });
      }
      const scoped = o.tenant !== undefined ? leaves.filter((l) => l.tenant === o.tenant) : leaves;
      const report = diagnoseLog({ log, checkpoint: latest, leaves, records: await recordsOf(log, o.tenant), conflicts: await conflictsOf(log, o.tenant), tenant: o.tenant });
      // A tenant's report names its own records only; the log's integrity findings stay in.
      const own = report.findings.filter((f) => o.tenant === undefined || f.tenant === undefined || f.tenant === o.tenant);
      reports.push({ ...report, leaves: scoped.length, findings: [...findings, ...own] });
    }
    const all = reports.flatMap((r) => r.findings);
    return { ok: all.length === 0, logs: reports, findings: all, notes: reports.flatMap((r) => r.notes) };
  };

  return { verify };
};
