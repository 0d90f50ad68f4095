#!/usr/bin/env node
// Fetches the jars of a single-node Apache Kafka broker from Maven Central into
// .cache/kafka/jars, once. Plain Node ESM on purpose: `npm test` runs it before
// anything needs tsx. Skipped entirely when KAFKA_BROKERS points at a broker.
//
// The jars are copied into a scratch directory and renamed into place only after
// Maven succeeded; the marker file (holding the Kafka version) is written last, so
// an interrupted run is never mistaken for a complete one.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const pomPath = join(repoRoot, 'scripts', 'kafka', 'pom.xml');
const cacheDir = join(repoRoot, '.cache', 'kafka');
const jarsDir = join(cacheDir, 'jars');
// Keep in sync with services/local-kafka/jars.ts (KAFKA_JARS_MARKER).
const markerPath = join(jarsDir, '.trustfold-kafka-version');

const fail = (message) => {
  console.error(`kafka-fetch: ${message}`);
  process.exit(1);
};

const kafkaVersionFromPom = () => {
  const match = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(pomPath, 'utf8'));
  if (match === null) fail(`no <kafka.version> property in ${pomPath}`);
  return match[1].trim();
};

const installedVersion = () => {
  try {
    return readFileSync(markerPath, 'utf8').trim();
  } catch {
    return undefined;
  }
};

const requireTool = (command, args, hint) => {
  const result = spawnSync(command, args, { stdio: 'ignore' });
  if (result.error !== undefined || result.status !== 0) {
    fail(`\`${command}\` was not found or does not run (${result.error?.message ?? `exit ${result.status}`}). ${hint}`);
  }
};

const directorySizeBytes = (dir) =>
  readdirSync(dir).reduce((total, name) => total + statSync(join(dir, name)).size, 0);

if (process.env.KAFKA_BROKERS !== undefined && process.env.KAFKA_BROKERS.trim() !== '') {
  console.log(`kafka-fetch: skipped, KAFKA_BROKERS=${process.env.KAFKA_BROKERS} is set`);
  process.exit(0);
}

const version = kafkaVersionFromPom();
if (installedVersion() === version) {
  process.exit(0);
}

requireTool('java', ['-version'], 'Install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`) or set KAFKA_BROKERS.');
requireTool('mvn', ['-v'], 'Install Maven 3.6+ (e.g. `apt-get install maven`) or set KAFKA_BROKERS.');

console.log(`kafka-fetch: fetching Apache Kafka ${version} jars from Maven Central (first run only)…`);
const startedMs = Date.now();
const scratchDir = join(cacheDir, `jars.partial-${process.pid}`);
rmSync(scratchDir, { recursive: true, force: true });
mkdirSync(cacheDir, { recursive: true });

const mvn = spawnSync(
  'mvn',
  [
    '-q',
    '-B',
    '-Dstyle.color=never',
    '-f',
    pomPath,
    'dependency:copy-dependencies',
    `-DoutputDirectory=${scratchDir}`,
    '-DincludeScope=runtime',
  ],
  // Maven 3.8's jansi writes bare colour resets even in batch mode; strip them.
  { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
);
const ansiColour = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const stripAnsi = (text) => (text ?? '').replace(ansiColour, '').trim();
if (stripAnsi(mvn.stdout) !== '') console.log(stripAnsi(mvn.stdout));
if (stripAnsi(mvn.stderr) !== '') console.error(stripAnsi(mvn.stderr));
if (mvn.error !== undefined || mvn.status !== 0) {
  rmSync(scratchDir, { recursive: true, force: true });
  fail(`mvn dependency:copy-dependencies failed (${mvn.error?.message ?? `exit ${mvn.status ?? mvn.signal}`}); see Maven's output above.`);
}
if (!existsSync(join(scratchDir, `kafka_2.13-${version}.jar`))) {
  rmSync(scratchDir, { recursive: true, force: true });
  fail(`Maven finished but kafka_2.13-${version}.jar is not among the copied jars.`);
}

rmSync(jarsDir, { recursive: true, force: true });
renameSync(scratchDir, jarsDir);
writeFileSync(markerPath, `${version}\n`);

const jarCount = readdirSync(jarsDir).filter((name) => name.endsWith('.jar')).length;
const megabytes = (directorySizeBytes(jarsDir) / 1024 / 1024).toFixed(1);
const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
console.log(`kafka-fetch: ${jarCount} jars, ${megabytes} MB in ${jarsDir} after ${seconds} s`);
