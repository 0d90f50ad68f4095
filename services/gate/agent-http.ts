// The server side of Streamable HTTP for one agent's MCP session, on the
// node:http request and response directly. The SDK's StreamableHTTPServerTransport
// converts every request into a WHATWG Request (@hono/node-server) and answers
// with an SSE ReadableStream; at the gateway's call rates that conversion was a
// large share of the time a call spent in the gateway (services/gate/README.md,
// "Measured"). This transport keeps the SDK's protocol behaviour — the same
// status codes, checks and messages (Accept, Content-Type, batch size,
// initialization, MCP-Protocol-Version, one standalone GET stream, DELETE) —
// and makes one choice the SDK leaves fixed: the answer to a POST is decided
// by its first outgoing message. If the answer itself comes first it is sent
// as application/json; if a notification comes first (progress, a log line)
// the answer becomes an SSE stream carrying it, then the answer. The
// specification lets the server pick either per request; clients must accept
// both. No resumability (no event store), as the gateway configured the SDK.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import { SUPPORTED_PROTOCOL_VERSIONS, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { parseJsonRpcMessage } from './jsonrpc.ts';

/** The SDK's limit on messages in one POSTed batch. */
const MAX_BATCH = 100;

const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' } as const;

/** A JSON answer with its length: one write (headers and body together) instead of a chunked body. */
const jsonAnswer = (res: ServerResponse, status: number, payload: string, headers: Record<string, string> = {}): void => {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers }).end(payload);
};

const jsonError = (res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void =>
  jsonAnswer(res, status, JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), headers);

const sseEvent = (m: JSONRPCMessage): string => `event: message\ndata: ${JSON.stringify(m)}\n\n`;

const isJsonContentType = (v: string | undefined): boolean => (v ?? '').split(';')[0]?.trim().toLowerCase() === 'application/json';

/** One POST that carried requests: where their answers go. */
type Exchange = { res: ServerResponse; order: RequestId[]; open: Set<RequestId>; answers: Map<RequestId, JSONRPCMessage>; sse: boolean; ended: boolean };

export type AgentHttpTransportOptions = {
  sessionIdGenerator: () => string;
  onsessioninitialized?: (sessionId: string) => void;
};

