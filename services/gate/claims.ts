// Who is calling: a verified delegated token (RFC 8693 token exchange) → the
// delegation chain, the session, the token metadata and the intent that go
// into every decision. Pure: the verified payload in, a value out.
//
//   sub            the human delegator
//   act            the acting agent; a nested `act` is the agent that delegated to it,
//                  so `{sub: A-2, act: {sub: A-1}}` is the chain human → A-1 → A-2
//   scope          space separated; `mcp:tools:read` lists, `mcp:tools:write` calls
//   jti, iat, exp  token metadata for the audit
//   session claim  the session whose trust judges the calls (name configurable)
//   consent claim  the consent reference (name configurable)
//   intent claim   a string (the statement) or `{task_class, statement}`
import type { JWTPayload } from 'jose';
import { LIMITS, type ChainLink, type Token, type intentSchema } from '../../schemas/events.ts';
import { err, ok, type Result } from '../../schemas/result.ts';
import type { z } from 'zod';

export const GATE_SCOPES = { read: 'mcp:tools:read', write: 'mcp:tools:write' } as const;

export type ClaimNames = { session: string; consent: string; intent: string };
export const DEFAULT_CLAIMS: ClaimNames = { session: 'session_id', consent: 'consent_ref', intent: 'intent' };

export type Intent = z.infer<typeof intentSchema>;

/** The caller of one request, as the gateway judges and audits it. */
export type CallerIdentity = {
  tenant: string;
  scopes: ReadonlySet<string>;
  chain: ChainLink[];
  /** The session the token is bound to, if it names one. */
  session?: string;
  /** Present when the token has a `jti` (the contract's token record needs one). */
  token?: Token;
  intent?: Intent;
};

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' && v.length <= LIMITS.id ? v : undefined);
const isoFromEpoch = (v: unknown): string | undefined => (typeof v === 'number' && Number.isFinite(v) ? new Date(v * 1000).toISOString() : undefined);

/** The `act` nesting, outermost (the current actor) first. */
const actors = (act: unknown): Result<ChainLink[], string> => {
  const out: ChainLink[] = [];
  for (let a = act; a !== undefined; ) {
    if (typeof a !== 'object' || a === null) return err('act claim must be an object with a sub');
    const o = a as Record<string, unknown>;
    const id = str(o['sub']);
    if (id === undefined) return err('act claim has no sub');
    if (out.length >= LIMITS.chain - 1) return err(`act claim nested deeper than ${LIMITS.chain - 1}`);
    const version = str(o['agent_version']);
    const owner = str(o['owner']);
    out.push({ kind: 'agent', id, ...(version !== undefined && { version }), ...(owner !== undefined && { owner }) });
    a = o['act'];
  }
  return ok(out);
};

export const intentOf = (v: unknown): Intent | undefined => {
  if (typeof v === 'string' && v !== '') return { statement: v.slice(0, LIMITS.text) };
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const task_class = str(o['task_class']);
  const statement = typeof o['statement'] === 'string' ? o['statement'].slice(0, LIMITS.text) : undefined;
  if (task_class === undefined && statement === undefined) return undefined;
  return { ...(task_class !== undefined && { task_class }), ...(statement !== undefined && { statement }) };
};

/** A verified token's claims → the caller. Signature, expiry, `sub`, `tenant` and `scope` were checked by the authenticator. */
export const identityFromClaims = (payload: JWTPayload, names: ClaimNames = DEFAULT_CLAIMS): Result<CallerIdentity, string> => {
  const p = payload as Record<string, unknown>;
  const sub = str(p['sub']);
  const tenant = str(p['tenant']);
  if (sub === undefined) return err('token has no sub claim');
  if (tenant === undefined) return err('token has no tenant claim');
  const agents = actors(p['act']);
  if (!agents.ok) return agents;
  const scopes = new Set(typeof p['scope'] === 'string' ? p['scope'].split(' ').filter((s) => s !== '') : []);
  const jti = str(p['jti']);
  const consent_ref = str(p[names.consent]);
  const aud = Array.isArray(p['aud']) ? str(p['aud'][0]) : str(p['aud']);
  const issued_at = isoFromEpoch(p['iat']);
  const expires_at = isoFromEpoch(p['exp']);
  const token: Token | undefined =
    jti === undefined
      ? undefined
      : {
          jti,
          scopes: [...scopes].slice(0, LIMITS.list),
          ...(aud !== undefined && { audience: aud }),
          ...(issued_at !== undefined && { issued_at }),
          ...(expires_at !== undefined && { expires_at }),
          ...(consent_ref !== undefined && { consent_ref }),
        };
  const session = str(p[names.session]);
  const intent = intentOf(p[names.intent]);
  return ok({
    tenant,
    scopes,
    chain: [{ kind: 'human', id: sub }, ...agents.value.reverse()],
    ...(session !== undefined && { session }),
    ...(token !== undefined && { token }),
    ...(intent !== undefined && { intent }),
  });
};
