// The gateway's two HTTP transports on loopback: agents → the gateway
// (agent-http.ts, through createGateHttp) and the gateway → an upstream served
// by the SDK's own StreamableHTTPServerTransport (upstream-http.ts), plus the
// verified-token cache. The MCP client is the SDK's; raw requests check the
// wire (content types, status codes, batch order).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, isInitializeRequest, LATEST_PROTOCOL_VERSION, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { SignJWT } from 'jose';
import type { SessionTrust } from '../../schemas/events.ts';
import { parseGateConfig } from '../../services/gate/config.ts';
import { createGateway, type Gateway } from '../../services/gate/gateway.ts';
import { createGateHttp, type GateHttp } from '../../services/gate/http.ts';
import { createTokenCache } from '../../services/gate/token-cache.ts';
import { openUpstream, type Upstream } from '../../services/gate/upstream.ts';
import { createSseParser } from '../../services/gate/upstream-http.ts';
import { createAuthenticator, type Authenticator } from '../../services/lib/auth.ts';
import { createConformanceServer } from '../fixtures/gate-conformance-server.ts';

const SECRET = 'gate-http-test-secret-3f1c9a7e5b2d4c6a8e0f1b3d';
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
});

const token = (claims: Record<string, unknown> = {}, ttl = '1h'): Promise<string> =>
  new SignJWT({ tenant: 'acme', scope: 'mcp:tools:read mcp:tools:write', session_id: 'S-http', act: { sub: 'A-1' }, ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('U-1')
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime(ttl)
    .sign(new TextEncoder().encode(SECRET));

/** An upstream as a user runs it: an SDK server per session behind the SDK's StreamableHTTPServerTransport (SSE answers). */
const serveUpstream = async (make: () => Server): Promise<{ url: string; deleted: () => number; servers: Server[] }> => {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const servers: Server[] = [];
  let deleted = 0;
  const http: HttpServer = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown) : undefined;
      if (req.method === 'DELETE') deleted++;
      const id = req.headers['mcp-session-id'];
      const known = typeof id === 'string' ? sessions.get(id) : undefined;
      if (known !== undefined) return known.handleRequest(req, res, body);
      if (!isInitializeRequest(body)) return void res.writeHead(400).end();
      const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({ sessionIdGenerator: randomUUID, onsessioninitialized: (s) => void sessions.set(s, t) });
      const server = make();
      servers.push(server);
      await server.connect(t);
      await t.handleRequest(req, res, body);
    })();
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => (http.closeAllConnections(), http.close(() => r()))));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`, deleted: () => deleted, servers };
};

const trusted: SessionTrust = {
  session_id: 'S-http', tenant_id: 'acme', version: 1, tier: 'trusted', delegator: 'U-1', agent: 'A-1', causes: [], revoked_roles: [], consent_revoked: false,
  freezes: [], ended: false, updated_at: '2026-06-09T14:01:57.000Z', caused_by: '01976d2a-0000-7000-8000-000000000003',
};

type Rig = { url: string; gateway: Gateway; http: GateHttp; upstream: Upstream; verifies: () => number; clock: { offsetMs: number }; changes: () => number };

const rig = async (make: () => Server = createConformanceServer): Promise<Rig & { served: Awaited<ReturnType<typeof serveUpstream>> }> => {
  const served = await serveUpstream(make);
  const config = parseGateConfig({ upstreams: { conf: { url: served.url } }, audit: { url: 'http://127.0.0.1:1', pdp_id: 'gate-http-test' } });
  if (!config.ok) throw new Error(JSON.stringify(config.error));
  let changes = 0;
  const upstream = await openUpstream('conf', config.value.upstreams['conf'] ?? { url: served.url, timeout_ms: 5000 }, { onToolsChanged: () => void changes++ });
  closers.push(() => upstream.close());
  const gateway = await createGateway({
    config: config.value,
    upstreams: [upstream],
    view: { get: () => ({ known: true, state: trusted, version: 1, stalenessMs: 0, receivedAt: 0 }) },
    audit: { decision: () => Promise.resolve({ ok: true }), signal: () => Promise.resolve({ ok: true }) },
  });
  const real = createAuthenticator({ secret: SECRET });
  let verifies = 0;
  const counting: Authenticator = { verify: (a) => (verifies++, real.verify(a)) };
  const clock = { offsetMs: 0 };
  const http = createGateHttp({ gateway, authenticator: counting, claims: config.value.claims, path: '/mcp', now: () => Date.now() + clock.offsetMs });
  const url = await http.listen(0, '127.0.0.1');
  closers.push(() => http.close());
  return { url, gateway, http, upstream, verifies: () => verifies, clock, changes: () => changes, served };
};

const agent = async (url: string, bearer: string): Promise<Client> => {
  const c = new Client({ name: 'agent', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }));
  closers.push(() => c.close());
  return c;
};

type Raw = { status: number; type: string; text: string; session: string | null };
const raw = async (url: string, init: { method?: string; body?: unknown; headers?: Record<string, string> }): Promise<Raw> => {
  const r = await fetch(url, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...init.headers },
    ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
  });
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text(), session: r.headers.get('mcp-session-id') };
};

/** Opens an MCP session by hand; returns the headers every later request needs. */
const openSession = async (url: string, bearer: string): Promise<Record<string, string>> => {
  const init = await raw(url, {
    headers: { authorization: `Bearer ${bearer}` },
    body: { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } },
  });
  assert.equal(init.status, 200, init.text);
  assert.ok(init.session !== null);
  const headers = { authorization: `Bearer ${bearer}`, 'mcp-session-id': init.session, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
  assert.equal((await raw(url, { headers, body: { jsonrpc: '2.0', method: 'notifications/initialized' } })).status, 202);
  return headers;
};

const call = (id: number, name: string, meta?: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {}, ...(meta !== undefined && { _meta: meta }) } });

describe('agents → the gateway over HTTP', () => {
  test('an answer with nothing streamed before it is JSON; progress first makes the answer an SSE stream carrying it', async () => {
    const r = await rig();
    const headers = await openSession(r.url, await token());
    const plain = await raw(r.url, { headers, body: call(1, 'test_simple_text') });
    assert.equal(plain.status, 200);
    assert.equal(plain.type, 'application/json');
    const answer = JSON.parse(plain.text) as { id: number; result: { content: { text: string }[]; _meta: Record<string, { effect: string }> } };
    assert.equal(answer.id, 1);
    assert.equal(answer.result.content[0]?.text, 'This is a simple text response for testing.');
    assert.equal(answer.result._meta['trustfold/decision']?.effect, 'allow');

    const streamed = await raw(r.url, { headers, body: call(2, 'test_tool_with_progress', { progressToken: 'P-7' }) });
    assert.equal(streamed.status, 200);
    assert.equal(streamed.type, 'text/event-stream');
    const events: unknown[] = [];
    createSseParser((data) => void events.push(JSON.parse(data)))(streamed.text);
    const methods = events.map((e) => (e as { method?: string }).method ?? `answer ${String((e as { id?: number }).id)}`);
    assert.deepEqual(methods, ['notifications/progress', 'notifications/progress', 'notifications/progress', 'answer 2']);
    assert.equal((events[0] as { params: { progressToken: string } }).params.progressToken, 'P-7');
  });

  test('a batch of two calls is answered with both, in the order of the requests', async () => {
    const r = await rig();
    const headers = await openSession(r.url, await token());
    const batch = await raw(r.url, { headers, body: [call(11, 'test_error_handling'), call(12, 'test_simple_text')] });
    assert.equal(batch.type, 'application/json');
    const answers = JSON.parse(batch.text) as { id: number; result: { isError?: boolean } }[];
    assert.deepEqual(answers.map((a) => a.id), [11, 12]);
    assert.equal(answers[0]?.result.isError, true);
  });

  test('the SDK client works through it: calls, progress, errors of unknown tools', async () => {
    const r = await rig();
    const c = await agent(r.url, await token());
    const listed = await c.listTools();
    assert.ok(listed.tools.some((t) => t.name === 'test_simple_text'));
    const progress: number[] = [];
    const result = await c.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, { onprogress: (p) => void progress.push(p.progress) });
    assert.deepEqual(progress, [0, 50, 100]);
    assert.equal(result.isError, undefined);
    await assert.rejects(c.callTool({ name: 'no_such_tool', arguments: {} }), /Unknown tool: no_such_tool/);
  });

  test('the protocol checks answer as the SDK transport does', async () => {
    const r = await rig();
    const bearer = await token();
    const headers = await openSession(r.url, bearer);
    const noSse = await raw(r.url, { headers: { ...headers, accept: 'application/json' }, body: call(1, 'test_simple_text') });
    assert.equal(noSse.status, 406);
    const notJson = await raw(r.url, { headers: { ...headers, 'content-type': 'text/plain' }, body: call(1, 'test_simple_text') });
    assert.equal(notJson.status, 415);
    const oldVersion = await raw(r.url, { headers: { ...headers, 'mcp-protocol-version': '1999-01-01' }, body: call(1, 'test_simple_text') });
    assert.equal(oldVersion.status, 400);
    assert.match(oldVersion.text, /Unsupported protocol version: 1999-01-01/);
    const again = await raw(r.url, { headers, body: { jsonrpc: '2.0', id: 5, method: 'initialize', params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } } });
    assert.equal(again.status, 400);
    assert.match(again.text, /already initialized/);
    const notRpc = await raw(r.url, { headers, body: { hello: 'world' } });
    assert.equal(notRpc.status, 400);
    assert.equal(JSON.parse(notRpc.text).error.code, -32700);

    // One standalone GET stream per session; a second is a conflict.
    const controller = new AbortController();
    const first = await fetch(r.url, { headers: { ...headers, accept: 'text/event-stream' }, signal: controller.signal });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'text/event-stream');
    const second = await fetch(r.url, { headers: { ...headers, accept: 'text/event-stream' } });
    assert.equal(second.status, 409);
    await second.text();
    controller.abort();

    const put = await raw(r.url, { method: 'PUT', headers, body: {} });
    assert.equal(put.status, 405);
    const del = await raw(r.url, { method: 'DELETE', headers });
    assert.equal(del.status, 200);
    const gone = await raw(r.url, { headers, body: call(9, 'test_simple_text') });
    assert.equal(gone.status, 404);
  });

  test('paths, an oversized body, and JSON answers with their length', async () => {
    const r = await rig();
    const bearer = await token();
    const headers = await openSession(`${r.url}?client=raw`, bearer);
    const answer = await fetch(r.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(call(1, 'test_simple_text')) });
    const text = await answer.text();
    assert.equal(answer.headers.get('content-type'), 'application/json');
    assert.equal(answer.headers.get('content-length'), String(Buffer.byteLength(text)), 'one JSON body with its length, not chunked');
    assert.equal(answer.headers.get('transfer-encoding'), null);
    const elsewhere = await raw(r.url.replace(/\/mcp$/, '/other'), { headers, body: call(2, 'test_simple_text') });
    assert.equal(elsewhere.status, 404);
    assert.match(elsewhere.text, /no MCP endpoint at \/other; it is \/mcp/);
    // A request target URL parsing normalises to the endpoint is still the endpoint (fetch would normalise it before sending).
    const body = JSON.stringify(call(3, 'test_simple_text'));
    const dotted = await new Promise<number>((resolve, reject) => {
      const u = new URL(r.url);
      const req = httpRequest({ hostname: u.hostname, port: u.port, path: '/x/../mcp', method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      });
      req.once('error', reject);
      req.end(body);
    });
    assert.equal(dotted, 200);
    assert.equal((await fetch(r.url.replace(/\/mcp$/, '/healthz'))).status, 200);
    const huge = await fetch(r.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: 'x'.repeat(4 * 1024 * 1024 + 1) });
    assert.equal(huge.status, 413);
    assert.equal(huge.headers.get('connection'), 'close');
    assert.equal((JSON.parse(await huge.text()) as { error: { code: number } }).error.code, -32600);
  });

  test('a verified token is not verified again until its exp; another token is', async () => {
    const r = await rig();
    const bearer = await token();
    const headers = await openSession(r.url, bearer);
    for (let i = 0; i < 5; i++) assert.equal((await raw(r.url, { headers, body: call(100 + i, 'test_simple_text') })).status, 200);
    assert.equal(r.verifies(), 1, 'initialize, initialized and five calls: one verification');

    // Past the token's exp the cache is not consulted: the authenticator decides again.
    r.clock.offsetMs = 2 * 3600_000;
    assert.equal((await raw(r.url, { headers, body: call(200, 'test_simple_text') })).status, 200);
    assert.equal(r.verifies(), 2);
    r.clock.offsetMs = 0;

    // A token whose signature is wrong is refused every time, cached or not.
    const forged = `${bearer.slice(0, -4)}AAAA`;
    for (let i = 0; i < 2; i++) assert.equal((await raw(r.url, { headers: { ...headers, authorization: `Bearer ${forged}` }, body: call(300 + i, 'test_simple_text') })).status, 401);
    assert.equal(r.verifies(), 4);
  });
});

describe('the verified-token cache', () => {
  test('never answers past exp, evicts the least recently used, keys on every byte', () => {
    const c = createTokenCache<string>(2);
    c.set('tok-a', 'A', 1_000);
    c.set('tok-b', 'B', 5_000);
    assert.equal(c.get('tok-a', 999), 'A');
    assert.equal(c.get('tok-a', 1_000), undefined, 'at exp it is gone');
    c.set('tok-a', 'A', 5_000);
    assert.equal(c.get('tok-b', 10), 'B'); // b used last: a is the least recently used
    c.set('tok-c', 'C', 5_000);
    assert.equal(c.size, 2);
    assert.equal(c.get('tok-a', 10), undefined);
    assert.equal(c.get('tok-c', 10), 'C');
    assert.equal(c.get('tok-C', 10), undefined);
  });
});

describe('the gateway → an upstream over HTTP (SDK server, SSE answers)', () => {
  test('calls, progress and upstream errors pass; tools/list_changed arrives on the standalone stream; close ends the session', async () => {
    let changed!: Server;
    const make = (): Server => {
      const s = new Server({ name: 'changing', version: '1' }, { capabilities: { tools: { listChanged: true } } });
      s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: 'touch', description: 'Changes the list.', inputSchema: { type: 'object' } }] }));
      s.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
        if (req.params.name !== 'touch') throw new McpError(-32602, `no tool ${req.params.name}`, { tool: req.params.name });
        const token = req.params._meta?.progressToken;
        if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 1, total: 1 } });
        return { content: [{ type: 'text', text: `touched ${JSON.stringify(req.params.arguments ?? {})}` }] };
      });
      changed = s;
      return s;
    };
    const r = await rig(make);
    const progress: number[] = [];
    const result = await r.upstream.callTool({ name: 'touch', arguments: { n: 1 }, _meta: { progressToken: 3 } }, { signal: new AbortController().signal, onprogress: (p) => void progress.push(p.progress) });
    assert.deepEqual(result['content'], [{ type: 'text', text: 'touched {"n":1}' }]);
    assert.deepEqual(progress, [1]);
    await assert.rejects(r.upstream.callTool({ name: 'gone', arguments: {} }, { signal: new AbortController().signal }), (e: unknown) => e instanceof McpError && e.code === -32602 && /no tool gone/.test(e.message));
    // An HTTP-level refusal reads as the SDK's client transport reports it.
    await assert.rejects(r.upstream.callTool({ name: 'touch', arguments: {}, _meta: 'not an object' }, { signal: new AbortController().signal }), /Streamable HTTP error: Error POSTing to endpoint: .*-32700/);

    // The upstream's standalone GET stream opens after initialization; give it a moment to be there.
    for (let i = 0; i < 250 && r.changes() === 0; i++) {
      await changed.sendToolListChanged();
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.ok(r.changes() >= 1, 'tools/list_changed reached the gateway');

    const before = r.served.deleted();
    await r.upstream.close();
    assert.equal(r.served.deleted(), before + 1, 'the upstream session was ended with DELETE');
  });
});

describe('the gateway → an upstream that breaks off', () => {
  test('an SSE answer that ends without the answer fails the call at once (not at its timeout); a 405 GET means no standalone stream', async () => {
    let gets = 0;
    const http = createServer((req, res) => {
      void (async () => {
        if (req.method === 'GET') return void (gets++, res.writeHead(405).end());
        if (req.method === 'DELETE') return void res.writeHead(405).end();
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const m = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: number; method: string };
        if (m.id === undefined) return void res.writeHead(202).end();
        if (m.method === 'initialize') {
          return void res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'up-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: { tools: {} }, serverInfo: { name: 'broken', version: '1' } } }));
        }
        if (m.method === 'tools/list') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { tools: [] } }));
        res.writeHead(200, { 'content-type': 'text/event-stream' }).end(': nothing to say\n\n');
      })();
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => (http.closeAllConnections(), http.close(() => r()))));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    const upstream = await openUpstream('broken', { url, timeout_ms: 60_000 }, { onToolsChanged: () => undefined });
    closers.push(() => upstream.close());
    const started = Date.now();
    await assert.rejects(upstream.callTool({ name: 'x', arguments: {} }, { signal: new AbortController().signal }), /closed its SSE stream before answering/);
    assert.ok(Date.now() - started < 30_000, 'failed at once, not at the 60 s timeout');
    for (let i = 0; i < 250 && gets === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(gets, 1, 'asked once for the standalone stream; 405 is not retried');
  });
});