export class AgentHttpTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: Transport['onmessage'];
  sessionId?: string;
  readonly #o: AgentHttpTransportOptions;
  #initialized = false;
  #closed = false;
  readonly #byRequest = new Map<RequestId, Exchange>();
  #standalone: ServerResponse | undefined;

  constructor(o: AgentHttpTransportOptions) {
    this.#o = o;
  }

  async start(): Promise<void> {}

  #sessionHeader(): Record<string, string> {
    return this.sessionId !== undefined ? { 'mcp-session-id': this.sessionId } : {};
  }

  #fail(res: ServerResponse, status: number, code: number, message: string, headers?: Record<string, string>): void {
    this.onerror?.(new Error(message));
    jsonError(res, status, code, message, headers);
  }

  #protocolOk(req: IncomingMessage, res: ServerResponse): boolean {
    const v = req.headers['mcp-protocol-version'];
    if (typeof v === 'string' && !SUPPORTED_PROTOCOL_VERSIONS.includes(v)) {
      this.#fail(res, 400, -32000, `Bad Request: Unsupported protocol version: ${v} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`);
      return false;
    }
    return true;
  }

  /** Handles one HTTP request of this session; `body` is the parsed JSON of a POST. */
  handleRequest(req: IncomingMessage, res: ServerResponse, body: unknown, authInfo?: AuthInfo): void {
    if (this.#closed) return jsonError(res, 404, -32001, 'Session not found');
    switch (req.method) {
      case 'POST':
        return this.#post(req, res, body, authInfo);
      case 'GET':
        return this.#get(req, res);
      case 'DELETE':
        if (!this.#initialized) return this.#fail(res, 400, -32000, 'Bad Request: Server not initialized');
        if (!this.#protocolOk(req, res)) return;
        res.writeHead(200).end();
        return void this.close();
      default:
        return this.#fail(res, 405, -32000, 'Method not allowed.', { allow: 'GET, POST, DELETE' });
    }
  }

  #post(req: IncomingMessage, res: ServerResponse, body: unknown, authInfo: AuthInfo | undefined): void {
    const accept = req.headers.accept ?? '';
    if (!accept.includes('application/json') || !accept.includes('text/event-stream')) {
      return this.#fail(res, 406, -32000, 'Not Acceptable: Client must accept both application/json and text/event-stream');
    }
    if (!isJsonContentType(req.headers['content-type'])) return this.#fail(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    if (Array.isArray(body) && body.length > MAX_BATCH) return this.#fail(res, 400, -32600, `Invalid Request: Batch must not exceed ${MAX_BATCH} messages`);
    const messages: JSONRPCMessage[] = [];
    for (const raw of Array.isArray(body) ? (body as unknown[]) : [body]) {
      const m = parseJsonRpcMessage(raw);
      if (!m.success) return this.#fail(res, 400, -32700, 'Parse error: Invalid JSON-RPC message');
      messages.push(m.data);
    }
    const initializing = messages.some((m) => 'method' in m && m.method === 'initialize' && 'id' in m);
    if (initializing) {
      if (this.#initialized) return this.#fail(res, 400, -32600, 'Invalid Request: Server already initialized');
      if (messages.length > 1) return this.#fail(res, 400, -32600, 'Invalid Request: Only one initialization request is allowed');
      this.sessionId = this.#o.sessionIdGenerator();
      this.#initialized = true;
      this.#o.onsessioninitialized?.(this.sessionId);
    } else {
      if (!this.#initialized) return this.#fail(res, 400, -32000, 'Bad Request: Server not initialized');
      if (!this.#protocolOk(req, res)) return;
    }
    const requestInfo = { headers: req.headers, url: new URL(req.url ?? '/', `http://${req.headers.host ?? 'gate'}`) };
    const requests = messages.filter((m): m is JSONRPCMessage & { id: RequestId; method: string } => 'method' in m && 'id' in m);
    if (requests.length === 0) {
      res.writeHead(202).end();
      for (const m of messages) this.onmessage?.(m, { ...(authInfo !== undefined && { authInfo }), requestInfo });
      return;
    }
    const order = requests.map((r) => r.id);
    const x: Exchange = { res, order, open: new Set(order), answers: new Map(), sse: false, ended: false };
    for (const id of x.open) this.#byRequest.set(id, x);
    // The agent went away before its answers: forget where they would have gone.
    res.once('close', () => {
      if (x.ended) return;
      x.ended = true;
      for (const id of x.open) if (this.#byRequest.get(id) === x) this.#byRequest.delete(id);
    });
    for (const m of messages) this.onmessage?.(m, { ...(authInfo !== undefined && { authInfo }), requestInfo });
  }

  #get(req: IncomingMessage, res: ServerResponse): void {
    if (!(req.headers.accept ?? '').includes('text/event-stream')) return this.#fail(res, 406, -32000, 'Not Acceptable: Client must accept text/event-stream');
    if (!this.#initialized) return this.#fail(res, 400, -32000, 'Bad Request: Server not initialized');
    if (!this.#protocolOk(req, res)) return;
    if (this.#standalone !== undefined) return this.#fail(res, 409, -32000, 'Conflict: Only one SSE stream is allowed per session');
    res.writeHead(200, { ...SSE_HEADERS, ...this.#sessionHeader() });
    res.flushHeaders();
    this.#standalone = res;
    res.once('close', () => {
      if (this.#standalone === res) this.#standalone = undefined;
    });
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const answer = !('method' in message) && 'id' in message;
    const id = answer ? message.id : options?.relatedRequestId;
    if (id === undefined) {
      // Server-initiated, about no request: the standalone GET stream if the agent opened one.
      if (answer) throw new Error('Cannot send a response on a standalone SSE stream unless resuming a previous client request');
      this.#standalone?.write(sseEvent(message));
      return;
    }
    const x = this.#byRequest.get(id);
    if (x === undefined || x.ended) {
      if (this.#closed || x?.ended === true) return; // the agent or the session is gone; nothing to deliver to
      throw new Error(`No connection established for request ID: ${String(id)}`);
    }
    if (!answer) {
      if (!x.sse) {
        x.sse = true;
        x.res.writeHead(200, { ...SSE_HEADERS, ...this.#sessionHeader() });
      }
      x.res.write(sseEvent(message));
      return;
    }
    this.#byRequest.delete(id);
    x.open.delete(id);
    if (x.sse) x.res.write(sseEvent(message));
    else x.answers.set(id, message);
    if (x.open.size > 0) return;
    x.ended = true;
    if (x.sse) return void x.res.end();
    // As the SDK answers: one answer as an object, several as an array in the order of the requests.
    const answers = x.order.map((r) => x.answers.get(r));
    jsonAnswer(x.res, 200, JSON.stringify(answers.length === 1 ? answers[0] : answers), this.#sessionHeader());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const x of new Set(this.#byRequest.values())) {
      x.ended = true;
      if (x.res.headersSent) x.res.end();
      else jsonError(x.res, 404, -32001, 'Session not found');
    }
    this.#byRequest.clear();
    this.#standalone?.end();
    this.#standalone = undefined;
    this.onclose?.();
  }
}
