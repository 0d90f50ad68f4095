// The projector's own changelog: every record the fold wrote (a session with
// its dedup memory, a user's revocations, a freeze), on a compacted topic,
// committed in the same Kafka transaction as the published trust states and
// the consumed offsets. A restarted projector reads it back into a world that
// is exactly the one whose offsets were committed.
//
// In the idempotent delivery mode the records are not transactional; one more
// record, the *published marker* (key `PUBLISHED_MARKER_KEY`), says from which
// offset of each session-trust partition a restore must read the published
// states to find those the changelog does not cover yet, and up to which
// offset of each input partition the recorded world has folded (`consumed`):
// a restore skips input below it even when the consumer group's committed
// offsets lag behind, e.g. after a commit failed during a rebalance (see
// runtime.ts).
//
// It is internal state, not the public contract, so it is JSON (validated with
// zod on the way back in) rather than one more Avro schema PDPs would see.
import { z } from 'zod';
import { activeFreezeSchema, trustCauseSchema } from '../../schemas/events.ts';
import { err, ok, type Result } from '../../schemas/result.ts';
import { zodIssues } from '../../schemas/codec.ts';
import { freezeKeyOf, sessionKeyOf, userKeyOf, userRecord, type Snapshot, type World } from './evolve.ts';

const stamp = z.strictObject({ event_id: z.string(), since: z.string() });

const sessionRecord = z.strictObject({
  tenant_id: z.string(),
  session_id: z.string(),
  version: z.number().int().min(1),
  // exactOptional: absent, never `undefined` — the shape of SessionState (exactOptionalPropertyTypes).
  delegator: z.string().exactOptional(),
  agent: z.string().exactOptional(),
  agent_version: z.string().exactOptional(),
  consent_ref: z.string().exactOptional(),
  causes: z.array(trustCauseSchema),
  freezes: z.array(activeFreezeSchema),
  ended: z.boolean(),
  updated_at: z.string(),
  caused_by: z.string(),
  applied: z.array(z.string()),
});

const userRecordSchema = z.strictObject({
  tenant_id: z.string(),
  user_id: z.string(),
  revokedRoles: z.array(z.tuple([z.string(), stamp])),
  consentRevocations: z.array(z.tuple([z.string(), stamp])),
  applied: z.array(z.string()),
});

const freezeRecordSchema = z.strictObject({
  tenant_id: z.string(),
  freeze: activeFreezeSchema.extend({ event_id: z.string(), since: z.string() }),
  status: z.enum(['active', 'lifted', 'expired']),
  applied: z.array(z.string()),
});

const epochSchema = z.number().int().min(1).max(2 ** 31 - 1);

const publishedMarkerSchema = z.strictObject({
  /**
   * session-trust partition → an offset at or before the first published state the changelog may not cover;
   * scale-out idempotent: with the epoch in force there (the highest epoch record before it), where a restore's read starts.
   */
  partitions: z.array(z.strictObject({ partition: z.number().int().min(0), offset: z.string().regex(/^\d+$/), epoch: epochSchema.optional() })),
  /** input topic-partition → the next offset to fold: everything below it is in the recorded world. */
  consumed: z.array(z.strictObject({ topic: z.string(), partition: z.number().int().min(0), offset: z.string().regex(/^\d+$/) })).optional(),
  /** Scale-out: signals partition → the next offset of the global kinds this partition's task has folded (scale/task.ts). */
  global: z.array(z.strictObject({ partition: z.number().int().min(0), offset: z.string().regex(/^\d+$/) })).optional(),
});
export type PublishedMarker = z.infer<typeof publishedMarkerSchema>;

/** The changelog key of the published marker (never a tuple key of the fold: those start with the tenant). */
export const PUBLISHED_MARKER_KEY = '\u0000published';
/** Scale-out idempotent: the changelog key of a task's epoch (README, "Scaling out" → "Delivery mode"). */
export const EPOCH_CLAIM_KEY = '\u0000epoch';

