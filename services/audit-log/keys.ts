// The checkpoint signer: from configuration, or a local key generated once
// into the data dir (mode 0600), like the local JWT secret.
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { generateSignerKey, parseSignerKey, type Signer } from './note.ts';

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
