// The audit sink's decoding path alone, CPU per decision: mapBatch (Avro,
// contract, rows, write-once identities) on Avro-encoded decisions in the
// sink's decode chunks, and with --wire also the hand-back to the main thread
// (the decoding thread's answer through v8's serializer, which postMessage
// uses, and back). With --baseline=<another checkout> the same run times that
// checkout's mapBatch too, interleaved round by round in this one process, and
// first checks that both give the same answer on every chunk.
//
//   node --import tsx bench/sink-decode.ts [--n=65536] [--rounds=9] [--wire] [--leaves] [--baseline=/work/main]
import assert from 'node:assert/strict';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import { createCodec } from '../schemas/codec.ts';
import { decisionAt } from './decisions.ts';
import type * as BatchModule from '../services/audit-sink/batch.ts';
import type * as DecodeModule from '../services/audit-sink/decode.ts';
import type * as ThreadModule from '../services/audit-sink/decode-thread.ts';

const arg = (name: string): string | undefined => process.argv.find((x) => x.startsWith(`--${name}=`))?.slice(name.length + 3);
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const N = Number(arg('n') ?? 65_536);
const ROUNDS = Number(arg('rounds') ?? 9);
const CHUNK = 8192;
const WIRE = flag('wire');
const LEAVES = flag('leaves');
const BASELINE = arg('baseline');

// The decisions bench/audit.ts produces (./decisions.ts), so the figures compare with its sink run.

type Impl = { name: string; batch: typeof BatchModule; decode: typeof DecodeModule; thread: typeof ThreadModule };

const load = async (name: string, root: string): Promise<Impl> => {
  const at = (p: string) => pathToFileURL(join(root, p)).href;
  return {
    name,
    batch: (await import(at('services/audit-sink/batch.ts'))) as typeof BatchModule,
    decode: (await import(at('services/audit-sink/decode.ts'))) as typeof DecodeModule,
    thread: (await import(at('services/audit-sink/decode-thread.ts'))) as typeof ThreadModule,
  };
};

const main = async (): Promise<void> => {
  const here = resolve(import.meta.dirname, '..');
  const impls = [await load('this tree', here)];
  if (BASELINE !== undefined) impls.unshift(await load(`baseline ${BASELINE}`, resolve(BASELINE)));
  const codec = createCodec();
  const base = Date.now() - 3_600_000;
  const chunks: BatchModule.SinkMessage[][] = [];
  for (let i = 0; i < N; i += CHUNK) {
    chunks.push(Array.from({ length: Math.min(CHUNK, N - i) }, (_, j) => ({ offset: String(i + j), key: null, value: codec.encodeEvent(decisionAt(i + j, new Date(base + i + j))) })));
  }
  const runners = impls.map((impl) => {
    const decoder = impl.decode.createSinkDecoder();
    // The decoding thread's side (answer: mapBatch + the wire form) and, with --wire, the clone both ways.
    const one = (part: readonly BatchModule.SinkMessage[]): unknown => {
      if (!WIRE) return impl.batch.mapBatch(decoder, 'events', 'decisions', 0, part, LEAVES);
      const packed = impl.thread.pack(part);
      const a = impl.thread.answer(decoder, { id: 0, role: 'events', topic: 'decisions', partition: 0, withLeaves: LEAVES, ...packed });
      return deserialize(serialize(a));
    };
    return { name: impl.name, one };
  });
  if (runners.length > 1) {
    // Rows may cross as cells or as their JSONCompactEachRow lines (services/audit-sink/batch.ts EncodedRow): compared as lines.
    const lines = (answer: unknown): unknown =>
      JSON.parse(JSON.stringify(answer, (k, v: unknown) => (k === 'rows' && Array.isArray(v) ? v.map((r: unknown) => (typeof r === 'string' ? r : JSON.stringify(r))) : v)));
    for (const part of chunks) {
      const [a, b] = runners.map((r) => lines(r.one(part)));
      // Not assert.deepEqual: its diff of two 8,192-row answers does not fit in memory.
      assert.ok(JSON.stringify(a) === JSON.stringify(b), 'this tree answers a chunk otherwise than the baseline');
    }
    process.stdout.write(`same answers on all ${N} decisions (${chunks.length} chunks)\n`);
  }
  const cpu: number[][] = runners.map(() => []);
  const wall: number[][] = runners.map(() => []);
  for (let round = 0; round < ROUNDS + 1; round++) {
    // Alternate which runs first; round 0 warms up and is not counted.
    const order = round % 2 === 0 ? runners.map((_, i) => i) : runners.map((_, i) => runners.length - 1 - i);
    for (const i of order) {
      const r = runners[i];
      if (r === undefined) continue;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (const part of chunks) r.one(part);
      const t = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (round > 0) {
        cpu[i]?.push(((c.user + c.system) / N));
        wall[i]?.push((t * 1000) / N);
      }
    }
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] ?? NaN;
  };
  process.stdout.write(`sink decode path, ${N} decisions in chunks of ${CHUNK}, ${ROUNDS} rounds${WIRE ? ', with the hand-back (v8 serialize + deserialize)' : ''}${LEAVES ? ', with leaves' : ''}; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  runners.forEach((r, i) => {
    process.stdout.write(`  ${r.name}: CPU ${median(cpu[i] ?? []).toFixed(2)} µs/decision (median; min ${Math.min(...(cpu[i] ?? [])).toFixed(2)}), wall ${median(wall[i] ?? []).toFixed(2)} µs/decision\n`);
  });
  if (runners.length === 2) process.stdout.write(`  this tree ÷ baseline, CPU: ${(median(cpu[1] ?? []) / median(cpu[0] ?? [])).toFixed(2)}\n`);
};

await main();
