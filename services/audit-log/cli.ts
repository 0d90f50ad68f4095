// `trustfold audit verify|export`: verify the stored log (a client of the
// operator route), export a session's evidence bundle (a client of the
// timeline and proof routes), verify a bundle offline (no server at all).
// Exit codes: 0 clean, 1 findings or failure, 2 usage, 3 auth.
import { statSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Finding } from './diagnose.ts';
import type { RecordProof } from './evidence.ts';
import { verifyBundle, writeBundle, type BundleReport } from './bundle.ts';
import { verifyExport, type ExportReport } from './export.ts';
import { AUDIT_KEY_PATH } from './routes.ts';
import type { VerifyReport } from './verify.ts';

export type AuditLogCliIo = {
  baseUrl: string;
  /** A bearer token (minted lazily: offline commands never need one). */
  token: () => Promise<string>;
  fetch: typeof fetch;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  now?: () => Date;
};

export const AUDIT_LOG_USAGE = `  trustfold audit verify [--tenant T] [--log TOPIC/PARTITION] [--json]
      verify the stored records against the signed checkpoints (operator token); every
      changed, deleted, inserted or reordered record and a truncated tail, by id and leaf
  trustfold audit export --session S --bundle DIR [--tenant T]
      write the session's records, inclusion proofs, signed checkpoints and public key
  trustfold audit verify --bundle DIR|FILE [--key VERIFIER_KEY]... [--json]
      check a bundle offline (no server), or an NDJSON export made with ?proofs=1
      (a file); --key pins the published key`;

