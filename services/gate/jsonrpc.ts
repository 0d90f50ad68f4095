// Parsing a JSON-RPC message as the SDK's JSONRPCMessageSchema does, with the
// common shapes checked by hand. Both transports parse every message they
// receive; zod's union tries the request schema first, so an upstream's
// answer (the commonest message) went through a failed parse before the one
// that matched — in the gateway's profile the two parses per call were ~5 % of
// its CPU. The hand check accepts only what the schema accepts, and returns
// the value unchanged (zod would return an equal copy); anything it is not
// sure of (a `_meta`, an error answer, an unusual id) goes to zod, which
// decides as before. A unit test holds the two to the same verdicts.
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

type Parsed = { success: true; data: JSONRPCMessage } | { success: false; error: { message: string } };

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RequestIdSchema: a string or an integer (zod's int is a safe integer). */
const isId = (v: unknown): boolean => typeof v === 'string' || Number.isSafeInteger(v);

/**
 * `params` of a request or notification, or `result` of an answer, without `_meta` (whose schema zod checks)
 * and without an own `__proto__` key (which zod's copy drops).
 */
const isBody = (v: unknown): boolean => isPlainObject(v) && !Object.hasOwn(v, '_meta') && !Object.hasOwn(v, '__proto__');

/** The strict schemas allow exactly these keys; `keys` are the message's own. */
const exactly = (m: Record<string, unknown>, required: readonly string[], optional?: string): boolean => {
  const n = Object.keys(m).length;
  for (const k of required) if (!Object.hasOwn(m, k)) return false;
  return n === required.length || (optional !== undefined && n === required.length + 1 && Object.hasOwn(m, optional));
};

/** The message if it is one of the common shapes, every field valid for the schema; else undefined (ask zod). */
const common = (raw: unknown): JSONRPCMessage | undefined => {
  if (!isPlainObject(raw) || raw['jsonrpc'] !== '2.0') return undefined;
  if (typeof raw['method'] === 'string') {
    const params = raw['params'];
    if (params !== undefined && !isBody(params)) return undefined;
    const shape = Object.hasOwn(raw, 'id') ? ['jsonrpc', 'id', 'method'] : ['jsonrpc', 'method'];
    if (Object.hasOwn(raw, 'id') && !isId(raw['id'])) return undefined;
    return exactly(raw, shape, 'params') && (params !== undefined || !Object.hasOwn(raw, 'params')) ? (raw as JSONRPCMessage) : undefined;
  }
  if (isId(raw['id']) && isBody(raw['result']) && exactly(raw, ['jsonrpc', 'id', 'result'])) return raw as JSONRPCMessage;
  return undefined;
};

/** JSONRPCMessageSchema.safeParse, the common shapes without zod. */
export const parseJsonRpcMessage = (raw: unknown): Parsed => {
  const fast = common(raw);
  if (fast !== undefined) return { success: true, data: fast };
  const r = JSONRPCMessageSchema.safeParse(raw);
  return r.success ? { success: true, data: r.data } : { success: false, error: { message: r.error.message } };
};
