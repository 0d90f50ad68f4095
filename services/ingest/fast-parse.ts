// A fast path for zod at the ingest edge, compiled from the contract's own
// zod schema. zod v4 spends most of an event's parse on bookkeeping for
// errors it might report (a payload and an issue list per field, check
// runners, regex flags); on a valid event none of it is needed. The compiled
// checker tests exactly what the schema's definition says — types, lengths,
// formats (the same regexes), enums, literals, integer bounds, strict keys,
// defaults, the timestamp transform — and builds the same output object, keys
// in schema order, as zod would.
//
// It is an accelerator, never an authority: it answers either the parsed
// value or "don't know", and on "don't know" the caller asks zod, whose
// verdict and field errors are what the client sees. So an invalid event
// costs a failed fast try plus zod, and a schema construct this compiler does
// not know makes it decline at compile time (then zod parses everything).
// test/unit/ingest-fast-parse.test.ts checks, over the fixtures and
// thousands of mutations of them, that whatever the fast path accepts zod
// accepts with a deep-equal output (same key order), and that it accepts
// the valid ones.
import type { z } from 'zod';

/** "Don't know": ask zod. */
export const DECLINE: unique symbol = Symbol('decline');
type Out = unknown;
type Node = (value: unknown) => Out | typeof DECLINE;

/** The parts of zod v4's internal definitions the compiler reads. */
type CheckDef = { check: string; minimum?: number; maximum?: number; value?: unknown; inclusive?: boolean; format?: string; pattern?: RegExp };
type Def = {
  type: string;
  checks?: readonly { _zod: { def: CheckDef } }[];
  coerce?: boolean;
  format?: string;
  pattern?: RegExp;
  shape?: Record<string, Internal>;
  catchall?: Internal;
  innerType?: Internal;
  element?: Internal;
  options?: readonly Internal[];
  discriminator?: string;
  values?: readonly unknown[];
  entries?: Record<string, unknown>;
  in?: Internal;
  out?: Internal;
  transform?: (value: unknown, payload: { value: unknown; issues: unknown[] }) => unknown;
  readonly defaultValue?: unknown;
};
type Internal = { _zod: { def: Def; optin?: string; optout?: string } };

class Unsupported extends Error {}
const unsupported = (what: string): never => {
  throw new Unsupported(what);
};

const internal = (schema: unknown): Internal => schema as Internal;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Length bounds from min_length / max_length checks; any other check is unsupported. */
const lengthBounds = (def: Def, allowed: readonly string[] = []): { min: number; max: number; extra: CheckDef[] } => {
  let min = 0;
  let max = Infinity;
  const extra: CheckDef[] = [];
  for (const c of def.checks ?? []) {
    const cd = c._zod.def;
    if (cd.check === 'min_length' && typeof cd.minimum === 'number') min = Math.max(min, cd.minimum);
    else if (cd.check === 'max_length' && typeof cd.maximum === 'number') max = Math.min(max, cd.maximum);
    else if (allowed.includes(cd.check)) extra.push(cd);
    else unsupported(`check ${cd.check}`);
  }
  return { min, max, extra };
};

/** The regexes zod tests for the string formats the contract uses (zod resets lastIndex before each test). */
const FORMATS = new Set(['uuid', 'datetime']);
const formatPattern = (format: string | undefined, pattern: RegExp | undefined): RegExp => {
  if (format === undefined || !FORMATS.has(format) || !(pattern instanceof RegExp)) return unsupported(`string format ${format ?? '?'}`);
  return pattern;
};

const compileString = (def: Def): Node => {
  if (def.coerce === true) unsupported('coerced string');
  const { min, max, extra } = lengthBounds(def, ['string_format']);
  const patterns: RegExp[] = [];
  if (def.format !== undefined) patterns.push(formatPattern(def.format, def.pattern));
  for (const cd of extra) patterns.push(formatPattern(cd.format, cd.pattern));
  if (patterns.length === 0) return (v) => (typeof v === 'string' && v.length >= min && v.length <= max ? v : DECLINE);
  return (v) => {
    if (typeof v !== 'string' || v.length < min || v.length > max) return DECLINE;
    for (const p of patterns) {
      p.lastIndex = 0;
      if (!p.test(v)) return DECLINE;
    }
    return v;
  };
};