class UsageError extends Error {}

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;
const parse = (args: string[], options: ParseArgsConfig['options']): { values: Values } => {
  try {
    return parseArgs({ args, options: { url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean', default: false }, ...options }, allowPositionals: false, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
};

type Api = { status: number; body: unknown };
const call = async (io: AuditLogCliIo, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Api> => {
  let res: Response;
  try {
    res = await io.fetch(new URL(path, io.baseUrl), {
      method,
      headers: { authorization: `Bearer ${await io.token()}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new UsageError(`cannot reach trustfold at ${io.baseUrl}: ${(e as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: the key route, or an error page
  }
  return { status: res.status, body: parsed };
};

const failed = (io: AuditLogCliIo, what: string, r: Api): number => {
  const e = (r.body as { error?: { code: string; message: string } } | undefined)?.error;
  io.stderr(`${what}: error ${r.status}${e !== undefined ? ` ${e.code}: ${e.message}` : ''}\n`);
  return r.status === 401 || r.status === 403 ? 3 : 1;
};

const where = (f: { leaf_index?: number | undefined; offset?: string | undefined }): string =>
  [f.leaf_index !== undefined ? `leaf ${f.leaf_index}` : undefined, f.offset !== undefined ? `offset ${f.offset}` : undefined].filter((x) => x !== undefined).join(', ');

/** One line per finding: what, which record, where. */
export const formatFindings = (findings: readonly Finding[]): string =>
  findings.map((f) => `  ${f.kind.toUpperCase().padEnd(14)} ${f.log}  ${f.ref ?? '-'}${where(f) !== '' ? `  (${where(f)})` : ''}  ${f.message}\n`).join('');

export const formatVerifyReport = (r: VerifyReport): string => {
  const lines = r.logs.map((l) => `log ${l.log}: checkpoint size ${l.checkpoint_size}, ${l.verified} verified, ${l.duplicates} duplicates, ${l.conflicts} refused conflicting copies, ${l.pending} pending, ${l.findings.length} findings\n`);
  const notes = r.notes.map((n) => `  ${'CONFLICT'.padEnd(14)} ${n.log}  ${n.ref}  (leaf ${n.leaf_index}, offset ${n.offset})  ${n.message}\n`).join('');
  const verdict = r.ok ? 'OK: every stored record matches the signed log\n' : `FAILED: ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}\n${formatFindings(r.findings)}`;
  return `${lines.join('')}${notes !== '' ? `noted (not failures):\n${notes}` : ''}${verdict}`;
};

export const formatBundleReport = (dir: string, r: BundleReport): string => {
  const head = `bundle ${dir}${r.session_id !== undefined ? ` (session ${r.session_id})` : ''}: ${r.verified} of ${r.records} records verified\n`;
  if (r.ok) return `${head}OK: every record is included in a checkpoint signed by the key\n`;
  const rows = r.findings.map((f) => `  ${f.problem.toUpperCase().padEnd(14)} ${f.file}${f.ref !== undefined ? `  ${f.ref}` : ''}${f.leaf_index !== undefined ? `  (leaf ${f.leaf_index} of ${f.log_id ?? '?'})` : ''}  ${f.message}\n`);
  return `${head}FAILED: ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}\n${rows.join('')}`;
};

export const formatExportReport = (file: string, r: ExportReport): string => {
  const head = `export ${file}: ${r.verified} of ${r.records} records verified\n`;
  if (r.ok) return `${head}OK: every record is included in a checkpoint signed by the key\n`;
  const rows = r.findings.map((f) => `  ${f.problem.toUpperCase().padEnd(18)} ${f.line > 0 ? `line ${f.line}` : '-'}${f.ref !== undefined ? `  ${f.ref}` : ''}${f.leaf_index !== undefined ? `  (leaf ${f.leaf_index} of ${f.log_id ?? '?'})` : ''}  ${f.message}\n`);
  return `${head}FAILED: ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}\n${rows.join('')}`;
};

const isFile = (path: string): boolean => {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

type TimelineEntry = { kind: 'decision' | 'signal' | 'trust'; tenant: string; event_id?: string; version?: number };

const exportBundle = async (io: AuditLogCliIo, sessionId: string, dir: string, tenant: string | undefined): Promise<number> => {
  const enc = encodeURIComponent;
  const entries: TimelineEntry[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ limit: '1000' });
    if (tenant !== undefined) q.set('tenant', tenant);
    if (cursor !== null) q.set('cursor', cursor);
    const r = await call(io, 'GET', `/v1/audit/sessions/${enc(sessionId)}/timeline?${q}`);
    if (r.status !== 200) return failed(io, 'timeline', r);
    const page = r.body as { entries: TimelineEntry[]; next_cursor: string | null };
    entries.push(...page.entries);
    cursor = page.next_cursor;
  } while (cursor !== null);
  if (entries.length === 0) {
    io.stderr(`no records of session ${sessionId}${tenant !== undefined ? ` in tenant ${tenant}` : ''}\n`);
    return 1;
  }
  const proofs: RecordProof[] = [];
  const pending: string[] = [];
  for (const e of entries) {
    const path =
      e.kind === 'trust' ? `/v1/audit/sessions/${enc(sessionId)}/transitions/${e.version ?? 0}/proof` : `/v1/audit/${e.kind === 'decision' ? 'decisions' : 'signals'}/${enc(e.event_id ?? '')}/proof`;
    const ref = e.kind === 'trust' ? `${sessionId}#${e.version ?? 0}` : (e.event_id ?? '');
    const r = await call(io, 'GET', `${path}?tenant=${enc(e.tenant)}`);
    if (r.status === 409) {
      pending.push(`${e.kind} ${ref}`);
      continue;
    }
    if (r.status !== 200) return failed(io, `proof of ${e.kind} ${ref}`, r);
    proofs.push(r.body as RecordProof);
  }
  const key = await call(io, 'GET', AUDIT_KEY_PATH);
  if (key.status !== 200 || typeof key.body !== 'string') return failed(io, 'public key', key);
  const keys = key.body.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const m = writeBundle(dir, { sessionId, tenant, exportedAt: (io.now ?? (() => new Date()))().toISOString(), keys, proofs, notCheckpointed: pending });
  io.stdout(`wrote ${dir}: ${m.records.length} records, ${m.checkpoints.length} checkpoints, key ${keys.join(', ')}\n`);
  if (pending.length > 0) {
    io.stderr(`${pending.length} record${pending.length === 1 ? ' was' : 's were'} logged after the latest checkpoint and left out (export again after the next one):\n${pending.map((p) => `  ${p}\n`).join('')}`);
    return 1;
  }
  return 0;
};

/** --url and --token given on the command line win over the environment's. */
const withFlags = (io: AuditLogCliIo, values: { url?: unknown; token?: unknown }): AuditLogCliIo => ({
  ...io,
  ...(typeof values.url === 'string' ? { baseUrl: values.url } : {}),
  ...(typeof values.token === 'string' ? { token: async () => String(values.token) } : {}),
});

/** `trustfold audit verify|export …` (args after `audit`). */
export const runAuditLogCli = async (args: string[], io: AuditLogCliIo): Promise<number> => {
  const [command, ...rest] = args;
  try {
    if (command === 'export') {
      const { values } = parse(rest, { session: { type: 'string' }, bundle: { type: 'string' }, tenant: { type: 'string' } });
      if (values.session === undefined || values.bundle === undefined) throw new UsageError('audit export needs --session S and --bundle DIR');
      return await exportBundle(withFlags(io, values), String(values.session), String(values.bundle), values.tenant as string | undefined);
    }
    if (command === 'verify') {
      const { values } = parse(rest, { bundle: { type: 'string' }, key: { type: 'string', multiple: true }, tenant: { type: 'string' }, log: { type: 'string' } });
      if (values.bundle !== undefined) {
        if (values.tenant !== undefined || values.log !== undefined) throw new UsageError('--bundle verifies the bundle as it is: no --tenant or --log');
        const path = String(values.bundle);
        if (isFile(path)) {
          const e = verifyExport(path, values.key as string[] | undefined);
          io.stdout(values.json === true ? `${JSON.stringify(e, null, 2)}\n` : formatExportReport(path, e));
          return e.ok ? 0 : 1;
        }
        const r = verifyBundle(path, values.key as string[] | undefined);
        io.stdout(values.json === true ? `${JSON.stringify(r, null, 2)}\n` : formatBundleReport(path, r));
        return r.ok ? 0 : 1;
      }
      if (values.key !== undefined) throw new UsageError('--key goes with --bundle');
      const body = { ...(values.tenant !== undefined ? { tenant: String(values.tenant) } : {}), ...(values.log !== undefined ? { log: String(values.log) } : {}) };
      const r = await call(withFlags(io, values), 'POST', '/v1/audit/verify', body);
      if (r.status !== 200) return failed(io, 'audit verify', r);
      const report = r.body as VerifyReport;
      io.stdout(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatVerifyReport(report));
      return report.ok ? 0 : 1;
    }
    throw new UsageError(`unknown audit command "${command ?? ''}" (verify, export)`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`trustfold audit: ${e.message}\n\nusage:\n${AUDIT_LOG_USAGE}\n`);
      return 2;
    }
    throw e;
  }
};
