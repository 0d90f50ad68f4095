// RFC 8785 JSON Canonicalization Scheme for the JSON values audit records
// hold. Pure. JCS serialises strings and numbers exactly as ECMAScript's
// JSON.stringify does, sorts object members by their UTF-16 code units
// (what Array.prototype.sort compares) and emits no whitespace.
export type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json | undefined };

/** Whether a key list is already in UTF-16 code-unit order (the usual case for records built in order: no sort). */
const sorted = (keys: readonly string[]): boolean => {
  for (let i = 1; i < keys.length; i++) if ((keys[i - 1] as string) > (keys[i] as string)) return false;
  return true;
};

// One string built left to right (no intermediate arrays per member): the writer canonicalises every record it logs.
const write = (v: Json, out: string[]): void => {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') {
    out.push(JSON.stringify(v));
    return;
  }
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError('JCS: numbers must be finite');
    out.push(JSON.stringify(v));
    return;
  }
  if (Array.isArray(v)) {
    const a = v as readonly Json[];
    out.push('[');
    for (let i = 0; i < a.length; i++) {
      if (i > 0) out.push(',');
      write(a[i] as Json, out);
    }
    out.push(']');
    return;
  }
  const o = v as { readonly [k: string]: Json | undefined };
  const keys = Object.keys(o);
  if (!sorted(keys)) keys.sort();
  out.push('{');
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    out.push(first ? `${JSON.stringify(k)}:` : `,${JSON.stringify(k)}:`);
    first = false;
    write(x, out);
  }
  out.push('}');
};

/** Keys JavaScript would enumerate first (array indices), so an object holding one cannot be ordered by insertion. */
const hasIndexKey = (keys: readonly string[]): boolean => keys.some((k) => k.length > 0 && k.charCodeAt(0) >= 48 && k.charCodeAt(0) <= 57);

const NOT_PLAIN = Symbol('not plain');

/** A plain object or array: what JSON.stringify serialises by its own members alone (no prototype of another kind). */
const isPlain = (o: object): boolean => {
  const p: unknown = Object.getPrototypeOf(o);
  return p === Object.prototype || p === null || (Array.isArray(o) && p === Array.prototype);
};

/**
 * A value whose objects hold their members in JCS order, so the engine's own
 * JSON.stringify (which serialises strings and numbers exactly as JCS does)
 * writes the canonical form in one native pass. A plain object or array that
 * is already in that order (no member to sort or drop, its members alike) is
 * returned itself, not copied: records built in order cost no allocation.
 * NOT_PLAIN when some object has index-like keys (enumerated numerically
 * whatever the insertion order).
 */
const ordered = (v: Json): Json | typeof NOT_PLAIN => {
  if (v === null || typeof v !== 'object') {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new RangeError('JCS: numbers must be finite');
    return v;
  }
  if (Array.isArray(v)) {
    const a = v as readonly Json[];
    let out: Json[] | undefined = isPlain(a) ? undefined : new Array<Json>(a.length);
    for (let i = 0; i < a.length; i++) {
      const x = a[i] as Json;
      const y = ordered(x);
      if (y === NOT_PLAIN) return NOT_PLAIN;
      if (out === undefined && y !== x) out = a.slice(0, i);
      if (out !== undefined) out[i] = y;
    }
    return out ?? a;
  }
  const o = v as { readonly [k: string]: Json | undefined };
  const keys = Object.keys(o);
  if (hasIndexKey(keys)) return NOT_PLAIN;
  const inOrder = sorted(keys);
  let same = inOrder && isPlain(o);
  if (!inOrder) keys.sort();
  const values: Json[] = [];
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) {
      same = false;
      values.push(null);
      continue;
    }
    const y = ordered(x);
    if (y === NOT_PLAIN) return NOT_PLAIN;
    if (y !== x) same = false;
    values.push(y);
  }
  if (same) return o;
  const out: { [k: string]: Json } = {};
  keys.forEach((k, i) => {
    if (o[k] !== undefined) out[k] = values[i] as Json;
  });
  return out;
};

export const canonicalJson = (v: Json): string => {
  const o = ordered(v);
  if (o !== NOT_PLAIN) return JSON.stringify(o);
  const out: string[] = [];
  write(v, out);
  return out.join('');
};

const encoder = new TextEncoder();
export const canonicalBytes = (v: Json): Uint8Array => encoder.encode(canonicalJson(v));
