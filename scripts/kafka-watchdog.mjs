#!/usr/bin/env node
// Keeps a test broker's JVM from outliving the Node process that started it, even
// when that process is SIGKILLed and its own 'exit' handlers never run.
//
// Started by services/local-kafka/reaper.ts (one per JVM), detached (so signals aimed at the
// parent's process group do not take it down before it has done its job), with
// stdin a pipe from the parent: the kernel closes that pipe however the parent
// dies, so EOF on stdin is the death notice. Polling the parent pid backs it up.
//
// usage: kafka-watchdog.mjs <parentPid> <jvmPid> <jvmMarker> <graceMs> <logFile> [<dirToRemove>]
//   jvmMarker: a string the JVM's command line must contain (guards against pid reuse)
//   dirToRemove: an ephemeral data dir, removed once the JVM is gone
import { appendFileSync, readFileSync, rmSync } from 'node:fs';

const [parentPidArg, jvmPidArg, jvmMarker, graceMsArg, logFile, dirToRemove] = process.argv.slice(2);
const parentPid = Number(parentPidArg);
const jvmPid = Number(jvmPidArg);
const graceMs = Number(graceMsArg);
if (!Number.isInteger(parentPid) || !Number.isInteger(jvmPid) || !Number.isFinite(graceMs) || !jvmMarker || !logFile) {
  console.error('usage: kafka-watchdog.mjs <parentPid> <jvmPid> <jvmMarker> <graceMs> <logFile> [<dirToRemove>]');
  process.exit(2);
}

const log = (message) => {
  try {
    appendFileSync(logFile, `[${new Date().toISOString()}] watchdog ${process.pid}: ${message}\n`);
  } catch {
    // The data dir may already be gone; nothing useful to do about it.
  }
};

const isAlive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
};

// On Linux, make sure the pid still belongs to our JVM before signalling it.
const isOurJvm = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(jvmMarker);
  } catch (error) {
    return error.code !== 'ENOENT' ? isAlive(pid) : false;
  }
};

const signalJvm = (signal) => {
  if (!isOurJvm(jvmPid)) return false;
  try {
    process.kill(jvmPid, signal);
    return true;
  } catch {
    return false;
  }
};

const finish = (reason) => {
  log(`exiting: ${reason}`);
  if (dirToRemove) rmSync(dirToRemove, { recursive: true, force: true });
  process.exit(0);
};

let reaping = false;
const reapJvm = (reason) => {
  if (reaping) return;
  reaping = true;
  if (!signalJvm('SIGTERM')) finish(`${reason}; JVM ${jvmPid} already gone`);
  log(`${reason}; sent SIGTERM to JVM ${jvmPid}`);
  const deadline = Date.now() + graceMs;
  const timer = setInterval(() => {
    if (!isOurJvm(jvmPid)) {
      clearInterval(timer);
      finish(`JVM ${jvmPid} exited after SIGTERM`);
    } else if (Date.now() > deadline) {
      clearInterval(timer);
      signalJvm('SIGKILL');
      log(`JVM ${jvmPid} ignored SIGTERM for ${graceMs} ms; sent SIGKILL`);
      setTimeout(() => finish(`JVM ${jvmPid} killed`), 500);
    }
  }, 200);
};

log(`watching parent ${parentPid} and JVM ${jvmPid}`);
process.stdin.on('data', () => {});
process.stdin.on('end', () => reapJvm(`parent ${parentPid} closed the pipe`));
process.stdin.on('error', () => reapJvm(`parent ${parentPid} pipe failed`));
// The parent's own SIGINT/SIGTERM handling decides what happens to the JVM.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});

setInterval(() => {
  if (reaping) return;
  if (!isAlive(parentPid)) reapJvm(`parent ${parentPid} is gone`);
  else if (!isOurJvm(jvmPid)) process.exit(0);
}, 500);
