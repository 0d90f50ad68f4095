// The client side of Streamable HTTP for the gateway's upstreams, on node:http
// with pooled keep-alive connections. The SDK's StreamableHTTPClientTransport
// goes through fetch and WHATWG streams (a Request, a Response, a
// TextDecoderStream and an SSE parser stream per call); that machinery was the
// largest share of the time a call spent in the gateway (services/gate/README.md,
// "Measured"). This transport speaks the same protocol for what the gateway
// uses: POST of JSON-RPC messages answered with JSON or an SSE stream, the
// Mcp-Session-Id and MCP-Protocol-Version headers, the standalone GET stream
// for server notifications (tools/list_changed), DELETE of the session on
// close. Not supported (the gateway does not use them): OAuth flows (static
// headers only), resuming a broken stream with Last-Event-ID, redirects (a 3xx
// is an error, like the SDK's refusal of cross-origin redirects).
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { urlToHttpOptions } from 'node:url';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { parseJsonRpcMessage } from './jsonrpc.ts';

/** An HTTP status the upstream answered that is not a JSON-RPC answer (the SDK's StreamableHTTPError, same message shape). */
export class UpstreamHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(`Streamable HTTP error: ${message}`);
  }
}

const mediaType = (v: string | undefined): string => (v ?? '').split(';')[0]?.trim().toLowerCase() ?? '';

/** Incremental SSE parsing (the `data` of each event; `event: message` or none), per the HTML event-stream format. */
export const createSseParser = (onData: (data: string, event: string) => void): ((chunk: string) => void) => {
  let buffer = '';
  let data: string[] = [];
  let event = '';
  return (chunk) => {
    buffer += chunk;
    for (;;) {
      const nl = buffer.search(/\r\n|\r|\n/);
      if (nl < 0) return;
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (data.length > 0) onData(data.join('\n'), event === '' ? 'message' : event);
        data = [];
        event = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
    }
  };
};

export type UpstreamHttpOptions = {
  headers?: Record<string, string> | undefined;
  /** Pooled keep-alive sockets to the upstream; default 64. */
  maxSockets?: number;
};

const isRequest = (m: JSONRPCMessage): m is JSONRPCMessage & { id: RequestId; method: string } => 'method' in m && 'id' in m;

