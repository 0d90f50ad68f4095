import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { avscFiles } from '../../schemas/avro-files.ts';

test('schemas/avro/*.avsc match schemas/avro.ts (run `npm run schemas:export` after a change)', () => {
  const files = avscFiles();
  assert.ok(Object.keys(files).length >= 15);
  for (const [file, text] of Object.entries(files)) {
    assert.equal(readFileSync(`schemas/avro/${file}`, 'utf8'), text, `schemas/avro/${file} is stale`);
  }
});
