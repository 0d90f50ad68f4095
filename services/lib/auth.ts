// Bearer JWT verification (HS256 with a shared secret, or a JWKS URL for
// asymmetric keys). Claims: `sub`, `scope` (space separated), `tenant` (a
// tenant id, or `*` for cross-tenant operators, which also needs the
// `tenants:all` scope), `exp` (required) and `iat`. A caller only ever reads
// and writes its own tenant.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { SignalKind } from '../../schemas/events.ts';
import { err, ok, type Result } from '../../schemas/result.ts';

export const SCOPES = ['events:write', 'trust:write', 'freeze:write', 'freeze:read', 'trust:read', 'audit:read', 'tenants:all', 'ssf:manage', 'ssf:receive'] as const;
export type Scope = (typeof SCOPES)[number];
export const OPERATOR_TENANT = '*';
/** What a token with tenant "*" must also carry: cross-tenant reach is asked for twice, never implied. */
export const ALL_TENANTS_SCOPE: Scope = 'tenants:all';

/**
 * Which scope each event kind needs on `POST /v1/events` (the contract; the
 * README and the OpenAPI description print this table). Signals that can only
 * restrict a session, and decisions, need `events:write`, what a gateway or
 * PDP holds. Signals that loosen trust or lift a SOC control need the scope
 * of the SOC route that does the same: `freeze:write` (as `DELETE
 * /v1/freezes/:id`) to lift a freeze, `trust:write` to set a tier or grant a
 * role or consent back.
 */
export const EVENT_KIND_SCOPES: Readonly<Record<'decision' | SignalKind, Scope>> = {
  decision: 'events:write',
  session_started: 'events:write',
  session_ended: 'events:write',
  injection_detected: 'events:write',
  role_revoked: 'events:write',
  consent_revoked: 'events:write',
  change_freeze_raised: 'events:write',
  step_up_requested: 'events:write',
  step_up_resolved: 'events:write',
  token_issued: 'events:write',
  change_freeze_lifted: 'freeze:write',
  trust_set: 'trust:write',
  role_granted: 'trust:write',
  consent_granted: 'trust:write',
};
/** The scopes that let a token post to `POST /v1/events` at all; each event then needs its kind's. */
export const EVENT_WRITE_SCOPES: readonly Scope[] = [...new Set(Object.values(EVENT_KIND_SCOPES))];

export type Caller = {
  sub: string;
  tenant: string;
  scopes: ReadonlySet<string>;
  /** When the token stops being valid (ms since the epoch): long-lived responses (SSE) end there. */
  expiresAt: number;
};

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
  /** Longest `exp - iat` accepted. Default 24 h. */
  maxTtlSeconds?: number | undefined;
  /** Accept tokens living longer than maxTtlSeconds (machine tokens, explicit opt-in). Default false. */
  allowLongLived?: boolean | undefined;
  /** How far `iat` may be ahead of this clock, and `exp` behind it. Default 60 s. */
  clockSkewSeconds?: number | undefined;
  /** JWKS only: accept tenant "*" from the identity provider. Default false. */
  jwksAllowAllTenants?: boolean | undefined;
  /** The clock, in ms; tests pass one. */
  now?: (() => number) | undefined;
};

export const DEFAULT_MAX_TTL_SECONDS = 24 * 3600;

export const canAccessTenant = (caller: Caller, tenant: string): boolean =>
  caller.tenant === OPERATOR_TENANT || caller.tenant === tenant;

export const isOperator = (caller: Caller): boolean => caller.tenant === OPERATOR_TENANT;

export type TokenPolicy = { maxTtlSeconds: number; allowLongLived: boolean; clockSkewSeconds: number; allowAllTenants: boolean };

const refuse = (message: string): Result<Caller, AuthFailure> => err({ code: 'unauthorized', message });

/** A verified payload → the caller, under the lifetime and tenancy policy. Pure: `nowSeconds` is an argument. */
export const callerFrom = (payload: JWTPayload, policy: TokenPolicy, nowSeconds: number): Result<Caller, AuthFailure> => {
  const { sub, scope, tenant, exp, iat } = payload as JWTPayload & { scope?: unknown; tenant?: unknown };
  if (typeof sub !== 'string' || sub === '') return refuse('token has no sub claim');
  if (typeof tenant !== 'string' || tenant === '') return refuse('token has no tenant claim');
  if (scope !== undefined && typeof scope !== 'string') return refuse('token scope claim must be a space-separated string');
  if (typeof exp !== 'number') return refuse('token has no exp claim; every token must expire');
  if (typeof iat === 'number' && iat > nowSeconds + policy.clockSkewSeconds) {
    return refuse(`token iat is ${iat - nowSeconds} s in the future (at most ${policy.clockSkewSeconds} s of clock skew)`);
  }
  if (!policy.allowLongLived) {
    // Without iat, the lifetime left is what counts.
    const lifetime = exp - (typeof iat === 'number' ? iat : nowSeconds);
    if (lifetime > policy.maxTtlSeconds) {
      return refuse(`token lifetime ${lifetime} s exceeds the maximum of ${policy.maxTtlSeconds} s (TRUSTFOLD_JWT_MAX_TTL_S)`);
    }
  }
  const scopes = new Set((scope ?? '').split(' ').filter((s) => s !== ''));
  if (tenant === OPERATOR_TENANT) {
    if (!policy.allowAllTenants) return refuse('tenant "*" is not accepted from this issuer (TRUSTFOLD_JWKS_ALLOW_ALL_TENANTS)');
    if (!scopes.has(ALL_TENANTS_SCOPE)) return refuse(`tenant "*" needs the ${ALL_TENANTS_SCOPE} scope`);
  }
  return ok({ sub, tenant, scopes, expiresAt: exp * 1000 });
};