const compileNumber = (def: Def): Node => {
  if (def.coerce === true) unsupported('coerced number');
  let integer = false;
  let lo = -Infinity;
  let loInclusive = true;
  let hi = Infinity;
  let hiInclusive = true;
  for (const c of def.checks ?? []) {
    const cd = c._zod.def;
    if (cd.check === 'number_format' && cd.format === 'safeint') integer = true;
    else if (cd.check === 'greater_than' && typeof cd.value === 'number') {
      lo = cd.value;
      loInclusive = cd.inclusive === true;
    } else if (cd.check === 'less_than' && typeof cd.value === 'number') {
      hi = cd.value;
      hiInclusive = cd.inclusive === true;
    } else unsupported(`number check ${cd.check}`);
  }
  return (v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return DECLINE;
    if (integer && !Number.isSafeInteger(v)) return DECLINE;
    if (loInclusive ? v < lo : v <= lo) return DECLINE;
    if (hiInclusive ? v > hi : v >= hi) return DECLINE;
    return v;
  };
};

type Field = { key: string; node: Node; kind: 'required' | 'optional' | 'defaulted'; defaultOf?: () => unknown };

const compileObject = (def: Def): Node => {
  if (def.catchall?._zod.def.type !== 'never') unsupported('non-strict object');
  if ((def.checks ?? []).length > 0) unsupported('object checks');
  const fields: Field[] = Object.entries(def.shape ?? {}).map(([key, schema]) => {
    const z = schema._zod;
    const d = z.def;
    if (d.type === 'optional') {
      if (z.optin !== 'optional' || z.optout !== 'optional' || d.innerType?._zod.optin !== undefined) unsupported(`optional ${key}`);
      return { key, node: compile(d.innerType), kind: 'optional' };
    }
    if (d.type === 'default') {
      if (z.optin !== 'defaulted' || z.optout !== undefined || d.innerType?._zod.optin !== undefined) unsupported(`default ${key}`);
      // zod reads the (cloning) getter each time the key is absent; so does this.
      return { key, node: compile(d.innerType), kind: 'defaulted', defaultOf: () => d.defaultValue };
    }
    if (z.optin !== undefined || z.optout !== undefined) unsupported(`optional-like ${key}`);
    return { key, node: compile(schema), kind: 'required' };
  });
  const known = new Set(fields.map((f) => f.key));
  if (known.has('__proto__')) unsupported('__proto__ key');
  return objectChecker(fields, known);
};

/**
 * The object checker is generated code, as zod's own object parser is: one
 * named property load and one named store per field, so each site stays
 * monomorphic, where a loop over the field list goes through generic keyed
 * access. The source holds only the schema's keys (as JSON string literals)
 * and indexes into the closures compiled above; nothing from a request.
 *
 * Per field: a required one declines on undefined (every checker here does,
 * so absence needs no separate test); an optional one is skipped when
 * absent, kept as undefined when present with that value, as zod does; a
 * defaulted one takes a fresh default when undefined. Then every enumerable
 * key (own or inherited: zod walks for…in too) must be a known one.
 */
const objectChecker = (fields: readonly Field[], known: ReadonlySet<string>): Node => {
  const lines: string[] = ['if (typeof v !== "object" || v === null || Array.isArray(v)) return D;', 'const o = {};', 'let x, r;'];
  fields.forEach((f, i) => {
    const k = JSON.stringify(f.key);
    lines.push(`x = v[${k}];`);
    const check = `r = n[${i}](x); if (r === D) return D; o[${k}] = r;`;
    if (f.kind === 'required') lines.push(check);
    else if (f.kind === 'optional') lines.push(`if (x !== undefined) { ${check} } else if (${k} in v) o[${k}] = undefined;`);
    else lines.push(`if (x !== undefined) { ${check} } else o[${k}] = d[${i}]();`);
  });
  lines.push('for (const k in v) if (!known.has(k)) return D;', 'return o;');
  const factory = new Function('n', 'd', 'D', 'known', `"use strict"; return function check(v) {\n${lines.join('\n')}\n};`) as (
    n: readonly Node[],
    d: readonly ((() => unknown) | undefined)[],
    D: typeof DECLINE,
    known: ReadonlySet<string>,
  ) => Node;
  return factory(
    fields.map((f) => f.node),
    fields.map((f) => f.defaultOf),
    DECLINE,
    known,
  );
};

