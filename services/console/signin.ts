// One-time sign-in codes for the console link `npm start` prints. The link's
// fragment carries a code, not the token: the page trades it once, in a POST
// body, for the token (POST /console/api/sign-in). A code lives a few
// minutes, works once, and is kept only as its SHA-256, so neither a
// browser's history nor a screen share of the link hands out the token.
//
// The store is in memory of the process that prints the link and serves the
// API (`trustfold serve` runs both in one process): a restarted server knows
// no earlier code, and the page then says so and offers the paste box.
import { createHash, randomBytes } from 'node:crypto';

/** How long a printed link can be used. */
export const SIGN_IN_CODE_TTL_MS = 5 * 60_000;
/** 32 random bytes, base64url: 43 characters. */
export const SIGN_IN_CODE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export type Redeemed =
  | { ok: true; token: string }
  | { ok: false; reason: 'unknown' | 'used' | 'expired'; message: string };

export type SignInCodes = {
  /** A fresh code for `token`, usable once before `expiresAt` (ms). */
  issue(token: string, ttlMs?: number): { code: string; expiresAt: number };
  /** The token, the first time only; afterwards, or after its expiry, why not. */
  redeem(code: string): Redeemed;
  /** Codes held (used and expired ones are kept a while, to say so). */
  size(): number;
};

type Entry = { token: string | undefined; issuedAt: number; expiresAt: number; usedAt?: number };

const hashOf = (code: string): string => createHash('sha256').update(code).digest('base64url');
const minutes = (ms: number): string => (ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`);
const utc = (ms: number): string => `${new Date(ms).toISOString().replace('T', ' ').slice(0, 19)} UTC`;

export type SignInCodesOptions = {
  now?: () => number;
  /** Past its expiry an entry is kept this long, so a late or second use is told why. Default 1 h. */
  keepMs?: number;
  /** At most this many entries; the oldest go first. Default 1000. */
  max?: number;
};

export const createSignInCodes = (o: SignInCodesOptions = {}): SignInCodes => {
  const now = o.now ?? Date.now;
  const keepMs = o.keepMs ?? 3_600_000;
  const max = o.max ?? 1000;
  // Insertion order is issue order: the first entries are the oldest.
  const entries = new Map<string, Entry>();
  const prune = (t: number): void => {
    for (const [k, e] of entries) if (e.expiresAt + keepMs < t) entries.delete(k);
    while (entries.size > max) {
      const first = entries.keys().next();
      if (first.done === true) break;
      entries.delete(first.value);
    }
  };
  return {
    issue(token, ttlMs = SIGN_IN_CODE_TTL_MS) {
      if (token === '') throw new Error('issue: empty token');
      if (!(ttlMs > 0)) throw new Error('issue: ttlMs must be positive');
      const t = now();
      const code = randomBytes(32).toString('base64url');
      entries.set(hashOf(code), { token, issuedAt: t, expiresAt: t + ttlMs });
      prune(t);
      return { code, expiresAt: t + ttlMs };
    },
    redeem(code) {
      const t = now();
      prune(t);
      const e = entries.get(hashOf(code));
      if (e === undefined) {
        return { ok: false, reason: 'unknown', message: 'this sign-in link is not known to the server (it was restarted since the link was printed, or the link is incomplete)' };
      }
      if (e.usedAt !== undefined) return { ok: false, reason: 'used', message: `this sign-in link was already used (at ${utc(e.usedAt)}); a link works once` };
      const token = e.token;
      // Spent before anything else can happen, whatever the outcome; the token is no longer held.
      e.token = undefined;
      if (t >= e.expiresAt || token === undefined) {
        return { ok: false, reason: 'expired', message: `this sign-in link expired at ${utc(e.expiresAt)} (a link works for ${minutes(e.expiresAt - e.issuedAt)} after it is printed)` };
      }
      e.usedAt = t;
      return { ok: true, token };
    },
    size: () => entries.size,
  };
};

/** The process's codes: `trustfold serve` issues into it, the console plugin redeems from it. */
export const signInCodes: SignInCodes = createSignInCodes();
