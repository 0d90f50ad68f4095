// The transmitter's signing key and the JWKS it publishes at `jwks_uri`.
// From a configured file (a private JWK, ES256 or EdDSA), or, in local mode,
// generated once and kept in the data dir like the JWT secret: readable by
// its owner only (a looser mode is tightened and said so).
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { SigningKey } from './set.ts';

export type LoadedKey = { signing: SigningKey; publicJwk: JWK; created: boolean; tightened: boolean };

const readJwk = (file: string): JWK | undefined => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as JWK;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw new Error(`the SSF signing key in ${file} is not a JSON JWK: ${(e as Error).message}`, { cause: e });
  }
};

const algOf = (jwk: JWK): 'ES256' | 'EdDSA' => {
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  throw new Error('the SSF signing key must be an EC P-256 (ES256) or OKP Ed25519 (EdDSA) private JWK');
};

const fromJwk = async (jwk: JWK, created: boolean, tightened: boolean): Promise<LoadedKey> => {
  if (jwk.d === undefined) throw new Error('the SSF signing key has no private part (d)');
  const alg = algOf(jwk);
  const kid = jwk.kid ?? (await calculateJwkThumbprint(jwk));
  const key = await importJWK({ ...jwk, alg }, alg);
  if (key instanceof Uint8Array) throw new Error('the SSF signing key must be asymmetric');
  const { d: _private, ...pub } = jwk;
  return { signing: { alg, kid, key }, publicJwk: { ...pub, kid, alg, use: 'sig' }, created, tightened };
};

/** `required`: a configured file, which must exist; otherwise one is generated when missing. */
export const loadOrCreateSigningKey = async (file: string, required: boolean): Promise<LoadedKey> => {
  const jwk = readJwk(file);
  if (jwk !== undefined) {
    const loose = (statSync(file).mode & 0o077) !== 0;
    if (loose) chmodSync(file, 0o600);
    return fromJwk(jwk, false, loose);
  }
  if (required) throw new Error(`TRUSTFOLD_SSF_SIGNING_KEY_FILE: ${file} does not exist`);
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const fresh = { ...(await exportJWK(privateKey)), alg: 'ES256' };
  const withKid = { ...fresh, kid: await calculateJwkThumbprint(fresh) };
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(withKid)}\n`, { mode: 0o600, flag: 'wx' });
  return fromJwk(withKid, true, false);
};