const compileArray = (def: Def): Node => {
  const { min, max } = lengthBounds(def);
  const element = compile(def.element);
  return (v) => {
    if (!Array.isArray(v) || v.length < min || v.length > max) return DECLINE;
    const out: unknown[] = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) {
      const r = element(v[i]);
      if (r === DECLINE) return DECLINE;
      out[i] = r;
    }
    return out;
  };
};

/** The discriminator values an option answers to (a literal in an object, or every option of a nested union). */
const valuesFor = (schema: Internal, key: string): unknown[] => {
  const d = schema._zod.def;
  if (d.type === 'object') {
    const field = d.shape?.[key]?._zod.def;
    if (field?.type !== 'literal' || field.values === undefined) return unsupported(`discriminator ${key} not a literal`);
    return [...field.values];
  }
  if (d.type === 'union') return (d.options ?? []).flatMap((o) => valuesFor(o, key));
  return unsupported(`discriminated option ${d.type}`);
};

const compileUnion = (def: Def): Node => {
  const key = def.discriminator;
  if (key === undefined) return unsupported('union without a discriminator');
  const byValue = new Map<unknown, Node>();
  for (const option of def.options ?? []) {
    const node = compile(option);
    for (const value of new Set(valuesFor(option, key))) {
      if (byValue.has(value)) unsupported(`discriminator value ${String(value)} in two options`);
      byValue.set(value, node);
    }
  }
  return (v) => {
    if (!isObject(v)) return DECLINE;
    const node = byValue.get(v[key]);
    return node === undefined ? DECLINE : node(v);
  };
};

const compilePipe = (def: Def): Node => {
  const first = compile(def.in);
  const outDef = def.out?._zod.def;
  if (outDef?.type !== 'transform' || typeof outDef.transform !== 'function') return unsupported('pipe into a non-transform');
  const transform = outDef.transform;
  return (v) => {
    const r = first(v);
    if (r === DECLINE) return DECLINE;
    const payload = { value: r, issues: [] as unknown[] };
    const t = transform(r, payload);
    return payload.issues.length > 0 || t instanceof Promise ? DECLINE : t;
  };
};

const compile = (schema: Internal | undefined): Node => {
  if (schema === undefined) return unsupported('missing schema');
  const def = schema._zod.def;
  switch (def.type) {
    case 'string':
      return compileString(def);
    case 'number':
      return compileNumber(def);
    case 'boolean':
      if (def.coerce === true || (def.checks ?? []).length > 0) unsupported('boolean');
      return (v) => (typeof v === 'boolean' ? v : DECLINE);
    case 'literal': {
      // Every checker declines undefined (the object checker relies on it).
      if ((def.values ?? []).includes(undefined)) unsupported('undefined literal');
      const values = new Set(def.values ?? []);
      return (v) => (values.has(v) ? v : DECLINE);
    }
    case 'enum': {
      const values = Object.values(def.entries ?? {});
      if (!values.every((x) => typeof x === 'string')) unsupported('non-string enum');
      const set = new Set(values);
      return (v) => (typeof v === 'string' && set.has(v) ? v : DECLINE);
    }
    case 'object':
      return compileObject(def);
    case 'array':
      return compileArray(def);
    case 'union':
      return compileUnion(def);
    case 'pipe':
      return compilePipe(def);
    default:
      return unsupported(def.type);
  }
};

export type FastParse<T> = (input: unknown) => T | typeof DECLINE;

/**
 * The fast path for `schema`, or undefined when the schema uses something
 * the compiler does not know (then parse with zod alone).
 */
export const compileFastParse = <S extends z.ZodType>(schema: S): FastParse<z.output<S>> | undefined => {
  try {
    return compile(internal(schema)) as FastParse<z.output<S>>;
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
};
