// RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification, as
// small pure functions (model: transparency-dev/merkle `rfc6962`,
// `proof/verify.go`). Sizes and indices are plain numbers (safe integers, so
// up to 2^53 leaves); bit arithmetic goes through the helpers below because
// JavaScript's bit operators are 32-bit.
import { createHash } from 'node:crypto';

export type Hash = Uint8Array;
export const HASH_SIZE = 32;

const sha256 = (...parts: Uint8Array[]): Hash => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

const LEAF_PREFIX = Uint8Array.of(0);
const NODE_PREFIX = Uint8Array.of(1);

export const emptyRoot = (): Hash => sha256();
export const hashLeaf = (bytes: Uint8Array): Hash => sha256(LEAF_PREFIX, bytes);
export const hashChildren = (left: Hash, right: Hash): Hash => sha256(NODE_PREFIX, left, right);

export const equalHash = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

// ---- bit helpers on safe integers -----------------------------------------

const bitLen = (x: number): number => {
  let n = 0;
  for (let v = x; v > 0; v = Math.floor(v / 2)) n++;
  return n;
};
const onesCount = (x: number): number => {
  let n = 0;
  for (let v = x; v > 0; v = Math.floor(v / 2)) n += v % 2;
  return n;
};
const trailingZeros = (x: number): number => {
  if (x === 0) return 64;
  let n = 0;
  for (let v = x; v % 2 === 0; v /= 2) n++;
  return n;
};
const shr = (x: number, k: number): number => Math.floor(x / 2 ** k);
const bit = (x: number, k: number): number => shr(x, k) % 2;
/** x XOR y for safe integers. */
const xor = (x: number, y: number): number => {
  let out = 0;
  for (let k = 0, a = x, b = y; a > 0 || b > 0; k++, a = Math.floor(a / 2), b = Math.floor(b / 2)) {
    if (a % 2 !== b % 2) out += 2 ** k;
  }
  return out;
};
/** The largest power of two strictly below n (n ≥ 2). */
export const splitPoint = (n: number): number => 2 ** (bitLen(n - 1) - 1);

// ---- tree shape -------------------------------------------------------------

/** A perfect subtree: level l, index k covers leaves [k·2^l, (k+1)·2^l). */
export type NodeId = { level: number; index: number };
/** A leaf range [begin, end) whose RFC 6962 hash MTH(D[begin:end]) a proof needs. */
export type Range = { begin: number; end: number };

/** The perfect subtrees a range splits into, left to right (the range's compact form). */
export const perfectNodes = (r: Range): NodeId[] => {
  const out: NodeId[] = [];
  let begin = r.begin;
  while (begin < r.end) {
    // The largest aligned power of two starting at begin that fits.
    let level = begin === 0 ? bitLen(r.end - begin) - 1 : Math.min(trailingZeros(begin), bitLen(r.end - begin) - 1);
    while (begin + 2 ** level > r.end) level--;
    out.push({ level, index: begin / 2 ** level });
    begin += 2 ** level;
  }
  return out;
};

/** MTH of a range from the hashes of its perfect subtrees (the right ones fold first, as RFC 6962 splits). */
export const hashRange = (r: Range, node: (id: NodeId) => Hash): Hash => {
  const parts = perfectNodes(r).map(node);
  let acc = parts[parts.length - 1];
  if (acc === undefined) return emptyRoot();
  for (let i = parts.length - 2; i >= 0; i--) acc = hashChildren(parts[i] as Hash, acc);
  return acc;
};

/** The ranges of an inclusion proof for leaf `index` in a tree of `size` (RFC 9162 2.1.3.1 PATH), leaf side first. */
export const inclusionRanges = (index: number, size: number): Range[] => {
  if (!(index >= 0 && index < size)) throw new RangeError(`leaf index ${index} not in a tree of size ${size}`);
  const out: Range[] = [];
  const path = (m: number, begin: number, end: number): void => {
    const n = end - begin;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      path(m, begin, begin + k);
      out.push({ begin: begin + k, end });
    } else {
      path(m - k, begin + k, end);
      out.push({ begin, end: begin + k });
    }
  };
  path(index, 0, size);
  return out;
};

/** The ranges of a consistency proof from size m to size n (RFC 9162 2.1.4.1 SUBPROOF). */
export const consistencyRanges = (m: number, n: number): Range[] => {
  if (!(m > 0 && m <= n)) throw new RangeError(`no consistency proof from size ${m} to ${n}`);
  const out: Range[] = [];
  const sub = (mm: number, begin: number, end: number, whole: boolean): void => {
    const size = end - begin;
    if (mm === size) {
      if (!whole) out.push({ begin, end });
      return;
    }
    const k = splitPoint(size);
    if (mm <= k) {
      sub(mm, begin, begin + k, whole);
      out.push({ begin: begin + k, end });
    } else {
      sub(mm - k, begin + k, end, false);
      out.push({ begin, end: begin + k });
    }
  };
  sub(m, 0, n, true);
  return out;
};

// ---- verification (proof/verify.go) ----------------------------------------

export type VerifyResult = { ok: true } | { ok: false; reason: string };
const fail = (reason: string): VerifyResult => ({ ok: false, reason });
const OK: VerifyResult = { ok: true };

const chainInner = (seed: Hash, proof: readonly Hash[], index: number): Hash =>
  proof.reduce((acc, h, i) => (bit(index, i) === 0 ? hashChildren(acc, h) : hashChildren(h, acc)), seed);
