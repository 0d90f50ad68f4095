// chunkMessages: sends bounded by bytes, order kept, nothing dropped.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkMessages } from '../../services/lib/kafka.ts';

const msg = (i: number, size: number): { key: string; value: Buffer } => ({ key: `k${i}`, value: Buffer.alloc(size, i % 256) });

test('chunks stay under the byte bound, keep order and lose nothing', () => {
  const messages = Array.from({ length: 5_000 }, (_, i) => msg(i, 100 + (i % 7) * 300));
  const chunks = chunkMessages(messages, 256 * 1024);
  assert.ok(chunks.length > 1, 'a multi-MiB group is split');
  for (const c of chunks) {
    const bytes = c.reduce((n, m) => n + m.value.length + m.key.length + 64, 0);
    assert.ok(bytes <= 256 * 1024, `chunk of ${bytes} B`);
  }
  assert.deepEqual(chunks.flat().map((m) => m.key), messages.map((m) => m.key));
});

test('a single message larger than the bound travels alone; small groups stay one send', () => {
  const big = msg(1, 400_000);
  const chunks = chunkMessages([msg(0, 10), big, msg(2, 10)], 256 * 1024);
  assert.deepEqual(chunks.map((c) => c.map((m) => m.key)), [['k0'], ['k1'], ['k2']]);
  assert.equal(chunkMessages([msg(0, 10), msg(1, 10)]).length, 1);
  assert.deepEqual(chunkMessages([]), []);
});
