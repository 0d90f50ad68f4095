// Agents reach the gateway over Streamable HTTP. Every request carries its
// bearer token and is verified on its own (a transport session is not an
// identity; a token verified before is taken from a bounded cache, never past
// its exp); an MCP session stays bound to the tenant and subject that opened
// it. agent-http.ts does the protocol; this file does auth and routing.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { decodeJwt } from 'jose';
import type { Authenticator, Caller } from '../lib/auth.ts';
import type { Logger } from '../lib/log.ts';
import { AgentHttpTransport } from './agent-http.ts';
import { identityFromClaims, type CallerIdentity, type ClaimNames } from './claims.ts';
import { authInfoFor, GATE_ERRORS, type Gateway } from './gateway.ts';
import { createTokenCache } from './token-cache.ts';

export type GateHttpOptions = {
  gateway: Gateway;
  authenticator: Authenticator;
  claims: ClaimNames;
  path: string;
  logger?: Logger;
  /** Request bodies beyond this are refused with 413. Default 4 MiB. */
  maxBodyBytes?: number;
  /** Verified tokens remembered (LRU); 0 verifies every request. Default 10,000. */
  tokenCacheSize?: number;
  now?: () => number;
};

export type GateHttp = { server: HttpServer; listen(port: number, host: string): Promise<string>; close(): Promise<void> };

const rpcError = (res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void => {
  const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers }).end(body);
};

/**
 * The body of a request, or undefined past `limit` bytes. Plain 'data'/'end' listeners: the stream's async
 * iterator (for await) cost a visible share of a call's CPU in the gateway's profile.
 */
const readBody = (req: IncomingMessage, limit: number): Promise<string | undefined> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        // Stop collecting; what still arrives is discarded until the 413 closes the connection.
        req.off('data', onData);
        req.resume();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(size > limit ? undefined : chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });

type Session = { transport: AgentHttpTransport; owner: string };

export const createGateHttp = (o: GateHttpOptions): GateHttp => {
  const sessions = new Map<string, Session>();
  const limit = o.maxBodyBytes ?? 4 * 1024 * 1024;
  const now = o.now ?? Date.now;
  const cacheSize = o.tokenCacheSize ?? 10_000;
  // The endpoint's own path (and its query forms) needs no URL parse; anything else is parsed as before.
  const plainPath = new URL(o.path, 'http://gate').pathname === o.path;
  const pathOf = (raw: string): string => (plainPath && (raw === o.path || raw.startsWith(`${o.path}?`)) ? o.path : new URL(raw, 'http://gate').pathname);
  const verifiedTokens = createTokenCache<{ caller: Caller; identity: CallerIdentity }>(Math.max(1, cacheSize));

  /** The verified caller of a request's Authorization header, or why not. */
  const authenticate = async (authorization: string | undefined): Promise<{ ok: true; token: string; caller: Caller; identity: CallerIdentity } | { ok: false; message: string }> => {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    const cached = cacheSize > 0 && token !== undefined ? verifiedTokens.get(token, now()) : undefined;
    if (token !== undefined && cached !== undefined) return { ok: true, token, ...cached };
    const verified = await o.authenticator.verify(authorization);
    if (!verified.ok) return { ok: false, message: verified.error.message };
    if (token === undefined) return { ok: false, message: 'Authorization must be "Bearer <token>"' };
    const identity = identityFromClaims(decodeJwt(token), o.claims);
    if (!identity.ok) return { ok: false, message: identity.error };
    if (cacheSize > 0) verifiedTokens.set(token, { caller: verified.value, identity: identity.value }, verified.value.expiresAt);
    return { ok: true, token, caller: verified.value, identity: identity.value };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const pathname = pathOf(req.url ?? '/');
    if (pathname === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (pathname !== o.path) return rpcError(res, 404, -32601, `no MCP endpoint at ${pathname}; it is ${o.path}`);

    const auth = await authenticate(req.headers.authorization);
    if (!auth.ok) return rpcError(res, 401, GATE_ERRORS.unauthorized, auth.message, { 'www-authenticate': 'Bearer' });
    const owner = `${auth.caller.tenant}\u0000${auth.caller.sub}`;
    const authInfo = authInfoFor(auth.token, auth.identity, auth.caller.sub);

    let body: unknown;
    if (req.method === 'POST') {
      const text = await readBody(req, limit);
      // The rest of an oversized body is not waited for: the answer closes the connection.
      if (text === undefined) return rpcError(res, 413, -32600, `request body over ${limit} bytes`, { connection: 'close' });
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
      return s.transport.handleRequest(req, res, body, authInfo);
    }
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return rpcError(res, 400, -32000, 'Bad Request: no Mcp-Session-Id; the first request must be initialize');
    }
    const transport: AgentHttpTransport = new AgentHttpTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => void sessions.set(id, { transport, owner }),
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await o.gateway.connect(transport);
    transport.handleRequest(req, res, body, authInfo);
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
