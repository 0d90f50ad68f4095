// Opaque page cursors: base64url JSON of the last row's sort key plus a hash
// of the query it belongs to, so a cursor replayed against other filters is
// refused instead of silently skipping or repeating rows. The hash is not a
// signature: anyone can build a cursor, so each route decodes its key with
// the exact shape it issues (`decodeKey`), and a forged time or id is a 400
// naming `cursor`, never a query error.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { err, ok, type Result } from '../../schemas/result.ts';

const cursorSchema = z.strictObject({
  v: z.literal(1),
  /** Which query: a hash of the route, tenant scope and filters. */
  q: z.string().length(16),
  /** The sort key of the last row returned: ISO time plus tie-breakers. */
  k: z.array(z.union([z.string().max(512), z.number().int()])).min(1).max(4),
});
export type Cursor = z.infer<typeof cursorSchema>;

/** A stable hash of what a page was asked for; key order does not matter. */
export const queryHash = (route: string, scope: Record<string, unknown>): string => {
  const canonical = JSON.stringify([route, Object.keys(scope).sort().map((k) => [k, scope[k] ?? null])]);
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 16);
};

export const encodeCursor = (q: string, key: readonly (string | number)[]): string =>
  Buffer.from(JSON.stringify({ v: 1, q, k: key }), 'utf8').toString('base64url');

export const decodeCursor = (cursor: string, q: string): Result<Cursor['k'], string> => {
  if (cursor.length > 2048 || !/^[A-Za-z0-9_-]+$/.test(cursor)) return err('cursor is not one this API issued');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return err('cursor is not one this API issued');
  }
  const r = cursorSchema.safeParse(parsed);
  if (!r.success) return err('cursor is not one this API issued');
  if (r.data.q !== q) return err('cursor belongs to a different query (filters, tenant or order changed)');
  return ok(r.data.k);
};

/** The one time form cursors carry: UTC, milliseconds, as `Date.toISOString()` writes it. */
const keyTime = z.iso.datetime({ precision: 3 });
const keyText = z.string().min(1).max(512);

/** The sort keys the audit routes issue, by route. */
export const CURSOR_KEYS = {
  decisions: z.tuple([keyTime, z.uuid()]),
  timeline: z.tuple([keyTime, z.number().int().min(0).max(1_000), keyText]),
  delegator: z.tuple([keyTime, keyText, keyText]),
} as const;

/** decodeCursor, then the key checked against the shape the route issues. */
export const decodeKey = <T>(cursor: string, q: string, shape: z.ZodType<T>): Result<T, string> => {
  const k = decodeCursor(cursor, q);
  if (!k.ok) return k;
  const r = shape.safeParse(k.value);
  return r.success ? ok(r.data) : err('cursor is not one this API issued');
};
