// One upstream MCP server: an SDK client over stdio (a command the gateway
// starts) or Streamable HTTP (a URL), shared by every agent the gateway
// serves. Results are read with loose schemas so that fields this SDK does
// not know are passed on, not stripped.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { LoggingMessageNotificationSchema, ToolListChangedNotificationSchema, type LoggingMessageNotification, type Progress } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { UpstreamTool } from './catalog.ts';
import { isStdio, type UpstreamConfig } from './config.ts';
import { UpstreamHttpTransport } from './upstream-http.ts';

export const GATE_INFO = { name: 'trustfold-gate', version: '0.1.0' } as const;

const looseTool = z.looseObject({ name: z.string() });
const listResult = z.looseObject({ tools: z.array(looseTool), nextCursor: z.string().optional() });
/** A tools/call result, every field kept (the gateway's own server validates it against the protocol's schema before answering). */
export const callResult = z.looseObject({});
export type CallResult = z.infer<typeof callResult>;

export type CallOptions = { signal: AbortSignal; onprogress?: ((p: Progress) => void) | undefined };

export type Upstream = {
  readonly name: string;
  /** Every tool the upstream lists now (all pages). */
  listTools(): Promise<UpstreamTool[]>;
  callTool(params: Record<string, unknown>, options: CallOptions): Promise<CallResult>;
  instructions(): string | undefined;
  close(): Promise<void>;
};

export type UpstreamEvents = {
  /** The upstream said its tool list changed. */
  onToolsChanged: (upstream: string) => void;
  onClose?: (upstream: string) => void;
  /** The upstream logged (notifications/message). */
  onLog?: (upstream: string, params: LoggingMessageNotification['params']) => void;
};

const transportFor = (cfg: UpstreamConfig): Transport =>
  isStdio(cfg)
    ? new StdioClientTransport({
        command: cfg.command,
        args: cfg.args,
        env: { ...getDefaultEnvironment(), ...cfg.env },
        ...(cfg.cwd !== undefined && { cwd: cfg.cwd }),
        stderr: 'inherit',
      })
    : new UpstreamHttpTransport(new URL(cfg.url), { headers: cfg.headers });

/** Wraps a connected transport (tests pass an in-memory one). */
export const connectUpstream = async (name: string, cfg: Pick<UpstreamConfig, 'timeout_ms'>, transport: Transport, events: UpstreamEvents): Promise<Upstream> => {
  const client = new Client({ name: GATE_INFO.name, version: GATE_INFO.version }, { capabilities: {} });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => events.onToolsChanged(name));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => events.onLog?.(name, n.params));
  client.onclose = () => events.onClose?.(name);
  await client.connect(transport);
  const timeout = cfg.timeout_ms;
  return {
    name,
    async listTools() {
      const tools: UpstreamTool[] = [];
      let cursor: string | undefined;
      do {
        const page = await client.request({ method: 'tools/list', params: cursor === undefined ? {} : { cursor } }, listResult, { timeout });
        tools.push(...(page.tools as UpstreamTool[]));
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      return tools;
    },
    callTool: (params, o) =>
      client.request({ method: 'tools/call', params: params as { name: string } }, callResult, {
        signal: o.signal,
        timeout,
        ...(o.onprogress !== undefined && { onprogress: o.onprogress, resetTimeoutOnProgress: true }),
      }),
    instructions: () => client.getInstructions(),
    close: () => client.close(),
  };
};

/** Starts (stdio) or reaches (HTTP) the configured upstream. */
export const openUpstream = (name: string, cfg: UpstreamConfig, events: UpstreamEvents): Promise<Upstream> =>
  connectUpstream(name, cfg, transportFor(cfg), events).catch((e: unknown) => {
    const where = isStdio(cfg) ? `command ${cfg.command}` : cfg.url;
    throw new Error(`upstream ${name} (${where}): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  });
