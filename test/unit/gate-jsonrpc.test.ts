// The transports' JSON-RPC parse: the hand-checked common shapes must give
// exactly the SDK schema's verdict, and its value, on every message.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import { parseJsonRpcMessage } from '../../services/gate/jsonrpc.ts';

const messages: unknown[] = [
  // the common shapes
  { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 't', arguments: {} } },
  { jsonrpc: '2.0', id: 'a', method: 'ping' },
  { jsonrpc: '2.0', method: 'notifications/initialized' },
  { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } },
  { jsonrpc: '2.0', id: 7, result: { content: [{ type: 'text', text: 'x' }] } },
  { jsonrpc: '2.0', id: 'r', result: {} },
  // what the schema decides (a _meta, errors, odd ids and keys)
  { jsonrpc: '2.0', id: 7, result: { _meta: { progressToken: 'p' }, content: [] } },
  { jsonrpc: '2.0', id: 7, result: { _meta: { progressToken: 1.5 } } },
  { jsonrpc: '2.0', id: 7, result: { _meta: null } },
  { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { _meta: { 'trustfold/intent': 'x' }, name: 't' } },
  { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { _meta: 'no' } },
  { jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'Unknown tool' } },
  { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error' } },
  { jsonrpc: '2.0', id: 1, error: { code: 1.5, message: 'x' } },
  { jsonrpc: '2.0', id: 1.5, result: {} },
  { jsonrpc: '2.0', id: 2 ** 53, result: {} },
  { jsonrpc: '2.0', id: null, result: {} },
  { jsonrpc: '2.0', id: null, method: 'ping' },
  { jsonrpc: '2.0', id: 1, result: [] },
  { jsonrpc: '2.0', id: 1, result: null },
  { jsonrpc: '2.0', id: 1 },
  { jsonrpc: '2.0', id: 1, result: {}, extra: true },
  { jsonrpc: '2.0', id: 1, method: 'ping', extra: true },
  { jsonrpc: '2.0', method: 'ping', params: [] },
  { jsonrpc: '2.0', method: 'ping', params: null },
  { jsonrpc: '2.0', method: 'ping', params: undefined },
  { jsonrpc: '2.0', method: 'ping', result: {} },
  { jsonrpc: '2.0', id: 1, method: 'ping', result: {} },
  { jsonrpc: '1.0', id: 1, result: {} },
  { id: 1, result: {} },
  { jsonrpc: '2.0', method: 5 },
  JSON.parse('{"jsonrpc":"2.0","id":1,"result":{},"__proto__":{}}'),
  JSON.parse('{"jsonrpc":"2.0","id":1,"method":"x","params":{"__proto__":{"_meta":1}}}'),
  [],
  null,
  'text',
  42,
];

describe('JSON-RPC parse', () => {
  test('the same verdict and value as JSONRPCMessageSchema on every message', () => {
    for (const m of messages) {
      const ours = parseJsonRpcMessage(m);
      const sdk = JSONRPCMessageSchema.safeParse(m);
      assert.equal(ours.success, sdk.success, JSON.stringify(m));
      if (ours.success && sdk.success) assert.deepEqual(ours.data, sdk.data, JSON.stringify(m));
    }
  });
});
