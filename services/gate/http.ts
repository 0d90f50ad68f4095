// Agents reach the gateway over Streamable HTTP. Every request carries its
// bearer token and is verified on its own (a transport session is not an
// identity); an MCP session stays bound to the tenant and subject that opened
// it. The SDK transport does the protocol; this file does auth and routing.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { decodeJwt } from 'jose';
import type { Authenticator } from '../lib/auth.ts';
import type { Logger } from '../lib/log.ts';
import { identityFromClaims, type ClaimNames } from './claims.ts';
import { authInfoFor, GATE_ERRORS, type Gateway } from './gateway.ts';

export type GateHttpOptions = {
  gateway: Gateway;
  authenticator: Authenticator;
  claims: ClaimNames;
  path: string;
  logger?: Logger;
  /** Request bodies beyond this are refused with 413. Default 4 MiB. */
  maxBodyBytes?: number;
};

export type GateHttp = { server: HttpServer; listen(port: number, host: string): Promise<string>; close(): Promise<void> };

const rpcError = (res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
};

const readBody = async (req: IncomingMessage, limit: number): Promise<string | undefined> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
};

type Session = { transport: StreamableHTTPServerTransport; owner: string };

export const createGateHttp = (o: GateHttpOptions): GateHttp => {
  const sessions = new Map<string, Session>();
  const limit = o.maxBodyBytes ?? 4 * 1024 * 1024;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://gate');
    if (url.pathname === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (url.pathname !== o.path) return rpcError(res, 404, -32601, `no MCP endpoint at ${url.pathname}; it is ${o.path}`);

    const authorization = req.headers.authorization;
    const verified = await o.authenticator.verify(authorization);
    if (!verified.ok) return rpcError(res, 401, GATE_ERRORS.unauthorized, verified.error.message, { 'www-authenticate': 'Bearer' });
    const token = (authorization ?? '').replace(/^Bearer\s+/i, '').trim();
    const identity = identityFromClaims(decodeJwt(token), o.claims);
    if (!identity.ok) return rpcError(res, 401, GATE_ERRORS.unauthorized, identity.error, { 'www-authenticate': 'Bearer' });
    const owner = `${verified.value.tenant}\u0000${verified.value.sub}`;
    (req as IncomingMessage & { auth?: unknown }).auth = authInfoFor(token, identity.value, verified.value.sub);

    let body: unknown;
    if (req.method === 'POST') {
      const text = await readBody(req, limit);
      if (text === undefined) return rpcError(res, 413, -32600, `request body over ${limit} bytes`);
      try {
        body = JSON.parse(text);
      } catch {
        return rpcError(res, 400, -32700, 'Parse error: the body is not JSON');
      }
    }

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const s = sessions.get(sessionId);
      if (s === undefined) return rpcError(res, 404, -32001, 'Session not found');
      if (s.owner !== owner) return rpcError(res, 403, GATE_ERRORS.forbidden, 'this MCP session belongs to another caller');
      return s.transport.handleRequest(req, res, body);
    }
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return rpcError(res, 400, -32000, 'Bad Request: no Mcp-Session-Id; the first request must be initialize');
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => void sessions.set(id, { transport, owner }),
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await o.gateway.connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      o.logger?.error({ err: e instanceof Error ? e.message : String(e) }, 'gate request failed');
      if (!res.headersSent) rpcError(res, 500, -32603, 'Internal error');
      else res.end();
    });
  });

  return {
    server,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const a = server.address() as AddressInfo;
          resolve(`http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}${o.path}`);
        });
      }),
    async close() {
      await Promise.all([...sessions.values()].map((s) => s.transport.close()));
      sessions.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
};
