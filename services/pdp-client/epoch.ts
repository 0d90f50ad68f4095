// The epoch rule of the session-trust topic (services/projector/README.md,
// "Scaling out" → "Delivery mode"), pure: what every reader applies, per
// partition, in log order.
//
// A scaled-out projector in the idempotent delivery mode publishes states
// with a plain idempotent producer, which no transactional id fences. Each
// owner of partition p instead claims an epoch E (exclusively, through its
// fenced changelog transaction), appends an *epoch record* for E to
// session-trust partition p before it reads what was published there, and
// stamps every state it publishes with E. A reader then ignores a state whose
// epoch is below the highest epoch record before it on its partition: what a
// paused old owner (a "zombie") appends after the new owner's epoch record is
// taken by nobody, and what it appended before is in the new owner's read.
//
// Wire form (hostile input, parsed here):
//   - epoch record: key `\u0000epoch\u0000<E>` (one key per epoch, so
//     compaction never removes one), header `trustfold-epoch: <E>`, an empty
//     value (not null: a null value is a tombstone, which compaction deletes;
//     readers that do not know the rule see "no state" and skip it);
//   - a state: header `trustfold-epoch: <E>`; no header = epoch 0 (the
//     single-instance projector and the transactional mode never write one).
// A malformed record is refused with a reason, never applied, never thrown.
import type { IHeaders } from 'kafkajs';

export const EPOCH_HEADER = 'trustfold-epoch';
/** Prefix of an epoch record's key (never a session key: those are JSON arrays). */
export const EPOCH_KEY_PREFIX = '\u0000epoch\u0000';
/** Largest epoch accepted (Kafka's int32 range is far more takeovers than any deployment makes). */
export const MAX_EPOCH = 2 ** 31 - 1;
/** Default bound on how far one epoch record may raise a partition's epoch (a forged 2^31 must not pin it). */
export const DEFAULT_MAX_EPOCH_STEP = 1000;

export const EPOCH_REFUSALS = ['stale_epoch', 'epoch_ahead', 'epoch_jump', 'bad_epoch'] as const;
/**
 * `stale_epoch`: a state written by an owner whose partition was taken over
 * before it (the zombie case); `epoch_ahead`: a state claiming an epoch no
 * epoch record announced before it (no projector writes that); `epoch_jump`:
 * an epoch record more than the bound above the partition's epoch;
 * `bad_epoch`: an epoch header or record that does not parse.
 */
export type EpochRefusal = (typeof EPOCH_REFUSALS)[number];

export const epochKey = (epoch: number): string => `${EPOCH_KEY_PREFIX}${epoch}`;

/** The epoch record for `epoch`, as a producer takes it. */
export const epochRecord = (epoch: number): { key: string; value: Buffer; headers: Record<string, string> } => ({
  key: epochKey(epoch),
  value: Buffer.alloc(0),
  headers: { [EPOCH_HEADER]: String(epoch) },
});

