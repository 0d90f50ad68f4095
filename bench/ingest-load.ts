// Load generator for bench/ingest.ts, run as a child process so that building
// request bodies does not steal the server's event loop and its CPU is
// counted apart from the server's. Takes its settings as the first IPC
// message, answers with the counts and its own CPU time.
import { Pool } from 'undici';
import { uuidv7 } from '../schemas/ids.ts';

type Input = { url: string; token: string; template: string; batch: number; connections: number; seconds: number; sessions: number };
const { url, token, template, batch, connections, seconds, sessions } = await new Promise<Input>((resolve) => process.once('message', (m) => resolve(m as Input)));
const [before, rest] = template.split('"__ID__"') as [string, string];
const [middle, after] = rest.split('"__SESSION__"') as [string, string];
let seq = 0;

// Bodies are assembled as bytes: per session one encoded copy of the event
// with a 36-byte slot for its id, copied and stamped per event. Building the
// same JSON text with string concatenation and encoding it on send cost the
// shared machine more CPU per event than the raw producer's whole loop.
const events = Array.from({ length: sessions }, (_, n) => {
  const bytes = Buffer.from(`${before}"${'0'.repeat(36)}"${middle}"S-${n}"${after}`);
  return { bytes, idAt: Buffer.byteLength(before) + 1 };
});
const body = (): Buffer => {
  let size = 2 + (batch - 1);
  const chosen = new Array<(typeof events)[number]>(batch);
  for (let i = 0; i < batch; i++) {
    const e = events[seq++ % sessions];
    if (e === undefined) throw new Error('no event template');
    chosen[i] = e;
    size += e.bytes.length;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  out[at++] = 0x5b; // [
  for (let i = 0; i < batch; i++) {
    const e = chosen[i];
    if (e === undefined) continue;
    if (i > 0) out[at++] = 0x2c; // ,
    e.bytes.copy(out, at);
    out.write(uuidv7(), at + e.idAt, 'latin1');
    at += e.bytes.length;
  }
  out[at] = 0x5d; // ]
  return out;
};

const pool = new Pool(url, { connections, pipelining: 1 });
let accepted = 0;
let requests = 0;
let failures = 0;
const statuses: Record<string, number> = {};
const deadline = Date.now() + seconds * 1000;
const started = Date.now();
const cpu0 = process.cpuUsage();
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
const used = process.cpuUsage(cpu0);
await pool.close();
// cpu: this process's CPU seconds while it sent (building bodies, the HTTP client, its GC).
process.send?.({ accepted, requests, failures, elapsed, cpu: (used.user + used.system) / 1e6, statuses }, () => process.disconnect());
