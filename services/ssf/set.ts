// Security Event Tokens (RFC 8417) as SSF 1.0 profiles them: a JWS with
// header `typ: secevent+jwt`, claims iss, jti, iat, aud, txn, a top-level
// `sub_id`, exactly one member in `events`, and neither `sub` nor `exp`.
import { createHash } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey, type KeyObject, type CryptoKey } from 'jose';
import { err, ok, type Result } from '../../schemas/result.ts';

export const SET_TYP = 'secevent+jwt';
export const SET_CONTENT_TYPE = 'application/secevent+jwt';

export type SigningKey = { alg: 'ES256' | 'EdDSA'; kid: string; key: KeyObject | CryptoKey };

export type SetClaims = {
  iss: string;
  jti: string;
  iat: number;
  aud: string | string[];
  txn?: string;
  sub_id: Record<string, unknown>;
  events: Record<string, Record<string, unknown>>;
};

/** A jti that is the same every time the same thing is sent: a re-delivery after a crash is recognisably a copy. */
export const stableJti = (...parts: string[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 32);

export const signSet = async (claims: SetClaims, key: SigningKey): Promise<string> =>
  new SignJWT({ ...claims }).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: SET_TYP }).sign(key.key);

/** RFC 8935 §2.4 error codes, as a receiver answers them. */
export type SetErrorCode = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience' | 'authentication_failed' | 'access_denied';
export type SetError = { err: SetErrorCode; description: string };

export type VerifiedSet = { claims: SetClaims; eventType: string; event: Record<string, unknown> };

export type VerifyOptions = { issuer: string; audience: string; nowMs: number; maxAgeMs: number; maxFutureSkewMs: number };

const fail = (code: SetErrorCode, description: string): Result<VerifiedSet, SetError> => err({ err: code, description });

/**
 * Verifies a SET: signature by a key of the issuer, `typ`, `iss`, `aud`, an
 * `iat` within bounds, a `jti`, exactly one event, and no `sub`/`exp` misuse.
 * Replay (a jti seen before) is the caller's business.
 */
export const verifySet = async (token: string, keys: JWTVerifyGetKey, o: VerifyOptions): Promise<Result<VerifiedSet, SetError>> => {
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return fail('invalid_request', 'the body is not a JWS compact serialisation');
  }
  if (header.typ !== SET_TYP) return fail('invalid_request', `header typ must be "${SET_TYP}"`);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: o.issuer,
      audience: o.audience,
      typ: SET_TYP,
      algorithms: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
      currentDate: new Date(o.nowMs),
    }));
  } catch (e) {
    const code = (e as { code?: string }).code;
    const claim = (e as { claim?: string }).claim;
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'iss') return fail('invalid_issuer', 'iss is not the configured issuer');
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'aud') return fail('invalid_audience', 'aud does not name this receiver');
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' || code === 'ERR_JWT_EXPIRED') return fail('invalid_request', (e as Error).message);
    return fail('invalid_key', 'the signature does not verify with any key of the issuer');
  }
  const { jti, iat, events, sub_id } = payload as JWTPayload & { events?: unknown; sub_id?: unknown };
  if (typeof jti !== 'string' || jti === '') return fail('invalid_request', 'jti is required');
  if (typeof iat !== 'number') return fail('invalid_request', 'iat is required');
  if (iat * 1000 > o.nowMs + o.maxFutureSkewMs) return fail('invalid_request', 'iat is in the future');
  if (iat * 1000 < o.nowMs - o.maxAgeMs) return fail('invalid_request', 'iat is older than this receiver accepts');
  if (payload.sub !== undefined) return fail('invalid_request', 'a SET must not carry sub (SSF 1.0: use sub_id)');
  if (events === null || typeof events !== 'object' || Array.isArray(events)) return fail('invalid_request', 'events must be an object');
  const entries = Object.entries(events as Record<string, unknown>);
  if (entries.length !== 1) return fail('invalid_request', `events must have exactly one member, has ${entries.length}`);
  const [eventType, event] = entries[0] ?? ['', undefined];
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return fail('invalid_request', 'the event payload must be an object');
  const claims: SetClaims = {
    iss: o.issuer,
    jti,
    iat,
    aud: o.audience,
    ...(typeof payload['txn'] === 'string' ? { txn: payload['txn'] } : {}),
    sub_id: sub_id !== null && typeof sub_id === 'object' && !Array.isArray(sub_id) ? (sub_id as Record<string, unknown>) : {},
    events: { [eventType]: event as Record<string, unknown> },
  };
  return ok({ claims, eventType, event: event as Record<string, unknown> });
};