const parseEpoch = (s: string): number | undefined => {
  if (!/^(0|[1-9]\d{0,9})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_EPOCH ? n : undefined;
};

/** The one `trustfold-epoch` header: absent → 0, anything but one decimal value → undefined. */
const headerEpoch = (headers: IHeaders | undefined): number | undefined => {
  const h = headers?.[EPOCH_HEADER];
  if (h === undefined) return 0;
  if (Array.isArray(h)) return undefined; // repeated: which one would the writer mean?
  return parseEpoch(Buffer.isBuffer(h) ? h.toString('utf8') : h);
};

export type EpochInput = { key: Buffer | string | null; headers?: IHeaders | undefined; value: Buffer | null };

/** What a record is under the rule: an epoch record (with its epoch), a state (with its epoch), or malformed. */
export type Classified = { kind: 'epoch'; epoch: number } | { kind: 'state'; epoch: number } | { kind: 'bad'; why: string };

export const classify = (m: EpochInput): Classified => {
  const key = m.key === null ? null : typeof m.key === 'string' ? m.key : m.key.toString('utf8');
  if (key !== null && key.startsWith(EPOCH_KEY_PREFIX)) {
    const fromKey = parseEpoch(key.slice(EPOCH_KEY_PREFIX.length));
    const fromHeader = headerEpoch(m.headers);
    if (fromKey === undefined || fromKey === 0) return { kind: 'bad', why: 'epoch record key is not \\u0000epoch\\u0000<1..2^31-1>' };
    if (fromHeader !== fromKey) return { kind: 'bad', why: 'epoch record header differs from its key' };
    if (m.value === null || m.value.length !== 0) return { kind: 'bad', why: 'epoch record value is not empty' };
    return { kind: 'epoch', epoch: fromKey };
  }
  const epoch = headerEpoch(m.headers);
  return epoch === undefined ? { kind: 'bad', why: `${EPOCH_HEADER} header is not one decimal epoch` } : { kind: 'state', epoch };
};

export type EpochVerdict =
  /** A state to go on with (the version checks still apply). */
  | { kind: 'state'; epoch: number }
  /** An epoch record taken (it raised the partition's epoch, or changed nothing): no state. */
  | { kind: 'epoch'; epoch: number }
  | { kind: 'refused'; reason: EpochRefusal; why: string };

export type EpochGate = {
  /** Judges the record at `offset` of `partition`. Records are judged against the epoch records at lower offsets, so re-reading a partition (a rebalance) gives the same verdicts. */
  judge(partition: number, offset: string, m: EpochInput): EpochVerdict;
  /** The epoch in force just before `offset` (0 when no epoch record was seen). */
  epochAt(partition: number, offset: bigint): number;
};

/**
 * `start`: per partition, where the reader starts when it does not read from
 * offset 0 and the epoch in force there (the projector's restore reads from
 * its published marker, which records it).
 */
export const createEpochGate = (o: { maxStep?: number; start?: ReadonlyMap<number, { offset: bigint; epoch: number }> } = {}): EpochGate => {
  const maxStep = o.maxStep ?? DEFAULT_MAX_EPOCH_STEP;
  /** Per partition: the epoch records taken, in offset order, each with the running maximum. */
  const raises = new Map<number, { offset: bigint; epoch: number }[]>();
  for (const [p, s] of o.start ?? []) raises.set(p, [{ offset: s.offset - 1n, epoch: s.epoch }]);

  const epochAt = (partition: number, offset: bigint): number => {
    const list = raises.get(partition) ?? [];
    // The last raise below `offset` (binary search: offsets grow along the list).
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((list[mid]?.offset ?? 0n) < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : (list[lo - 1]?.epoch ?? 0);
  };

  return {
    epochAt,
    judge(partition, offset, m) {
      const at = BigInt(offset);
      const current = epochAt(partition, at);
      const c = classify(m);
      if (c.kind === 'bad') return { kind: 'refused', reason: 'bad_epoch', why: c.why };
      if (c.kind === 'state') {
        if (c.epoch < current) return { kind: 'refused', reason: 'stale_epoch', why: `state of epoch ${c.epoch} after epoch ${current} began` };
        if (c.epoch > current) return { kind: 'refused', reason: 'epoch_ahead', why: `state of epoch ${c.epoch} before any epoch record announced it (epoch ${current})` };
        return { kind: 'state', epoch: c.epoch };
      }
      if (c.epoch > current + maxStep) return { kind: 'refused', reason: 'epoch_jump', why: `epoch record ${c.epoch} more than ${maxStep} above epoch ${current}` };
      if (c.epoch > current) {
        let list = raises.get(partition);
        if (list === undefined) raises.set(partition, (list = []));
        const last = list.at(-1);
        // Read in offset order; a re-read (offset at or below the last raise) adds nothing.
        if (last === undefined || at > last.offset) list.push({ offset: at, epoch: c.epoch });
      }
      return { kind: 'epoch', epoch: c.epoch };
    },
  };
};
