// Load generator for bench/ingest.ts, run in a worker thread so that building
// request bodies does not steal the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { Pool } from 'undici';
import { uuidv7 } from '../schemas/ids.ts';

type Input = { url: string; token: string; template: string; batch: number; connections: number; seconds: number; sessions: number };
const { url, token, template, batch, connections, seconds, sessions } = workerData as Input;
const [before, rest] = template.split('"__ID__"') as [string, string];
const [middle, after] = rest.split('"__SESSION__"') as [string, string];
let seq = 0;

const body = (): string => {
  const parts: string[] = new Array<string>(batch);
  for (let i = 0; i < batch; i++) parts[i] = `${before}"${uuidv7()}"${middle}"S-${seq++ % sessions}"${after}`;
  return `[${parts.join(',')}]`;
};

const pool = new Pool(url, { connections, pipelining: 1 });
let accepted = 0;
let requests = 0;
let failures = 0;
const statuses: Record<string, number> = {};
const deadline = Date.now() + seconds * 1000;
const started = Date.now();
const cpu0 = process.threadCpuUsage();
const lane = async () => {
  while (Date.now() < deadline) {
    const res = await pool.request({ path: '/v1/events', method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body() });
    const json = (await res.body.json()) as { accepted?: number };
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
    requests++;
    if (res.statusCode === 202) accepted += json.accepted ?? 0;
    else failures++;
  }
};
await Promise.all(Array.from({ length: connections }, lane));
const elapsed = (Date.now() - started) / 1000;
const used = process.threadCpuUsage(cpu0);
await pool.close();
// cpu: this worker's own CPU seconds (building bodies, the HTTP client).
parentPort?.postMessage({ accepted, requests, failures, elapsed, cpu: (used.user + used.system) / 1e6, statuses });
