// Where the Kafka jars are (fetched from Maven Central by scripts/kafka-fetch.mjs
// into .cache/kafka/jars), and the JVM class-data-sharing archive kept beside them.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KafkaBrokerError } from './errors.ts';

export type KafkaJars = { dir: string; version: string };

// Written by scripts/kafka-fetch.mjs after a complete copy; holds the Kafka version.
const KAFKA_JARS_MARKER = '.trustfold-kafka-version';

const findRepoRoot = (): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', 'kafka', 'pom.xml'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
};

/** The checkout this launcher runs from (holds scripts/kafka-watchdog.mjs and .cache/). */
export const repoRoot = findRepoRoot();

export const resolveKafkaJarsDir = (): string => join(repoRoot, '.cache', 'kafka', 'jars');

/** The fetched jars, or a precise error saying how to fetch them. */
export const ensureKafkaJars = (): KafkaJars => {
  const dir = resolveKafkaJarsDir();
  let version: string;
  try {
    version = readFileSync(join(dir, KAFKA_JARS_MARKER), 'utf8').trim();
  } catch (cause) {
    throw new KafkaBrokerError(
      'KAFKA_JARS_MISSING',
      `Apache Kafka jars are missing or incomplete in ${dir}. Run \`npm run kafka:fetch\` (needs java and mvn), ` +
        'or set KAFKA_BROKERS to use an existing broker.',
      { cause },
    );
  }
  if (!existsSync(join(dir, `kafka_2.13-${version}.jar`))) {
    throw new KafkaBrokerError(
      'KAFKA_JARS_MISSING',
      `${dir} claims Kafka ${version} but kafka_2.13-${version}.jar is not there. ` +
        `Delete ${dir} and run \`npm run kafka:fetch\`.`,
    );
  }
  return { dir, version };
};

// Start-up cost is mostly loading and verifying ~5 000 Kafka and Scala classes.
// The first broker run dumps them into a dynamic CDS archive next to the jars
// (a file per run, renamed into place once complete); later runs map it, which
// halves the JVM's CPU time to "started". A stale or mismatched archive is
// ignored by the JVM with a warning in jvm.out, never fatal.
const CDS_ARCHIVE = 'kafka-broker.jsa';

/** The flag that maps the archive, when there is one (for short-lived tools that never dump it). */
export const cdsArchiveFlag = (jarsDir: string): string[] => {
  const archive = join(jarsDir, CDS_ARCHIVE);
  return existsSync(archive) ? [`-XX:SharedArchiveFile=${archive}`] : [];
};

export const cdsFlags = (jarsDir: string): { flags: string[]; dumpFile: string | undefined } => {
  const archive = join(jarsDir, CDS_ARCHIVE);
  if (existsSync(archive)) return { flags: [`-XX:SharedArchiveFile=${archive}`], dumpFile: undefined };
  const dumpFile = `${archive}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`;
  return { flags: [`-XX:ArchiveClassesAtExit=${dumpFile}`], dumpFile };
};

export const adoptCdsDump = (jarsDir: string, dumpFile: string | undefined): void => {
  if (dumpFile === undefined || !existsSync(dumpFile)) return;
  const archive = join(jarsDir, CDS_ARCHIVE);
  try {
    if (existsSync(archive)) rmSync(dumpFile, { force: true });
    else renameSync(dumpFile, archive);
  } catch {
    // Another broker adopted its dump first; ours is redundant.
    rmSync(dumpFile, { force: true });
  }
};

// Dumps of JVMs that were killed mid-write, or whose parent died, are never adopted.
export const removeStaleCdsDumps = (jarsDir: string): void => {
  for (const name of readdirSync(jarsDir)) {
    if (!name.startsWith(`${CDS_ARCHIVE}.tmp-`)) continue;
    const file = join(jarsDir, name);
    try {
      if (Date.now() - statSync(file).mtimeMs > 10 * 60_000) rmSync(file, { force: true });
    } catch {
      // Raced with another cleaner.
    }
  }
};
