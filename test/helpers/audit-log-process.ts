// Runs the audit sink (`services/audit-sink/main.ts`) or the stand-alone log
// writer (`services/audit-log/main.ts`) as a real child process, for the crash
// tests of the tamper-evident log (each test file has its own embedded
// ClickHouse data dir: libchdb binds one per process, first use wins).
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export type Run = { code: number | null; signal: NodeJS.Signals | null; stderr: string };

export const WRITER = join(import.meta.dirname, '../../services/audit-log/main.ts');
export const SINK = join(import.meta.dirname, '../../services/audit-sink/main.ts');
/** About 40 decisions a fetch: many batches per partition, so each kill lands mid-stream. */
export const SMALL_FETCHES = '--max-bytes-per-partition=16384';

export const startWriter = (env: Record<string, string>, args: string[], script = WRITER) => {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<Run>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  /** The exit, or a failure naming what the process printed when it has not exited in time. */
  const exitedWithin = async (ms: number): Promise<Run> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`no exit within ${ms} ms; stdout: ${out.slice(-2000)}; stderr: ${stderr.slice(-2000)}`));
      }, ms);
    });
    try {
      return await Promise.race([exited, late]);
    } finally {
      clearTimeout(timer);
    }
  };
  return { child, exited, exitedWithin, appended: () => (out.match(/audit-log: appended/g) ?? []).length };
};