export class UpstreamHttpTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  sessionId?: string;
  #protocolVersion: string | undefined;
  /** The URL as request options, converted once (not per request). */
  readonly #target: ReturnType<typeof urlToHttpOptions>;
  readonly #headers: Record<string, string>;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpRequest;
  #closed = false;
  #standalone: IncomingMessage | undefined;
  #retry: NodeJS.Timeout | undefined;

  constructor(url: URL, o: UpstreamHttpOptions = {}) {
    this.#target = urlToHttpOptions(url);
    this.#headers = o.headers ?? {};
    const https = url.protocol === 'https:';
    const agentOptions = { keepAlive: true, maxSockets: o.maxSockets ?? 64, noDelay: true };
    this.#agent = https ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    this.#request = https ? httpsRequest : httpRequest;
  }

  async start(): Promise<void> {}

  setProtocolVersion(version: string): void {
    this.#protocolVersion = version;
  }

  #commonHeaders(): OutgoingHttpHeaders {
    return {
      ...this.#headers,
      ...(this.sessionId !== undefined && { 'mcp-session-id': this.sessionId }),
      ...(this.#protocolVersion !== undefined && { 'mcp-protocol-version': this.#protocolVersion }),
    };
  }

  #exchange(method: 'POST' | 'GET' | 'DELETE', headers: OutgoingHttpHeaders, body?: string): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.#request({ ...this.#target, method, agent: this.#agent, headers: { ...this.#commonHeaders(), ...headers, ...(body !== undefined && { 'content-length': Buffer.byteLength(body) }) } }, resolve);
      req.setNoDelay(true);
      req.once('error', reject);
      req.end(body);
    });
  }

  #parse(raw: string): unknown {
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      this.onerror?.(new Error(`upstream sent a message that is not JSON: ${raw.slice(0, 200)}`));
      return undefined;
    }
  }

  #deliver(parsed: unknown): void {
    if (parsed === undefined) return;
    for (const m of Array.isArray(parsed) ? (parsed as unknown[]) : [parsed]) {
      const message = parseJsonRpcMessage(m);
      if (message.success) this.onmessage?.(message.data);
      else this.onerror?.(new Error(`upstream sent an invalid JSON-RPC message: ${message.error.message}`));
    }
  }

  /**
   * Reads an SSE body; calls `seen` with each delivered message's id. Each
   * message is delivered in a microtask of its own, after the previous one:
   * the SDK's Protocol runs notification handlers a microtask later but
   * settles a response at once, so a progress notification and the answer
   * handed over in one go would meet a progress handler the answer already
   * removed.
   */
  #readSse(res: IncomingMessage, seen?: (id: RequestId) => void): Promise<void> {
    let delivered = Promise.resolve();
    return new Promise((resolve) => {
      res.setEncoding('utf8');
      const parse = createSseParser((data, event) => {
        if (event !== 'message') return;
        delivered = delivered.then(() => this.#deliverEvent(data, seen));
      });
      const done = (): void => void delivered.then(() => resolve());
      res.on('data', (c: string) => parse(c));
      res.once('end', done);
      res.once('error', done);
      res.once('close', done);
    });
  }

  #deliverEvent(data: string, seen?: (id: RequestId) => void): void {
    const parsed = this.#parse(data);
    if (seen !== undefined && typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      const m = parsed as { id?: RequestId; method?: unknown };
      if (m.id !== undefined && m.method === undefined) seen(m.id);
    }
    this.#deliver(parsed);
  }

  async send(message: JSONRPCMessage | JSONRPCMessage[]): Promise<void> {
    if (this.#closed) throw new Error('the upstream transport is closed');
    const res = await this.#exchange('POST', { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, JSON.stringify(message));
    const session = res.headers['mcp-session-id'];
    if (typeof session === 'string' && session !== '') this.sessionId = session;
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      const text = await readAll(res).catch(() => '');
      throw new UpstreamHttpError(status, `Error POSTing to endpoint: ${text}`);
    }
    const messages = Array.isArray(message) ? message : [message];
    if (status === 202) {
      res.resume();
      if (messages.some((m) => 'method' in m && m.method === 'notifications/initialized' && !('id' in m))) this.#openStandalone(0);
      return;
    }
    const requests = messages.filter(isRequest).map((m) => m.id);
    if (requests.length === 0) return void res.resume();
    const type = mediaType(res.headers['content-type']);
    if (type === 'application/json') return this.#deliver(this.#parse(await readAll(res)));
    if (type !== 'text/event-stream') {
      res.resume();
      throw new UpstreamHttpError(-1, `Unexpected content type: ${res.headers['content-type'] ?? ''}`);
    }
    // The body is read in the background (progress and log notifications arrive on it before the answer).
    const open = new Set<RequestId>(requests);
    void this.#readSse(res, (id) => open.delete(id)).then(() => {
      // The stream ended without answering some requests: answer them as failed, not left to time out.
      for (const id of open) this.onmessage?.({ jsonrpc: '2.0', id, error: { code: ErrorCode.ConnectionClosed, message: 'the upstream closed its SSE stream before answering' } });
    });
  }

  /** The standalone GET stream: server-initiated notifications. 405 means the upstream offers none. */
  #openStandalone(attempt: number): void {
    if (this.#closed) return;
    this.#exchange('GET', { accept: 'text/event-stream' }).then(
      async (res) => {
        if (res.statusCode === 405 || this.#closed) return void res.resume();
        if (res.statusCode !== 200 || mediaType(res.headers['content-type']) !== 'text/event-stream') {
          res.resume();
          this.onerror?.(new UpstreamHttpError(res.statusCode ?? 0, 'Failed to open SSE stream'));
          return;
        }
        this.#standalone = res;
        await this.#readSse(res);
        this.#standalone = undefined;
        this.#reopen(0);
      },
      (e: unknown) => {
        this.onerror?.(e instanceof Error ? e : new Error(String(e)));
        this.#reopen(attempt + 1);
      },
    );
  }

  #reopen(attempt: number): void {
    if (this.#closed || attempt > 5) return;
    this.#retry = setTimeout(() => this.#openStandalone(attempt), Math.min(30_000, 1000 * 1.5 ** attempt));
    this.#retry.unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    clearTimeout(this.#retry);
    if (this.sessionId !== undefined) {
      // Ends the upstream session as the spec asks of a client that is done; 405 (the server does not allow it) is fine.
      await Promise.race([
        this.#exchange('DELETE', {}).then((r) => void r.resume(), () => undefined),
        new Promise<void>((r) => setTimeout(r, 1000).unref()),
      ]);
    }
    this.#closed = true;
    this.#standalone?.destroy();
    this.#agent.destroy();
    this.onclose?.();
  }
}

const readAll = (res: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
  });
