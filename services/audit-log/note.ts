// C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys, and the
// tlog-checkpoint body (https://c2sp.org/tlog-checkpoint). Pure but for
// node:crypto. Key strings are those of golang.org/x/mod/sumdb/note:
//   verifier  <name>+<hex key id>+<base64(0x01 ‖ public key)>
//   signer    PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>
// key id = first 4 bytes (big-endian) of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { HASH_SIZE, type Hash } from '../../schemas/audit-log/merkle.ts';

const ALG_ED25519 = 1;
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export type Signer = { name: string; keyId: number; privateKey: KeyObject; publicKey: Uint8Array };
export type Verifier = { name: string; keyId: number; publicKey: KeyObject };

/** A name: non-empty, no Unicode spaces, no plus signs. */
export const isValidName = (name: string): boolean => name !== '' && !/[\s+]/u.test(name);

export const keyId = (name: string, publicKey: Uint8Array): number =>
  createHash('sha256').update(name).update('\n').update(Uint8Array.of(ALG_ED25519)).update(publicKey).digest().readUInt32BE(0);

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

const rawPublicKey = (k: KeyObject): Uint8Array => new Uint8Array(k.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI_PREFIX.length));

const signerFromSeed = (name: string, seed: Uint8Array): Signer => {
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return { name, keyId: keyId(name, publicKey), privateKey, publicKey };
};

/** Splits at the first n-1 plus signs (base64 key data may hold more). */
const cut = (s: string, n: number): string[] | undefined => {
  const out: string[] = [];
  let rest = s;
  for (let i = 0; i < n - 1; i++) {
    const at = rest.indexOf('+');
    if (at < 0) return undefined;
    out.push(rest.slice(0, at));
    rest = rest.slice(at + 1);
  }
  out.push(rest);
  return out;
};

export type KeyError = { ok: false; reason: string };

export const parseSignerKey = (skey: string): { ok: true; signer: Signer } | KeyError => {
  const parts = cut(skey, 5);
  if (parts === undefined || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') return { ok: false, reason: 'not a PRIVATE+KEY+<name>+<id>+<key> string' };
  const [, , name = '', id = '', key = ''] = parts;
  const raw = Buffer.from(key, 'base64');
  if (!isValidName(name) || !/^[0-9a-f]{8}$/.test(id) || raw.length !== 33 || raw[0] !== ALG_ED25519) return { ok: false, reason: 'malformed signer key' };
  const signer = signerFromSeed(name, raw.subarray(1));
  if (signer.keyId !== Number.parseInt(id, 16)) return { ok: false, reason: 'signer key id does not match its key' };
  return { ok: true, signer };
};

export const generateSignerKey = (name: string): string => {
  if (!isValidName(name)) throw new Error(`invalid key name ${JSON.stringify(name)}`);
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(ED25519_PKCS8_PREFIX.length);
  const s = signerFromSeed(name, seed);
  return `PRIVATE+KEY+${name}+${hex8(s.keyId)}+${Buffer.concat([Uint8Array.of(ALG_ED25519), seed]).toString('base64')}`;
};

export const verifierKey = (s: Signer): string =>
  `${s.name}+${hex8(s.keyId)}+${Buffer.concat([Uint8Array.of(ALG_ED25519), s.publicKey]).toString('base64')}`;

export const parseVerifierKey = (vkey: string): { ok: true; verifier: Verifier } | KeyError => {
  const parts = cut(vkey, 3);
  if (parts === undefined) return { ok: false, reason: 'not a <name>+<id>+<key> string' };
  const [name = '', id = '', key = ''] = parts;
  const raw = Buffer.from(key, 'base64');
  if (!isValidName(name) || !/^[0-9a-f]{8}$/.test(id) || raw.length !== 33 || raw[0] !== ALG_ED25519) return { ok: false, reason: 'malformed verifier key' };
  const pub = raw.subarray(1);
  if (keyId(name, pub) !== Number.parseInt(id, 16)) return { ok: false, reason: 'verifier key id does not match its key' };
  return { ok: true, verifier: { name, keyId: keyId(name, pub), publicKey: createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pub]), format: 'der', type: 'spki' }) } };
};

const SIG_PREFIX = '\u2014 ';

/** Signs a note text (must end in a newline); returns the whole signed note. */
export const signNote = (text: string, signer: Signer): string => {
  if (!text.endsWith('\n') || text.includes('\n\n')) throw new Error('note text must end in a newline and have no blank line');
  const sig = sign(null, Buffer.from(text, 'utf8'), signer.privateKey);
  const id = Buffer.alloc(4);
  id.writeUInt32BE(signer.keyId);
  return `${text}\n${SIG_PREFIX}${signer.name} ${Buffer.concat([id, sig]).toString('base64')}\n`;
};

export type OpenedNote = { text: string; signedBy: string[] };

/**
 * Splits a signed note and checks its signatures against the known verifiers:
 * ok when at least one known key signed it and every signature by a known
 * key verifies (as note.Open does); signatures by unknown keys are ignored.
 */
export const openNote = (msg: string, verifiers: readonly Verifier[]): { ok: true; note: OpenedNote } | KeyError => {
  const split = msg.lastIndexOf('\n\n');
  if (split < 0 || !msg.endsWith('\n')) return { ok: false, reason: 'malformed note: no signature block' };
  const text = msg.slice(0, split + 1);
  const lines = msg.slice(split + 2, -1).split('\n');
  const signedBy: string[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) return { ok: false, reason: 'malformed note: bad signature line' };
    const [name = '', b64 = '', ...extra] = line.slice(SIG_PREFIX.length).split(' ');
    const raw = Buffer.from(b64, 'base64');
    if (extra.length > 0 || !isValidName(name) || raw.length < 5) return { ok: false, reason: 'malformed note: bad signature line' };
    const id = raw.readUInt32BE(0);
    const v = verifiers.find((k) => k.name === name && k.keyId === id);
    if (v === undefined) continue;
    if (!verify(null, Buffer.from(text, 'utf8'), v.publicKey, raw.subarray(4))) return { ok: false, reason: `invalid signature by ${name}` };
    signedBy.push(name);
  }
  if (signedBy.length === 0) return { ok: false, reason: 'no signature by a known key' };
  return { ok: true, note: { text, signedBy } };
};

// ---- tlog-checkpoint ----------------------------------------------------------

export type Checkpoint = { origin: string; size: number; root: Hash };

export const formatCheckpoint = (c: Checkpoint): string => `${c.origin}\n${c.size}\n${Buffer.from(c.root).toString('base64')}\n`;

export const parseCheckpoint = (text: string): { ok: true; checkpoint: Checkpoint } | KeyError => {
  const lines = text.split('\n');
  const [origin = '', size = '', root = ''] = lines;
  if (lines.length < 4 || lines[lines.length - 1] !== '' || origin === '') return { ok: false, reason: 'malformed checkpoint' };
  if (!/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) return { ok: false, reason: 'malformed checkpoint size' };
  const hash = Buffer.from(root, 'base64');
  if (hash.length !== HASH_SIZE || hash.toString('base64') !== root) return { ok: false, reason: 'malformed checkpoint root hash' };
  return { ok: true, checkpoint: { origin, size: Number(size), root: new Uint8Array(hash) } };
};

/** A signed checkpoint, opened and parsed. */
export const openCheckpoint = (msg: string, verifiers: readonly Verifier[]): { ok: true; checkpoint: Checkpoint } | KeyError => {
  const n = openNote(msg, verifiers);
  if (!n.ok) return n;
  return parseCheckpoint(n.note.text);
};
