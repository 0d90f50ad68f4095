// Verified bearer tokens, remembered: every HTTP request carries its token and
// is authenticated on its own, and an HS256/JWKS verification through WebCrypto
// is the most expensive step of a request the gateway answers itself. A token
// verified once is taken again without re-verifying, keyed by the SHA-256 of
// the raw token (a different byte is a different key), never past its `exp`
// (the authenticator's clock skew is not extended to cached entries), in a
// bounded LRU. Failures are not cached: a bad token is checked every time.
import { hash } from 'node:crypto';

export type TokenCache<T> = {
  /** The cached value for this raw token, if it was verified and has not expired at `nowMs`. */
  get(token: string, nowMs: number): T | undefined;
  /** Remembers a verified token until `expiresAtMs`. */
  set(token: string, value: T, expiresAtMs: number): void;
  readonly size: number;
};

export const createTokenCache = <T>(maxEntries = 10_000): TokenCache<T> => {
  const entries = new Map<string, { value: T; expiresAtMs: number }>();
  // One-shot hash: no Hash object per request (createHash was a visible share of a cached request's cost).
  const keyOf = (token: string): string => hash('sha256', token, 'base64');
  return {
    get(token, nowMs) {
      const key = keyOf(token);
      const e = entries.get(key);
      if (e === undefined) return undefined;
      entries.delete(key);
      if (nowMs >= e.expiresAtMs) return undefined;
      entries.set(key, e); // most recently used last
      return e.value;
    },
    set(token, value, expiresAtMs) {
      const key = keyOf(token);
      entries.delete(key);
      entries.set(key, { value, expiresAtMs });
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next();
        if (oldest.done === true) break;
        entries.delete(oldest.value);
      }
    },
    get size() {
      return entries.size;
    },
  };
};
