// Bearer JWT verification (HS256 with a shared secret, or a JWKS URL for
// asymmetric keys). Claims: `sub`, `scope` (space separated), `tenant` (a
// tenant id, or `*` for cross-tenant operators). A caller only ever reads and
// writes its own tenant.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { err, ok, type Result } from '../../schemas/result.ts';

export const SCOPES = ['events:write', 'freeze:write', 'freeze:read', 'trust:read', 'audit:read'] as const;
export type Scope = (typeof SCOPES)[number];
export const OPERATOR_TENANT = '*';

export type Caller = { sub: string; tenant: string; scopes: ReadonlySet<string> };

export type AuthFailure = { code: 'unauthorized'; message: string };

export type Authenticator = {
  /** Verifies the `Authorization` header value; the failure says why, without leaking the token. */
  verify(authorization: string | undefined): Promise<Result<Caller, AuthFailure>>;
};

export type AuthConfig = {
  secret?: string | undefined;
  jwksUrl?: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
};

export const canAccessTenant = (caller: Caller, tenant: string): boolean =>
  caller.tenant === OPERATOR_TENANT || caller.tenant === tenant;

export const isOperator = (caller: Caller): boolean => caller.tenant === OPERATOR_TENANT;

const callerFrom = (payload: JWTPayload): Result<Caller, AuthFailure> => {
  const { sub, scope, tenant } = payload as JWTPayload & { scope?: unknown; tenant?: unknown };
  if (typeof sub !== 'string' || sub === '') return err({ code: 'unauthorized', message: 'token has no sub claim' });
  if (typeof tenant !== 'string' || tenant === '') {
    return err({ code: 'unauthorized', message: 'token has no tenant claim' });
  }
  if (scope !== undefined && typeof scope !== 'string') {
    return err({ code: 'unauthorized', message: 'token scope claim must be a space-separated string' });
  }
  const scopes = new Set((scope ?? '').split(' ').filter((s) => s !== ''));
  return ok({ sub, tenant, scopes });
};

export const createAuthenticator = (cfg: AuthConfig): Authenticator => {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (cfg.jwksUrl !== undefined) {
    key = createRemoteJWKSet(new URL(cfg.jwksUrl));
    algorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
  } else if (cfg.secret !== undefined) {
    key = new TextEncoder().encode(cfg.secret);
    algorithms = ['HS256'];
  } else {
    throw new Error('no JWT key configured: set TRUSTFOLD_JWT_SECRET or TRUSTFOLD_JWKS_URL');
  }
  const options = {
    algorithms,
    ...(cfg.issuer !== undefined ? { issuer: cfg.issuer } : {}),
    ...(cfg.audience !== undefined ? { audience: cfg.audience } : {}),
  };
  return {
    async verify(authorization) {
      if (authorization === undefined || authorization === '') {
        return err({ code: 'unauthorized', message: 'missing Authorization: Bearer <token>' });
      }
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!m?.[1]) return err({ code: 'unauthorized', message: 'Authorization must be "Bearer <token>"' });
      try {
        const { payload } =
          typeof key === 'function' ? await jwtVerify(m[1], key, options) : await jwtVerify(m[1], key, options);
        return callerFrom(payload);
      } catch (e) {
        const code = (e as { code?: string }).code;
        const message =
          code === 'ERR_JWT_EXPIRED'
            ? 'token expired'
            : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'
              ? 'token signature invalid'
              : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED'
                ? `token claim invalid: ${(e as Error).message}`
                : 'token invalid';
        return err({ code: 'unauthorized', message });
      }
    },
  };
};

export type MintOptions = {
  sub: string;
  tenant: string;
  scopes: readonly string[];
  ttlSeconds?: number;
  issuer?: string;
  audience?: string;
};

export const mintToken = async (o: MintOptions, secret: string): Promise<string> => {
  let jwt = new SignJWT({ scope: o.scopes.join(' '), tenant: o.tenant })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(o.sub)
    .setIssuedAt()
    .setExpirationTime(`${o.ttlSeconds ?? 3600}s`);
  if (o.issuer !== undefined) jwt = jwt.setIssuer(o.issuer);
  if (o.audience !== undefined) jwt = jwt.setAudience(o.audience);
  return jwt.sign(new TextEncoder().encode(secret));
};

/**
 * Local mode with no key configured: a random secret kept in the data dir, so
 * tokens printed at one start keep working after a restart. Never used when
 * a secret or JWKS URL is configured.
 */
export const loadOrCreateLocalSecret = (file: string): { secret: string; created: boolean } => {
  try {
    const secret = readFileSync(file, 'utf8').trim();
    if (secret.length >= 32) return { secret, created: false };
  } catch {
    // not there yet
  }
  const secret = randomBytes(48).toString('base64url');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return { secret, created: true };
};
