// Which events of a request go to Kafka. Each is parsed with zod, then must
// pass, in this order: the caller's tenant, the scope its kind needs
// (EVENT_KIND_SCOPES), the actor fields (stamped from the token's `sub`),
// the event-time bounds, and the duplicate check by (tenant, event_id) with a
// content digest. Every refusal is listed with a reason; nothing is dropped
// silently. Pure but for `recent`; the clock is an argument.
//
// The zod parse goes through the compiled fast path first (fast-parse.ts):
// a valid event is checked without zod's error bookkeeping, and anything the
// fast path does not accept is parsed by zod, whose errors the caller gets.
//
// With `encode` (the HTTP ingest), each admitted event is encoded here and
// its digest is the SHA-256 of those bytes: the Avro encoding of zod's
// normalised output is a function of the event's content, so equal events
// have equal bytes, and the encoding the producer needs anyway doubles as the
// canonical form (no JSON.stringify per event). Without it the digest is the
// SHA-256 of the normalised event as JSON. Digests are compared only with
// others of the same `recent` cache, which one caller fills.
import { hash } from 'node:crypto';
import { errorMessage } from '../lib/errors.ts';
import { parseEvent } from '../../schemas/codec.ts';
import { eventSchema, type SignalKind, type TrustfoldEvent } from '../../schemas/events.ts';
import { ok, type FieldError, type Result } from '../../schemas/result.ts';
import { canAccessTenant, EVENT_KIND_SCOPES, type Caller } from '../lib/auth.ts';
import { eventTimeError, type EventTimeBounds } from '../lib/event-time.ts';
import { compileFastParse, DECLINE } from './fast-parse.ts';
import { DIGEST_WORDS, KEY_WORDS, writeDigestWords, writeRecentKey, type RecentIds } from './recent-ids.ts';

export type Rejection = { index: number; event_id?: string; errors: FieldError[] };
export type RejectReason = 'invalid' | 'tenant_mismatch' | 'missing_scope' | 'actor_mismatch' | 'occurred_at_out_of_bounds' | 'id_conflict' | 'encode';

/**
 * The fields that name who did something. Each is the token's `sub`: a body
 * may leave it out (it is stamped) or repeat the sub; any other value is
 * refused, so the audit never records a name the caller chose.
 */
export const ACTOR_FIELDS: Readonly<Partial<Record<SignalKind, 'set_by' | 'raised_by' | 'lifted_by'>>> = {
  trust_set: 'set_by',
  change_freeze_raised: 'raised_by',
  change_freeze_lifted: 'lifted_by',
};

export type AdmitContext = {
  caller: Caller;
  recent: RecentIds;
  nowMs: number;
  bounds: EventTimeBounds;
  /** The event's bytes for Kafka; given, admitted events come with them (`encoded`) and are digested from them. */
  encode?: (e: TrustfoldEvent) => Buffer;
};

export type Admission = {
  events: TrustfoldEvent[];
  /** Position in the request of each entry of `events`. */
  indices: number[];
  /** Content digest of each entry of `events`, for `recent` once Kafka acknowledged them. */
  digests: string[];
  /** With `encode`: the bytes of each entry of `events`. */
  encoded: Buffer[];
  rejected: Rejection[];
  reasons: RejectReason[];
  duplicatesInRequest: number;
  duplicatesRecent: number;
};

const eventIdOf = (raw: unknown): string | undefined => {
  if (raw === null || typeof raw !== 'object') return undefined;
  const id = (raw as { event_id?: unknown }).event_id;
  return typeof id === 'string' && id.length <= 256 ? id : undefined;
};

const kindOf = (e: TrustfoldEvent): 'decision' | SignalKind => (e.type === 'decision' ? 'decision' : e.kind);

/** The raw item with absent actor fields filled from `sub` (a shallow copy; the input is not changed); present ones are left to be compared after parsing. */
const withActors = (raw: unknown, sub: string): unknown => {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const o = raw as Record<string, unknown>;
  const field = typeof o['kind'] === 'string' && o['type'] === 'signal' ? ACTOR_FIELDS[o['kind'] as SignalKind] : undefined;
  const stampField = field !== undefined && o[field] === undefined;
  const stampEmitter = o['emitted_by'] === undefined;
  if (!stampField && !stampEmitter) return raw;
  const copy: Record<string, unknown> = { ...o };
  if (stampField) copy[field] = sub;
  if (stampEmitter) copy['emitted_by'] = sub;
  return copy;
};

