// RFC 8785 JSON Canonicalization Scheme for the JSON values audit records
// hold. Pure. JCS serialises strings and numbers exactly as ECMAScript's
// JSON.stringify does, sorts object members by their UTF-16 code units
// (what Array.prototype.sort compares) and emits no whitespace.
export type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json | undefined };

export const canonicalJson = (v: Json): string => {
  if (v === null || typeof v === 'boolean') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError('JCS: numbers must be finite');
    return JSON.stringify(v);
  }
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${(v as readonly Json[]).map(canonicalJson).join(',')}]`;
  const o = v as { readonly [k: string]: Json | undefined };
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k] as Json)}`).join(',')}}`;
};

export const canonicalBytes = (v: Json): Uint8Array => new TextEncoder().encode(canonicalJson(v));
