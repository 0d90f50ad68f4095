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
import { tenantIdKey, type RecentIds } from './recent-ids.ts';

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

/** An event past every check but the duplicate one. */
export type CheckedEvent = { index: number; event: TrustfoldEvent; digest: string; bytes?: Buffer };
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
    out.events.push({ index, event: e, digest: hash('sha256', bytes, 'base64url'), bytes });
  }
  return out;
};

/** What the duplicate check needs of an event; `idKey`: tenantIdKey(tenant, id) when known (prepared on another thread). */
export type Dedupable = { index: number; tenant: string; id: string; digest: string; idKey?: string };
export type Deduped<T> = { kept: T[]; rejected: Rejection[]; reasons: RejectReason[]; duplicatesInRequest: number; duplicatesRecent: number };

/**
 * The duplicate check by (tenant, event_id) with the content digest, in
 * request order: within the request first, then against `recent`. A known id
 * with another digest is a conflict (rejected), with the same one a duplicate
 * (counted, skipped).
 */
export const dedupeEvents = <T extends Dedupable>(events: readonly T[], recent: RecentIds): Deduped<T> => {
  const out: Deduped<T> = { kept: [], rejected: [], reasons: [], duplicatesInRequest: 0, duplicatesRecent: 0 };
  const inRequest = new Map<string, string>();
  for (const c of events) {
    const key = c.idKey ?? tenantIdKey(c.tenant, c.id);
    const seen = inRequest.get(key) ?? recent.digestOf(c.tenant, c.id, key);
    if (seen !== undefined) {
      if (seen !== c.digest) {
        const message = 'this event_id was already sent with different content; a changed event needs a new event_id';
        out.rejected.push({ index: c.index, event_id: c.id, errors: [{ path: 'event_id', message }] });
        out.reasons.push('id_conflict');
      } else if (inRequest.has(key)) out.duplicatesInRequest++;
      else out.duplicatesRecent++;
      continue;
    }
    inRequest.set(key, c.digest);
    out.kept.push(c);
  }
  return out;
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
