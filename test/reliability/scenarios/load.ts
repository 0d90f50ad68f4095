// Scenario 6, sustained mixed load: ingest, a trust SSE stream and audit
// queries at once for a fixed time against every role in this process (over
// real HTTP). No error response, the stream keeps delivering, and memory
// stays bounded (RSS sampled every second).
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mintToken } from '../../../services/lib/auth.ts';
import { configFrom } from '../../../services/lib/config.ts';
import { createLogger } from '../../../services/lib/log.ts';
import { startSystem } from '../../helpers/system.ts';
import { openSse } from '../../helpers/sse.ts';
import { createWorkload, printFigure, rssMb, SECRET, REL_ACTOR, REL_SCOPES, sleep, tempDir, uniqueEnv, type Figure } from '../harness.ts';

export type LoadOptions = { brokers: string[]; durationMs: number; batchSize: number; log?: (s: string) => void };

/**
 * JS heap in use after a full collection (MB): what our code retains. RSS
 * also holds the embedded ClickHouse engine's caches and merges, which warm
 * up for about a minute before they level off, so it gets a ceiling only.
 */
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;
const retainedHeapMb = (): number => {
  collect();
  return process.memoryUsage().heapUsed / 1024 / 1024;
};
/** A leak that keeps what each event leaves behind (decoded events are ~1 KB) shows well above this. */
const MAX_RETAINED_BYTES_PER_EVENT = 1024;
/**
 * What is in flight at either measurement (HTTP bodies being parsed, Kafka
 * batches being sent, the sink's block being inserted, JIT code) is not
 * retained per event but is there at one instant and not the other; on a
 * loaded machine a 20 s run holds a few thousand events, so a few MB of it
 * read as kilobytes per event. The bound is per event beyond this constant.
 */
const IN_FLIGHT_ALLOWANCE_MB = 8;

export const runLoadScenario = async (o: LoadOptions): Promise<Figure> => {
  const dataDir = tempDir('trustfold-rel-load-');
  // Ingest's recent-id cache is bounded (100k by default) and fills for the
  // whole of a short run; a small one is full before the warm point, so the
  // growth measured below is what nothing bounds.
  const env: Record<string, string> = { ...uniqueEnv(o.brokers, 3), TRUSTFOLD_DATA_DIR: dataDir, TRUSTFOLD_INGEST_RECENT_IDS: '2000' };
  const config = configFrom(env);
  const system = await startSystem({ config, roles: new Set(['ingest', 'projector', 'audit-sink', 'query']), brokers: o.brokers, logger: createLogger('rel', 'silent'), env, listen: true });
  const base = system.url ?? '';
  const token = await mintToken({ sub: REL_ACTOR, tenant: 'acme', scopes: [...REL_SCOPES, 'trust:read', 'audit:read'], ttlSeconds: 3600 }, SECRET);
  const headers = { authorization: `Bearer ${token}` };
  const workload = createWorkload({ tenant: 'acme', sessions: 300, signalEvery: 5 });
  const errors: string[] = [];
  const counts = { events: 0, ingestRequests: 0, queries: 0 };
  const rss: number[] = [];
  const heap: number[] = [];
  const sse = await openSse(`${base}/v1/trust/stream`, headers);
  assert.equal(sse.status, 200);
  const deadline = Date.now() + o.durationMs;
  const rssCeilingMb = Number(process.env.RELIABILITY_RSS_CEILING_MB ?? 2048);
  // The retained heap once every role is warm (a quarter in), and at the end.
  let warm: { heapMb: number; events: number } | undefined;
  const warmTimer = setTimeout(() => {
    drainFrames();
    warm = { heapMb: retainedHeapMb(), events: counts.events };
  }, Math.floor(o.durationMs / 4));
  // The SSE frames are counted and dropped as they come, so the test's own
  // reader does not count as retained heap.
  let frames = 0;
  const drainFrames = (): void => {
    frames += sse.frames.filter((f) => f.event === 'trust').length;
    sse.frames.length = 0;
  };
  const sampler = setInterval(() => {
    drainFrames();
    rss.push(rssMb());
    heap.push(Math.round(process.memoryUsage().heapUsed / 1024 / 1024));
  }, 1_000);
  try {
    const ingest = async (): Promise<void> => {
      while (Date.now() < deadline) {
        const batch = workload.batch(o.batchSize);
        const r = await fetch(`${base}/v1/events`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(batch) });
        const body = await r.text();
        counts.ingestRequests++;
        if (r.status !== 202) errors.push(`ingest ${r.status} ${body.slice(0, 200)}`);
        else counts.events += batch.length;
      }
    };
    const query = async (): Promise<void> => {
      let i = 0;
      while (Date.now() < deadline) {
        const url = i % 3 === 0 ? '/v1/audit/decisions?limit=50&effect=deny' : i % 3 === 1 ? `/v1/audit/sessions/S-${i % 300}/timeline?limit=50` : `/v1/audit/delegators/U-S-${i % 300}/sessions`;
        const r = await fetch(`${base}${url}`, { headers });
        await r.arrayBuffer();
        counts.queries++;
        if (r.status !== 200) errors.push(`query ${url} ${r.status}`);
        i++;
        await sleep(50);
      }
    };
    await Promise.all([ingest(), ingest(), query()]);
    await sleep(1_000);
    clearInterval(sampler);
    drainFrames();
    sse.close();
    const endHeapMb = retainedHeapMb();
    assert.ok(warm !== undefined, 'the warm heap was measured');
    const eventsAfterWarm = Math.max(1, counts.events - warm.events);
    const perEvent = ((endHeapMb - warm.heapMb) * 1024 * 1024) / eventsAfterWarm;
    const beyondAllowance = (Math.max(0, endHeapMb - warm.heapMb - IN_FLIGHT_ALLOWANCE_MB) * 1024 * 1024) / eventsAfterWarm;
    o.log?.(`RSS MB over time: ${rss.join(' ')}`);
    o.log?.(`JS heap MB over time: ${heap.join(' ')}`);
    assert.deepEqual(errors.slice(0, 5), [], `${errors.length} error responses`);
    assert.ok(frames > 0, 'the trust stream delivered changes');
    assert.ok(counts.queries > 0 && counts.events > 0);
    assert.ok(Math.max(...rss) <= rssCeilingMb, `RSS peaked at ${Math.max(...rss)} MB, over the ${rssCeilingMb} MB ceiling`);
    assert.ok(
      beyondAllowance < MAX_RETAINED_BYTES_PER_EVENT,
      `the retained heap grew by ${Math.round(beyondAllowance)} B per event beyond ${IN_FLIGHT_ALLOWANCE_MB} MB in flight (${warm.heapMb.toFixed(0)} → ${endHeapMb.toFixed(0)} MB over ${eventsAfterWarm} events)`,
    );
    return printFigure('load', {
      seconds: Math.round(o.durationMs / 1000),
      events: counts.events,
      'events/s': Math.round(counts.events / (o.durationMs / 1000)),
      'ingest requests': counts.ingestRequests,
      'audit queries': counts.queries,
      'sse frames': frames,
      'error responses': errors.length,
      'RSS MB start/peak/end': `${rss[0] ?? 0}/${Math.max(...rss)}/${rss.at(-1) ?? 0}`,
      'retained heap MB warm/end': `${warm.heapMb.toFixed(0)}/${endHeapMb.toFixed(0)}`,
      'retained B/event': Math.round(perEvent),
      'retained B/event beyond in-flight allowance': Math.round(beyondAllowance),
    });
  } finally {
    clearInterval(sampler);
    clearTimeout(warmTimer);
    sse.close();
    await system.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
};
