// A record's inclusion proof, checked in the page: the record shown hashes to
// the leaf the proof starts from (RFC 8785 JCS of {v, kind, kafka, record},
// SHA-256 with the 0x00 leaf prefix), and the audit path leads from that leaf
// to the root the checkpoint names (RFC 9162 §2.1.3.2). What it does not
// check is the checkpoint's signature: that needs the log's public key and is
// what `trustfold audit export --session S --bundle DIR` then
// `trustfold audit verify --bundle DIR` do offline; the page says so.
export type RecordProof = {
  kind: string;
  ref: string;
  tenant_id: string;
  log_id: string;
  leaf_index: number;
  leaf: { v: 1; kind: string; kafka: { topic: string; partition: number; offset: string }; record: unknown };
  leaf_hash: string;
  tree_size: number;
  inclusion_proof: string[];
  checkpoint: { log_id: string; origin: string; size: number; root_hash: string; note: string; signed_at: string };
};

/** Bytes of a plain ArrayBuffer (what WebCrypto takes). */
export type Bytes = Uint8Array<ArrayBuffer>;
export type Digest = (bytes: Bytes) => Promise<Bytes>;

/** WebCrypto's SHA-256 (the browser's, or Node's in tests). */
export const sha256: Digest = async (bytes) => new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));

/** RFC 8785: JSON.stringify's strings and numbers, members sorted by UTF-16 code units, no whitespace. */
export const jcs = (v: unknown): string => {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError('JCS: numbers must be finite');
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map((x: unknown) => jcs(x)).join(',')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(o[k])}`).join(',')}}`;
  }
  throw new TypeError(`JCS: no JSON form for a ${typeof v}`);
};

export const fromBase64 = (s: string): Bytes => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
export const toBase64 = (b: Uint8Array): string => btoa(String.fromCharCode(...b));

const concat = (...parts: Uint8Array[]): Bytes => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const equal = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** The leaf hash of a record at its place in the log. */
export const leafHash = async (leaf: RecordProof['leaf'], digest: Digest = sha256): Promise<Bytes> =>
  digest(concat(new Uint8Array([0]), new TextEncoder().encode(jcs({ v: 1, kind: leaf.kind, kafka: { topic: leaf.kafka.topic, partition: leaf.kafka.partition, offset: leaf.kafka.offset }, record: leaf.record }))));

/** RFC 9162 §2.1.3.2: the root an inclusion proof implies, or why there is none. Halving, not shifts: sizes past 2³¹ stay exact. */
export const rootOf = async (index: number, size: number, leaf: Bytes, path: readonly Bytes[], digest: Digest = sha256): Promise<{ ok: true; root: Bytes } | { ok: false; reason: string }> => {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return { ok: false, reason: `leaf ${index} is not in a tree of size ${size}` };
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  const node = (l: Bytes, rt: Bytes): Promise<Bytes> => digest(concat(new Uint8Array([1]), l, rt));
  for (const p of path) {
    if (sn === 0) return { ok: false, reason: 'the proof is longer than the tree is deep' };
    if (fn % 2 === 1 || fn === sn) {
      r = await node(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else r = await node(r, p);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return { ok: false, reason: 'the proof is shorter than the tree is deep' };
  return { ok: true, root: r };
};

export type ProofCheck = { ok: true; text: string } | { ok: false; text: string };

/**
 * Checks a proof against the record the page shows (`record`: the decision as
 * the audit API returned it, without its `audit` member). Each failure says
 * which link of the chain broke.
 */
export const checkProof = async (p: RecordProof, record: unknown, digest: Digest = sha256): Promise<ProofCheck> => {
  if (jcs(p.leaf.record) !== jcs(record)) return { ok: false, text: 'the logged record differs from the record shown' };
  const rebuilt = await leafHash(p.leaf, digest);
  if (!equal(rebuilt, fromBase64(p.leaf_hash))) return { ok: false, text: `the record does not hash to leaf ${p.leaf_index}'s hash` };
  if (p.checkpoint.size !== p.tree_size) return { ok: false, text: `the proof is for size ${p.tree_size}, the checkpoint is of size ${p.checkpoint.size}` };
  const r = await rootOf(p.leaf_index, p.tree_size, rebuilt, p.inclusion_proof.map(fromBase64), digest);
  if (!r.ok) return { ok: false, text: r.reason };
  if (!equal(r.root, fromBase64(p.checkpoint.root_hash))) return { ok: false, text: 'the audit path does not lead to the checkpoint’s root' };
  return { ok: true, text: `the record hashes to leaf ${p.leaf_index} of ${p.log_id}, and its ${p.inclusion_proof.length}-hash audit path leads to the root of the checkpoint of size ${p.tree_size}` };
};