const actorErrors = (e: TrustfoldEvent, sub: string): FieldError[] => {
  const field = e.type === 'signal' ? ACTOR_FIELDS[e.kind] : undefined;
  const claimed: [string, string | undefined][] = [['emitted_by', e.emitted_by]];
  if (field !== undefined) claimed.push([field, (e as unknown as Record<string, string>)[field]]);
  return claimed
    .filter(([, v]) => v !== sub)
    .map(([path, v]) => ({ path, message: `is "${v ?? ''}" but the token's sub is "${sub}": actor fields are stamped from the token (leave it out, or send the sub)` }));
};

/** Zod's output lists keys in schema order, so equal events stringify equally. */
const digestOf = (e: TrustfoldEvent): string => hash('sha256', JSON.stringify(e), 'base64url');

const fast = compileFastParse(eventSchema);
/** zod's verdict, through the fast path when it can vouch for the event. */
const parse = (input: unknown): Result<TrustfoldEvent, FieldError[]> => {
  const r = fast?.(input) ?? DECLINE;
  return r === DECLINE ? parseEvent(input) : ok(r);
};

/** An event past every check but the duplicate one; `sha`: with `bytes`, the 32 bytes whose base64url form `digest` is. */
export type CheckedEvent = { index: number; event: TrustfoldEvent; digest: string; bytes?: Buffer; sha?: Buffer };
export type Checked = { events: CheckedEvent[]; rejected: Rejection[]; reasons: RejectReason[] };

/**
 * Every check but the duplicate one, each event on its own: pure, so it can
 * run on another thread (prepare-thread.ts); `dedupeEvents` finishes the job
 * where `recent` lives.
 */
export const checkEvents = (raw: readonly unknown[], ctx: Omit<AdmitContext, 'recent'>): Checked => {
  const { caller } = ctx;
  const out: Checked = { events: [], rejected: [], reasons: [] };
  const reject = (index: number, reason: RejectReason, errors: FieldError[], event_id: string | undefined): void => {
    out.rejected.push(event_id === undefined ? { index, errors } : { index, event_id, errors });
    out.reasons.push(reason);
  };
  for (let index = 0; index < raw.length; index++) {
    const item = raw[index];
    const parsed = parse(withActors(item, caller.sub));
    if (!parsed.ok) {
      reject(index, 'invalid', parsed.error, eventIdOf(item));
      continue;
    }
    const e = parsed.value;
    if (!canAccessTenant(caller, e.tenant_id)) {
      reject(index, 'tenant_mismatch', [{ path: 'tenant_id', message: `the token may write tenant "${caller.tenant}" only, not "${e.tenant_id}"` }], e.event_id);
      continue;
    }
    const kind = kindOf(e);
    const scope = EVENT_KIND_SCOPES[kind];
    if (!caller.scopes.has(scope)) {
      reject(index, 'missing_scope', [{ path: 'kind', message: `${kind} events need scope ${scope}, which the token lacks` }], e.event_id);
      continue;
    }
    const actors = actorErrors(e, caller.sub);
    if (actors.length > 0) {
      reject(index, 'actor_mismatch', actors, e.event_id);
      continue;
    }
    const late = eventTimeError(e.occurred_at, ctx.nowMs, ctx.bounds);
    if (late !== undefined) {
      reject(index, 'occurred_at_out_of_bounds', [late], e.event_id);
      continue;
    }
    if (ctx.encode === undefined) {
      out.events.push({ index, event: e, digest: digestOf(e) });
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = ctx.encode(e);
    } catch (x) {
      // zod passed but Avro refused: the two schemas drifted. Say so per event.
      reject(index, 'encode', [{ path: '(root)', message: `cannot encode: ${errorMessage(x)}` }], e.event_id);
      continue;
    }
    const sha = hash('sha256', bytes, 'buffer');
    out.events.push({ index, event: e, digest: sha.toString('base64url'), bytes, sha });
  }
  return out;
};

/** What the duplicate check needs of an event; `idKey`: tenantIdKey(tenant, id) when known. */
export type Dedupable = { index: number; tenant: string; id: string; digest: string; idKey?: string };
/**
 * The duplicate check's view of a list of events: the i-th event's key (see
 * recent-ids.ts) at KEY_WORDS·i of `keys`, its content digest at
 * DIGEST_WORDS·i of `digests`.
 */
export type DedupeColumns = { keys: Int32Array; digests: Int32Array };
/** `keys`/`digests`: the columns of `kept`, in its order, for `recent` once Kafka acknowledged them. */
export type Deduped<T> = { kept: T[]; rejected: Rejection[]; reasons: RejectReason[]; duplicatesInRequest: number; duplicatesRecent: number } & DedupeColumns;

/** The columns of events given by strings (the preparing threads send them ready-made). */
export const dedupeColumnsOf = (events: readonly Dedupable[]): DedupeColumns => {
  const keys = new Int32Array(KEY_WORDS * events.length);
  const digests = new Int32Array(DIGEST_WORDS * events.length);
  events.forEach((c, i) => {
    writeRecentKey(c.tenant, c.id, keys, KEY_WORDS * i, c.idKey);
    writeDigestWords(c.digest, digests, DIGEST_WORDS * i);
  });
  return { keys, digests };
};

