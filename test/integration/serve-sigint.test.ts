// Ctrl-C as a person gives it: `trustfold serve` with its local broker, SIGINT
// to the whole process group (what a terminal does). Only trustfold should see
// it: the roles stop against a live broker, the broker stops last, no role
// starts a recovery, and no JVM is left behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

// Generous: the first start may format storage; a healthy stop takes a few seconds.
const START_TIMEOUT_MS = 120_000;
const STOP_BOUND_MS = 30_000;

/** Broker JVMs whose command line contains `marker` (Linux /proc); the watchdog names the same file, so `kafka.Kafka` tells them apart. */
const processesWith = (marker: string): number[] => {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(marker) && cmdline.includes('kafka.Kafka')) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
};

test('serve: SIGINT to the process group stops everything cleanly, broker last, no recovery, no JVM left', { timeout: START_TIMEOUT_MS + STOP_BOUND_MS + 30_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-sigint-'));
  const env: Record<string, string | undefined> = { ...process.env, TRUSTFOLD_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info', TRUSTFOLD_PARTITIONS: '2' };
  for (const k of ['KAFKA_BROKERS', 'CLICKHOUSE_URL', 'TRUSTFOLD_JWT_SECRET', 'TRUSTFOLD_JWKS_URL']) delete env[k];
  // detached: the child leads a process group of its own, as a shell job does.
  const child = spawn(process.execPath, ['bin/trustfold.js', 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const jvmMarker = join(dataDir, 'kafka', 'server.properties');
  try {
    const url = await Promise.race([
      (async () => {
        for (;;) {
          const m = /API\s+(http:\/\/\S+)/.exec(out);
          if (m?.[1] !== undefined) return m[1];
          await new Promise((r) => setTimeout(r, 50));
        }
      })(),
      exited.then((e) => Promise.reject(new Error(`serve exited during start (${e.code ?? e.signal}):\n${out}`))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`serve did not start in ${START_TIMEOUT_MS} ms:\n${out}`)), START_TIMEOUT_MS).unref()),
    ]);
    // Every role up (the projector restored, consumers joined) before the signal.
    for (const t0 = Date.now(); ; ) {
      const r = await fetch(`${url}/readyz`).catch(() => undefined);
      if (r?.status === 200) break;
      if (Date.now() - t0 > 60_000) assert.fail(`not ready in 60 s: ${r === undefined ? 'no answer' : await r.text()}\n${out}`);
      await new Promise((r2) => setTimeout(r2, 200));
    }
    const jvms = processesWith(jvmMarker);
    assert.equal(jvms.length, 1, `one broker JVM for ${jvmMarker}`);
    const jvm = jvms[0] ?? 0;
    assert.notEqual(readFileSync(`/proc/${jvm}/stat`, 'utf8').split(') ')[1]?.split(' ')[2], String(child.pid), 'the JVM is not in the terminal process group');

    const pid = child.pid ?? assert.fail('no pid');
    const t0 = Date.now();
    const before = out.length;
    process.kill(-pid, 'SIGINT');
    const result = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_BOUND_MS).unref())]);
    const stopMs = Date.now() - t0;
    assert.notEqual(result, 'timeout', `serve did not exit within ${STOP_BOUND_MS} ms of SIGINT:\n${out}`);
    assert.deepEqual(result, { code: 0, signal: null }, out);
    console.log(`FIGURE serve-sigint: exited 0 ${(stopMs / 1000).toFixed(1)} s after SIGINT to its process group`);

    // The JVM is gone (a moment for the kernel to reap it).
    for (const t1 = Date.now(); processesWith(jvmMarker).length > 0 && Date.now() - t1 < 5_000; ) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(processesWith(jvmMarker), [], 'no broker JVM left');

    // Only what the stop logged: a fresh broker may make a role recover once during start.
    const stopping = out.slice(before);
    const errorLines = stopping.split('\n').filter((l) => {
      if (!l.startsWith('{')) return false;
      try {
        const level: unknown = (JSON.parse(l) as { level?: unknown }).level;
        return typeof level === 'number' && level >= 50;
      } catch {
        return false;
      }
    });
    assert.deepEqual(errorLines, [], `no error-level log lines while stopping:\n${stopping}`);
    assert.doesNotMatch(stopping, /recover/i, 'no role started a recovery while stopping');
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-(child.pid ?? 0), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const p of processesWith(jvmMarker)) process.kill(p, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
});
