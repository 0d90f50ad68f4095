// The JVMs must never outlive the Node process that started them:
//   - stop() sends SIGTERM, then SIGKILL after a grace period (launch.ts);
//   - 'exit', SIGINT and SIGTERM handlers of this process signal every live JVM;
//   - a detached watchdog (scripts/kafka-watchdog.mjs), one per JVM, notices when
//     this process dies without running any handler (kill -9) and reaps the JVM.
import { spawn, type ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { repoRoot } from './jars.ts';

export const STOP_GRACE_MS = 15_000;

// Every JVM this process started and has not yet seen exit.
const liveJvms = new Set<number>();

const signalLiveJvms = (signal: NodeJS.Signals): void => {
  for (const pid of liveJvms) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
};

const onProcessExit = (): void => signalLiveJvms('SIGTERM');

const onProcessSignal = (signal: NodeJS.Signals): void => {
  signalLiveJvms('SIGTERM');
  // A listener disables Node's default "exit on SIGINT/SIGTERM". When nobody else
  // listens, restore it and re-raise, so the process dies as it would have.
  if (process.listenerCount(signal) === 1) {
    uninstallProcessHandlers();
    process.kill(process.pid, signal);
  }
};

let handlersInstalled = false;

let signalsHandled = false;

const installProcessHandlers = (handleSignals: boolean): void => {
  if (!handlersInstalled) {
    handlersInstalled = true;
    process.on('exit', onProcessExit);
  }
  if (handleSignals && !signalsHandled) {
    signalsHandled = true;
    process.on('SIGINT', onProcessSignal);
    process.on('SIGTERM', onProcessSignal);
  }
};

function uninstallProcessHandlers(): void {
  if (handlersInstalled) {
    handlersInstalled = false;
    process.off('exit', onProcessExit);
  }
  if (signalsHandled) {
    signalsHandled = false;
    process.off('SIGINT', onProcessSignal);
    process.off('SIGTERM', onProcessSignal);
  }
}

/** Tracks a started JVM: this process's exit and (with handleSignals) SIGINT/SIGTERM signal it. */
export const trackJvm = (pid: number, handleSignals: boolean): void => {
  liveJvms.add(pid);
  installProcessHandlers(handleSignals);
};

/** The JVM exited: once none is left, this process's handlers go too. */
export const untrackJvm = (pid: number): void => {
  liveJvms.delete(pid);
  if (liveJvms.size === 0) uninstallProcessHandlers();
};

/**
 * A detached watchdog for one JVM: it reaps the JVM (SIGTERM, SIGKILL after the
 * grace period) once this process dies, then removes `dirToRemove`. It exits by
 * itself when the JVM exits first.
 */
export const startWatchdog = (jvmPid: number, jvmMarker: string, logFile: string, dirToRemove: string | undefined): ChildProcess => {
  const script = join(repoRoot, 'scripts', 'kafka-watchdog.mjs');
  const args = [script, String(process.pid), String(jvmPid), jvmMarker, String(STOP_GRACE_MS), logFile];
  if (dirToRemove !== undefined) args.push(dirToRemove);
  const watchdog = spawn(process.execPath, args, { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  // Neither the watchdog nor the pipe whose closing is its death notice may keep us alive.
  watchdog.unref();
  if (watchdog.stdin instanceof Socket) watchdog.stdin.unref();
  watchdog.on('error', () => {
    // Best effort: the 'exit' and signal handlers still cover the common cases.
  });
  return watchdog;
};