const sameWords = (a: Int32Array, i: number, b: Int32Array, j: number, n: number): boolean => {
  for (let w = 0; w < n; w++) if (a[i + w] !== b[j + w]) return false;
  return true;
};

/**
 * The duplicate check by (tenant, event_id) with the content digest, in
 * request order: within the request first, then against `recent`. A known id
 * with another digest is a conflict (rejected), with the same one a duplicate
 * (counted, skipped).
 */
export const dedupeEvents = <T extends Dedupable>(events: readonly T[], recent: RecentIds): Deduped<T> => dedupeByColumns(events, dedupeColumnsOf(events), recent);

/** dedupeEvents with the columns at hand: `cols` describes `events`, position by position. */
export const dedupeByColumns = <T extends { index: number; id: string }>(events: readonly T[], cols: DedupeColumns, recent: RecentIds): Deduped<T> => {
  const n = events.length;
  const keptAt: number[] = [];
  const out: Omit<Deduped<T>, 'keys' | 'digests'> = { kept: [], rejected: [], reasons: [], duplicatesInRequest: 0, duplicatesRecent: 0 };
  const { keys, digests } = cols;
  // Kept events by their key's first word; `chain` links those sharing one.
  const inRequest = new Map<number, number>();
  const chain = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = events[i];
    if (c === undefined) continue;
    const k = KEY_WORDS * i;
    const d = DIGEST_WORDS * i;
    const first = keys[k] ?? 0;
    const head = inRequest.get(first);
    let earlier = head ?? -1;
    while (earlier !== -1 && !sameWords(keys, KEY_WORDS * earlier, keys, k, KEY_WORDS)) earlier = chain[earlier] ?? -1;
    let verdict: 'new' | 'same' | 'other';
    const slot = earlier === -1 ? recent.find(keys, k) : -1;
    if (earlier !== -1) verdict = sameWords(digests, DIGEST_WORDS * earlier, digests, d, DIGEST_WORDS) ? 'same' : 'other';
    else if (slot !== -1) verdict = recent.sameDigest(slot, digests, d) ? 'same' : 'other';
    else verdict = 'new';
    if (verdict === 'other') {
      const message = 'this event_id was already sent with different content; a changed event needs a new event_id';
      out.rejected.push({ index: c.index, event_id: c.id, errors: [{ path: 'event_id', message }] });
      out.reasons.push('id_conflict');
      continue;
    }
    if (verdict === 'same') {
      if (earlier !== -1) out.duplicatesInRequest++;
      else out.duplicatesRecent++;
      continue;
    }
    chain[i] = head ?? -1;
    inRequest.set(first, i);
    keptAt.push(i);
    out.kept.push(c);
  }
  const m = keptAt.length;
  const keptKeys = m === n ? keys : new Int32Array(KEY_WORDS * m);
  const keptDigests = m === n ? digests : new Int32Array(DIGEST_WORDS * m);
  if (m !== n) {
    keptAt.forEach((i, j) => {
      keptKeys.set(keys.subarray(KEY_WORDS * i, KEY_WORDS * (i + 1)), KEY_WORDS * j);
      keptDigests.set(digests.subarray(DIGEST_WORDS * i, DIGEST_WORDS * (i + 1)), DIGEST_WORDS * j);
    });
  }
  return { ...out, keys: keptKeys, digests: keptDigests };
};

export const admitEvents = (raw: readonly unknown[], ctx: AdmitContext): Admission => {
  const checked = checkEvents(raw, ctx);
  const d = dedupeEvents(
    checked.events.map((c) => ({ ...c, tenant: c.event.tenant_id, id: c.event.event_id })),
    ctx.recent,
  );
  // `rejected` in request order, `reasons` parallel to it (callers pair them up).
  const refusals = [...checked.rejected.map((r, i) => ({ r, why: checked.reasons[i] })), ...d.rejected.map((r, i) => ({ r, why: d.reasons[i] }))].sort(
    (a, b) => a.r.index - b.r.index,
  );
  const out: Admission = {
    events: [],
    indices: [],
    digests: [],
    encoded: [],
    rejected: refusals.map((x) => x.r),
    reasons: refusals.map((x) => x.why ?? 'invalid'),
    duplicatesInRequest: d.duplicatesInRequest,
    duplicatesRecent: d.duplicatesRecent,
  };
  for (const c of d.kept) {
    out.events.push(c.event);
    out.indices.push(c.index);
    out.digests.push(c.digest);
    if (c.bytes !== undefined) out.encoded.push(c.bytes);
  }
  return out;
};