const chainInnerRight = (seed: Hash, proof: readonly Hash[], index: number): Hash =>
  proof.reduce((acc, h, i) => (bit(index, i) === 1 ? hashChildren(h, acc) : acc), seed);
const chainBorderRight = (seed: Hash, proof: readonly Hash[]): Hash => proof.reduce((acc, h) => hashChildren(h, acc), seed);

const decompInclProof = (index: number, size: number): [number, number] => {
  const inner = bitLen(xor(index, size - 1));
  return [inner, onesCount(shr(index, inner))];
};

const safe = (...xs: number[]): boolean => xs.every((x) => Number.isSafeInteger(x) && x >= 0);

/** The root a leaf and its inclusion proof imply, or why there is none. */
export const rootFromInclusionProof = (index: number, size: number, leafHash: Hash, proof: readonly Hash[]): { ok: true; root: Hash } | { ok: false; reason: string } => {
  if (!safe(index, size)) return { ok: false, reason: 'index and size must be non-negative safe integers' };
  if (index >= size) return { ok: false, reason: `index is beyond size: ${index} >= ${size}` };
  if (leafHash.length !== HASH_SIZE) return { ok: false, reason: `leaf hash has ${leafHash.length} bytes, want ${HASH_SIZE}` };
  const [inner, border] = decompInclProof(index, size);
  if (proof.length !== inner + border) return { ok: false, reason: `wrong proof size ${proof.length}, want ${inner + border}` };
  return { ok: true, root: chainBorderRight(chainInner(leafHash, proof.slice(0, inner), index), proof.slice(inner)) };
};

export const verifyInclusion = (index: number, size: number, leafHash: Hash, proof: readonly Hash[], root: Hash): VerifyResult => {
  const r = rootFromInclusionProof(index, size, leafHash, proof);
  if (!r.ok) return r;
  return equalHash(r.root, root) ? OK : fail('calculated root does not match the expected root');
};

/** proof/verify.go RootFromConsistencyProof + VerifyConsistency, for 0 < size1 ≤ size2. */
export const verifyConsistency = (size1: number, size2: number, proof: readonly Hash[], root1: Hash, root2: Hash): VerifyResult => {
  if (!safe(size1, size2)) return fail('sizes must be non-negative safe integers');
  if (size2 < size1) return fail(`size2 (${size2}) < size1 (${size1})`);
  if (size1 === 0) return fail('consistency proof from an empty tree is meaningless');
  if (size1 === size2) {
    if (proof.length > 0) return fail('size1 = size2, but the proof is not empty');
    return equalHash(root1, root2) ? OK : fail('sizes are equal but the roots are not');
  }
  if (proof.length === 0) return fail('empty proof');
  const [forkLevel, border] = decompInclProof(size1 - 1, size2);
  const shift = trailingZeros(size1);
  const inner = forkLevel - shift;
  let seed: Hash;
  let start: number;
  if (size1 === 2 ** shift) {
    seed = root1;
    start = 0;
  } else {
    seed = proof[0] as Hash;
    start = 1;
  }
  if (proof.length !== start + inner + border) return fail(`wrong proof size ${proof.length}, want ${start + inner + border}`);
  const rest = proof.slice(start);
  const mask = shr(size1 - 1, shift);
  const hash1 = chainBorderRight(chainInnerRight(seed, rest.slice(0, inner), mask), rest.slice(inner));
  if (!equalHash(hash1, root1)) return fail('calculated root1 does not match the expected root1');
  const hash2 = chainBorderRight(chainInner(seed, rest.slice(0, inner), mask), rest.slice(inner));
  return equalHash(hash2, root2) ? OK : fail('calculated root2 does not match the expected root2');
};

// ---- appending: the compact range of a growing tree -------------------------

/** A perfect subtree with its hash. */
export type NodeHash = NodeId & { hash: Hash };

/**
 * The right frontier of a tree of `size` leaves: the roots of its perfect
 * subtrees, left to right (at most log2(size) of them). Appending a leaf
 * merges equal-height neighbours; every node created is reported, so a writer
 * can store the ones it keeps.
 */
export type Frontier = { size: number; nodes: NodeHash[] };

export const emptyFrontier = (): Frontier => ({ size: 0, nodes: [] });

export const appendLeaf = (f: Frontier, leafHash: Hash, created: (n: NodeHash) => void): Frontier => {
  const nodes = [...f.nodes];
  let cur: NodeHash = { level: 0, index: f.size, hash: leafHash };
  created(cur);
  for (;;) {
    const top = nodes[nodes.length - 1];
    if (top === undefined || top.level !== cur.level) break;
    nodes.pop();
    cur = { level: cur.level + 1, index: top.index / 2, hash: hashChildren(top.hash, cur.hash) };
    created(cur);
  }
  nodes.push(cur);
  return { size: f.size + 1, nodes };
};

export const frontierRoot = (f: Frontier): Hash => {
  let acc: Hash | undefined;
  for (let i = f.nodes.length - 1; i >= 0; i--) {
    const h = (f.nodes[i] as NodeHash).hash;
    acc = acc === undefined ? h : hashChildren(h, acc);
  }
  return acc ?? emptyRoot();
};

/** The root of a list of leaf hashes (reference; O(n) memory). */
export const rootOfLeaves = (leaves: readonly Hash[]): Hash =>
  frontierRoot(leaves.reduce((f, h) => appendLeaf(f, h, () => undefined), emptyFrontier()));