export const changelogRecordSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('session'), value: sessionRecord }),
  z.strictObject({ kind: z.literal('user'), value: userRecordSchema }),
  z.strictObject({ kind: z.literal('freeze'), value: freezeRecordSchema }),
  z.strictObject({ kind: z.literal('published'), value: publishedMarkerSchema }),
  /** Scale-out idempotent: the epoch the partition's latest owner claimed, committed in a fenced transaction (exclusive). */
  z.strictObject({ kind: z.literal('epoch'), value: z.strictObject({ epoch: epochSchema }) }),
]);
export type ChangelogRecord = z.infer<typeof changelogRecordSchema>;

/** The changelog record for a key the fold touched, or undefined if the key names nothing. */
export const recordOf = (w: World, key: string): ChangelogRecord | undefined => {
  const s = w.sessions.get(key);
  if (s !== undefined && s.version > 0) return { kind: 'session', value: { ...s, causes: [...s.causes], freezes: [...s.freezes], applied: [...s.applied] } };
  const u = w.users.get(key);
  if (u !== undefined) return { kind: 'user', value: userRecord(u) };
  const f = w.freezes.get(key);
  if (f !== undefined) return { kind: 'freeze', value: { ...f, applied: [...f.applied] } };
  return undefined;
};

export const keyOfRecord = (r: ChangelogRecord): string => {
  switch (r.kind) {
    case 'session':
      return sessionKeyOf(r.value.tenant_id, r.value.session_id);
    case 'user':
      return userKeyOf(r.value.tenant_id, r.value.user_id);
    case 'freeze':
      return freezeKeyOf(r.value.tenant_id, r.value.freeze.freeze_id);
    case 'published':
      return PUBLISHED_MARKER_KEY;
    case 'epoch':
      return EPOCH_CLAIM_KEY;
  }
};

export const encodeRecord = (r: ChangelogRecord): Buffer => Buffer.from(JSON.stringify(r));

export const decodeRecord = (bytes: Buffer): Result<ChangelogRecord, string> => {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    return err(`changelog record is not JSON: ${(e as Error).message}`);
  }
  const r = changelogRecordSchema.safeParse(raw);
  if (!r.success) return err(`changelog record invalid: ${zodIssues(r.error).map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  return ok(r.data);
};

/** The newest published marker among the records (one key, so one partition: the last read is the newest). */
export const publishedMarkerOf = (records: Iterable<ChangelogRecord>): PublishedMarker | undefined => {
  let marker: PublishedMarker | undefined;
  for (const r of records) if (r.kind === 'published') marker = r.value;
  return marker;
};

/** The newest epoch claim among the records (0 when none: the partition never had an idempotent scale-out owner). */
export const claimedEpochOf = (records: Iterable<ChangelogRecord>): number => {
  let epoch = 0;
  for (const r of records) if (r.kind === 'epoch') epoch = Math.max(epoch, r.value.epoch);
  return epoch;
};

/** Folds changelog records (latest per key wins, as compaction keeps) into a snapshot; the published marker and the epoch claim are not part of the world. */
export const snapshotFromRecords = (records: Iterable<ChangelogRecord>, clock = 0): Snapshot => {
  const latest = new Map<string, ChangelogRecord>();
  for (const r of records) {
    const key = keyOfRecord(r);
    const prev = latest.get(key);
    // Sessions never go back to an older version, whatever order records arrive in.
    if (prev?.kind === 'session' && r.kind === 'session' && prev.value.version > r.value.version) continue;
    latest.set(key, r);
  }
  const snap: Snapshot = { clock, wall: null, sessions: [], users: [], freezes: [] };
  for (const r of latest.values()) {
    if (r.kind === 'session') snap.sessions.push(r.value);
    else if (r.kind === 'user') snap.users.push(r.value);
    else if (r.kind === 'freeze') snap.freezes.push(r.value);
  }
  return snap;
};
