// A small real MCP server over a directory: read_file, list_files,
// write_file, delete_file. The tools really change files, so a call the
// gateway allows leaves a trace on disk and a denied one does not.
//
//   node --import tsx examples/mcp/ledger-server.ts --root DIR            # stdio
//   node --import tsx examples/mcp/ledger-server.ts --root DIR --http 0   # Streamable HTTP, prints its URL
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const reply = (text: string, isError = false): CallToolResult => ({ content: [{ type: 'text', text }], ...(isError && { isError: true }) });

export const createLedgerServer = (root: string): McpServer => {
  const inside = (path: string): string => {
    const full = resolve(root, path);
    if (full !== root && !full.startsWith(root + sep)) throw new Error(`${path} is outside the ledger`);
    return full;
  };
  const attempt = (f: () => string): CallToolResult => {
    try {
      return reply(f());
    } catch (e) {
      return reply((e as Error).message, true);
    }
  };
  const server = new McpServer({ name: 'ledger', version: '1.0.0' }, { instructions: 'Files of a ledger repository.' });
  const path = z.string().min(1).describe('path relative to the ledger root');
  server.registerTool('read_file', { description: 'Read a file of the ledger.', inputSchema: { path } }, ({ path: p }) =>
    attempt(() => readFileSync(inside(p), 'utf8')),
  );
  server.registerTool('list_files', { description: 'List the files of the ledger.', inputSchema: {} }, () =>
    attempt(() => readdirSync(root, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => relative(root, resolve(d.parentPath, d.name))).sort().join('\n')),
  );
  server.registerTool('write_file', { description: 'Write a file of the ledger.', inputSchema: { path, content: z.string() } }, ({ path: p, content }) =>
    attempt(() => {
      const full = inside(p);
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, content);
      return `wrote ${p}`;
    }),
  );
  server.registerTool('delete_file', { description: 'Delete a file of the ledger.', inputSchema: { path } }, ({ path: p }) =>
    attempt(() => {
      rmSync(inside(p));
      return `deleted ${p}`;
    }),
  );
  return server;
};

/** Streamable HTTP, stateless: a fresh server and transport per request. */
const serveHttp = async (root: string, port: number): Promise<void> => {
  const http = createServer((req, res) => {
    const server = createLedgerServer(root);
    const transport = new StreamableHTTPServerTransport({});
    res.on('close', () => void transport.close().then(() => server.close()));
    server
      .connect(transport)
      .then(() => transport.handleRequest(req, res))
      .catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((r) => http.listen(port, '127.0.0.1', r));
  process.stdout.write(`ledger MCP server at http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp\n`);
};

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { root: { type: 'string' }, http: { type: 'string' } }, strict: true });
  if (values.root === undefined) throw new Error('--root DIR is required');
  const root = resolve(values.root);
  mkdirSync(root, { recursive: true });
  if (values.http !== undefined) await serveHttp(root, Number(values.http));
  else await createLedgerServer(root).connect(new StdioServerTransport());
}