export const createAuthenticator = (cfg: AuthConfig): Authenticator => {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (cfg.jwksUrl !== undefined) {
    // An asymmetric issuer is somebody else's: without iss and aud pinned, any
    // token it signs for any other audience would be accepted here.
    if (cfg.issuer === undefined || cfg.audience === undefined) {
      throw new Error('TRUSTFOLD_JWKS_URL needs TRUSTFOLD_JWT_ISSUER and TRUSTFOLD_JWT_AUDIENCE');
    }
    key = createRemoteJWKSet(new URL(cfg.jwksUrl));
    algorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
  } else if (cfg.secret !== undefined) {
    key = new TextEncoder().encode(cfg.secret);
    algorithms = ['HS256'];
  } else {
    throw new Error('no JWT key configured: set TRUSTFOLD_JWT_SECRET or TRUSTFOLD_JWKS_URL');
  }
  const now = cfg.now ?? Date.now;
  const policy: TokenPolicy = {
    maxTtlSeconds: cfg.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS,
    allowLongLived: cfg.allowLongLived ?? false,
    clockSkewSeconds: cfg.clockSkewSeconds ?? 60,
    allowAllTenants: cfg.jwksUrl === undefined || cfg.jwksAllowAllTenants === true,
  };
  const baseOptions = {
    algorithms,
    requiredClaims: ['exp'],
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
      const nowMs = now();
      const options = { ...baseOptions, currentDate: new Date(nowMs) };
      try {
        const { payload } =
          typeof key === 'function' ? await jwtVerify(m[1], key, options) : await jwtVerify(m[1], key, options);
        return callerFrom(payload, policy, Math.floor(nowMs / 1000));
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
 * Why a shared secret is too weak to sign tokens with, or undefined. Length
 * alone is not enough: 32 copies of one character, or a short word repeated,
 * are guessed first.
 */
export const secretWeakness = (secret: string): string | undefined => {
  if (secret.length < 32) return `is ${secret.length} characters; use at least 32`;
  if (new Set(secret).size < 10) return 'has fewer than 10 distinct characters; use a random value (e.g. openssl rand -base64 48)';
  return undefined;
};

/** Where local mode keeps its generated HS256 secret: the server and the CLI read the same file. */
export const localSecretFile = (config: { dataDir: string }): string => join(config.dataDir, 'jwt-secret');

/**
 * Local mode with no key configured: a random secret kept in the data dir, so
 * tokens printed at one start keep working after a restart. Never used when
 * a secret or JWKS URL is configured. The file is the key to every tenant:
 * readable by its owner only (a looser mode is tightened, and said so in
 * `tightened`), and a weak secret in it is refused, not used or replaced.
 */
export const loadOrCreateLocalSecret = (file: string): { secret: string; created: boolean; tightened?: boolean } => {
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw e;
  }
  if (text !== undefined) {
    const secret = text.trim();
    const weak = secretWeakness(secret);
    if (weak !== undefined) throw new Error(`the local JWT secret in ${file} ${weak}; delete the file to have a new one generated`);
    const loose = (statSync(file).mode & 0o077) !== 0;
    if (loose) chmodSync(file, 0o600);
    return loose ? { secret, created: false, tightened: true } : { secret, created: false };
  }
  const secret = randomBytes(48).toString('base64url');
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  return { secret, created: true };
};

export type AuthSetup = { authenticator: Authenticator; localSecret?: string; secretFile?: string; created?: boolean; tightened?: boolean };

/** The configured key, or in local mode a generated secret kept in the data dir. */
export const setUpAuth = (config: { auth: AuthConfig; dataDir: string }): AuthSetup => {
  if (config.auth.secret !== undefined || config.auth.jwksUrl !== undefined) {
    return { authenticator: createAuthenticator(config.auth) };
  }
  const file = localSecretFile(config);
  const { secret, created, tightened } = loadOrCreateLocalSecret(file);
  return {
    authenticator: createAuthenticator({ ...config.auth, secret }),
    localSecret: secret,
    secretFile: file,
    created,
    ...(tightened === true ? { tightened } : {}),
  };
};
