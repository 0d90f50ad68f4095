// The checkpoint signer: from configuration, or a local key generated once
// into the data dir (mode 0600), like the local JWT secret.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { generateSignerKey, parseSignerKey, parseVerifierKey, verifierKey, type Signer, type Verifier } from './note.ts';

export const localKeyFile = (dataDir: string): string => join(dataDir, 'audit-log-signing-key');

export const loadSigner = (o: { signingKey: string | undefined; keyName: string; dataDir: string }): { signer: Signer; file?: string; created?: boolean } => {
  if (o.signingKey !== undefined) {
    const s = parseSignerKey(o.signingKey);
    if (!s.ok) throw new Error(`TRUSTFOLD_AUDIT_SIGNING_KEY: ${s.reason}`);
    return { signer: s.signer };
  }
  const file = localKeyFile(o.dataDir);
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw e;
  }
  const created = text === undefined;
  if (text === undefined) {
    text = generateSignerKey(o.keyName);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${text}\n`, { mode: 0o600, flag: 'wx' });
  } else if ((statSync(file).mode & 0o077) !== 0) {
    chmodSync(file, 0o600);
  }
  const s = parseSignerKey(text);
  if (!s.ok) throw new Error(`${file}: ${s.reason}; delete the file to have a new key generated`);
  return { signer: s.signer, file, created };
};

/**
 * The verifier keys a reader of the log knows: the signer's (configured, or
 * the local key when this process signs or finds one in the data dir; an
 * API-only process never generates a key) and the configured extra ones.
 */
export const knownVerifierKeys = (o: { signingKey: string | undefined; keyName: string; dataDir: string; extra: readonly string[]; signer?: Signer }): { keys: string[]; verifiers: Verifier[] } => {
  const own = o.signer ?? (o.signingKey !== undefined || existsSync(localKeyFile(o.dataDir)) ? loadSigner(o).signer : undefined);
  const keys = [...new Set([...(own !== undefined ? [verifierKey(own)] : []), ...o.extra])];
  const verifiers = keys.map((k) => {
    const v = parseVerifierKey(k);
    if (!v.ok) throw new Error(`TRUSTFOLD_AUDIT_VERIFIER_KEYS: ${v.reason}`);
    return v.verifier;
  });
  return { keys, verifiers };
};
