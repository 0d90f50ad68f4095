// Digests and ids derived from the source: the same arguments hash equal
// whatever their key order, and the same log entry always yields the same id.
import { createHash } from 'node:crypto';

/** Canonical JSON (sorted keys), so equal arguments hash equal whatever the key order. */
export const canonicalJson = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
};

export const digestOf = (v: unknown): string => `sha256:${createHash('sha256').update(canonicalJson(v)).digest('hex')}`;

/**
 * A deterministic event id: a UUID (version 8, RFC 9562 "custom") made of the
 * first 128 bits of SHA-256 over the source's own identity. The same log
 * entry, redelivered or re-uploaded, always yields the same id, so the
 * pipeline sees a duplicate and never a second decision.
 */
export const deterministicId = (...parts: readonly string[]): string => {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x80;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
};
