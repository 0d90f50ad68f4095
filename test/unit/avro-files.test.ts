import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import avro from 'avsc';
import type { Schema as AvscSchema, Type } from 'avsc';
import { COMMON_FILE, avscFiles } from '../../schemas/avro-files.ts';
import { canonicalForm, createCodec, rabinFingerprint, type CodecKey } from '../../schemas/codec.ts';

const files = avscFiles();

test('schemas/avro/*.avsc match schemas/avro.ts (run `npm run schemas:export` after a change)', () => {
  assert.ok(Object.keys(files).length >= 16);
  assert.deepEqual(readdirSync('schemas/avro').filter((f) => f.endsWith('.avsc')).sort(), Object.keys(files).sort());
  for (const [file, text] of Object.entries(files)) {
    assert.equal(readFileSync(`schemas/avro/${file}`, 'utf8'), text, `schemas/avro/${file} is stale`);
  }
});

// One registry for the whole folder, as one Java Schema.Parser would have:
// avsc refuses a name defined twice ("duplicate type name").
const parseFolder = (): Map<string, Type> => {
  const registry: Record<string, Type> = {};
  const opts = { registry, wrapUnions: false } as const;
  // common.avsc is a union of records, which avsc can only represent wrapped.
  avro.Type.forSchema(JSON.parse(files[COMMON_FILE] ?? 'null') as AvscSchema, { registry, wrapUnions: true });
  const out = new Map<string, Type>();
  for (const [file, text] of Object.entries(files)) {
    if (file !== COMMON_FILE) out.set(file, avro.Type.forSchema(JSON.parse(text) as AvscSchema, opts));
  }
  return out;
};

test('the folder parses in one registry: every named type is defined once', () => {
  assert.equal(parseFolder().size, Object.keys(files).length - 1);
});

test('each exported schema has the fingerprint the codec writes', () => {
  const codec = createCodec();
  for (const [file, type] of parseFolder()) {
    const key = file.replace(/\.avsc$/, '').replaceAll('-', '_') as CodecKey;
    assert.deepEqual(rabinFingerprint(canonicalForm(type)), codec.fingerprint(key), file);
  }
});

test('every enum in the folder has a default symbol among its symbols', () => {
  const enums = new Map<string, { symbols: string[]; default?: string }>();
  const walk = (s: unknown): void => {
    if (Array.isArray(s)) return s.forEach(walk);
    if (s === null || typeof s !== 'object') return;
    const o = s as Record<string, unknown>;
    if (o.type === 'enum') enums.set(String(o.name), o as unknown as { symbols: string[]; default?: string });
    for (const v of Object.values(o)) walk(v);
  };
  for (const text of Object.values(files)) walk(JSON.parse(text));
  assert.deepEqual(
    [...enums.keys()].sort(),
    ['ChainLinkKind', 'Effect', 'OutcomeStatus', 'Severity', 'Tier'].map((n) => `trustfold.v1.${n}`),
  );
  for (const [name, e] of enums) {
    assert.ok(e.default !== undefined && e.symbols.includes(e.default), `${name} has no valid default`);
  }
});
