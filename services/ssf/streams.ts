// SSF 1.0 stream configurations (§8.1) as trustfold keeps them, and the pure
// operations on them: create, update (PATCH), replace (PUT), status, subjects.
// A stream belongs to the tenant of the token that created it.
import { z } from 'zod';
import type { SessionTrust } from '../../schemas/events.ts';
import { EVENT_TYPES, TRANSMITTED_EVENT_TYPES } from './caep.ts';

export const PUSH = 'urn:ietf:rfc:8935';
export const POLL = 'urn:ietf:rfc:8936';
export const STATUSES = ['enabled', 'paused', 'disabled'] as const;
export type StreamStatus = (typeof STATUSES)[number];

const text = z.string().max(4096);
export const subjectSchema = z.looseObject({ format: z.string().min(1).max(64) });
export type Subject = z.infer<typeof subjectSchema>;

const audSchema = z.union([z.string().min(1).max(512), z.array(z.string().min(1).max(512)).min(1).max(16)]);

export const deliverySchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal(PUSH), endpoint_url: z.url({ protocol: /^https?$/ }).max(2048), authorization_header: z.string().max(8192).optional() }),
  z.strictObject({ method: z.literal(POLL), endpoint_url: z.string().max(2048).optional() }),
]);

/** What a receiver may set (SSF 1.0 §8.1.1: "receiver-supplied"); transmitter-supplied fields in a body are ignored. */
export const receiverFieldsSchema = z.object({
  events_requested: z.array(z.string().min(1).max(512)).max(64).optional(),
  delivery: deliverySchema.optional(),
  description: text.optional(),
  aud: audSchema.optional(),
});
export type ReceiverFields = z.infer<typeof receiverFieldsSchema>;

export type Delivery = { method: typeof PUSH; endpoint_url: string; authorization_header?: string } | { method: typeof POLL; endpoint_url: string };

export type StreamRecord = {
  stream_id: string;
  tenant_id: string;
  aud: string | string[];
  events_requested: string[];
  events_delivered: string[];
  delivery: Delivery;
  description?: string;
  /** Seconds without receiver activity before trustfold pauses (or disables) the stream; 0: none. */
  inactivity_timeout: number;
  min_verification_interval: number;
  status: StreamStatus;
  reason?: string;
  /** SSF default_subjects ALL: every session of the tenant, less `removed`; `added` is kept for receivers that list theirs. */
  subjects: { added: Subject[]; removed: Subject[] };
  created_at: string;
  updated_at: string;
};

/** A stream configuration as read back from the streams topic: parsed, not trusted (anyone able to write the topic could put anything there). */
export const storedStreamSchema: z.ZodType<StreamRecord> = z.object({
  stream_id: z.string().min(1).max(512),
  tenant_id: z.string().min(1).max(512),
  aud: audSchema,
  events_requested: z.array(z.string().min(1).max(512)).max(64),
  events_delivered: z.array(z.string().min(1).max(512)).max(64),
  delivery: z.discriminatedUnion('method', [
    z.object({ method: z.literal(PUSH), endpoint_url: z.string().max(2048), authorization_header: z.string().max(8192).exactOptional() }),
    z.object({ method: z.literal(POLL), endpoint_url: z.string().max(2048) }),
  ]),
  description: text.exactOptional(),
  inactivity_timeout: z.number().int().nonnegative(),
  min_verification_interval: z.number().int().nonnegative(),
  status: z.enum(STATUSES),
  reason: text.exactOptional(),
  subjects: z.object({ added: z.array(subjectSchema), removed: z.array(subjectSchema) }),
  created_at: z.string().max(64),
  updated_at: z.string().max(64),
});

export type StreamDefaults = { issuer: string; pollUrl: (streamId: string) => string; minVerificationIntervalS: number; inactivityTimeoutS: number };

/** Requested ∩ supported, in the order supported lists them. */
export const deliveredOf = (requested: readonly string[]): string[] => TRANSMITTED_EVENT_TYPES.filter((t) => requested.includes(t));

const deliveryOf = (d: ReceiverFields['delivery'], streamId: string, defaults: StreamDefaults): Delivery =>
  d === undefined || d.method === POLL
    ? { method: POLL, endpoint_url: defaults.pollUrl(streamId) }
    : { method: PUSH, endpoint_url: d.endpoint_url, ...(d.authorization_header !== undefined ? { authorization_header: d.authorization_header } : {}) };

export const createStream = (f: ReceiverFields, ids: { streamId: string; tenant: string; defaultAud: string; now: string }, defaults: StreamDefaults): StreamRecord => {
  const requested = f.events_requested ?? [...TRANSMITTED_EVENT_TYPES];
  return {
    stream_id: ids.streamId,
    tenant_id: ids.tenant,
    aud: f.aud ?? ids.defaultAud,
    events_requested: requested,
    events_delivered: deliveredOf(requested),
    delivery: deliveryOf(f.delivery, ids.streamId, defaults),
    ...(f.description !== undefined ? { description: f.description } : {}),
    inactivity_timeout: defaults.inactivityTimeoutS,
    min_verification_interval: defaults.minVerificationIntervalS,
    status: 'enabled',
    subjects: { added: [], removed: [] },
    created_at: ids.now,
    updated_at: ids.now,
  };
};

/** PATCH: the fields given replace theirs; the rest stays. */
export const updateStream = (s: StreamRecord, f: ReceiverFields, now: string, defaults: StreamDefaults): StreamRecord => {
  const requested = f.events_requested ?? s.events_requested;
  return {
    ...s,
    ...(f.aud !== undefined ? { aud: f.aud } : {}),
    ...(f.description !== undefined ? { description: f.description } : {}),
    events_requested: requested,
    events_delivered: deliveredOf(requested),
    delivery: f.delivery !== undefined ? deliveryOf(f.delivery, s.stream_id, defaults) : s.delivery,
    updated_at: now,
  };
};

/** PUT: the receiver-supplied fields are exactly the body's (defaults for those left out). */
export const replaceStream = (s: StreamRecord, f: ReceiverFields, now: string, defaults: StreamDefaults): StreamRecord => {
  const fresh = createStream(f, { streamId: s.stream_id, tenant: s.tenant_id, defaultAud: typeof s.aud === 'string' ? s.aud : (s.aud[0] ?? ''), now }, defaults);
  const { description: _dropped, ...kept } = s;
  return { ...kept, ...fresh, status: s.status, ...(s.reason !== undefined ? { reason: s.reason } : {}), subjects: s.subjects, created_at: s.created_at };
};

export const withStatus = (s: StreamRecord, status: StreamStatus, reason: string | undefined, now: string): StreamRecord => {
  const { reason: _old, ...rest } = s;
  return { ...rest, status, ...(reason !== undefined ? { reason } : {}), updated_at: now };
};

const sameSubject = (a: Subject, b: Subject): boolean => JSON.stringify(a, Object.keys(a).sort()) === JSON.stringify(b, Object.keys(b).sort());

export const addSubject = (s: StreamRecord, subject: Subject, now: string): StreamRecord => ({
  ...s,
  subjects: { added: [...s.subjects.added.filter((x) => !sameSubject(x, subject)), subject], removed: s.subjects.removed.filter((x) => !sameSubject(x, subject)) },
  updated_at: now,
});

export const removeSubject = (s: StreamRecord, subject: Subject, now: string): StreamRecord => ({
  ...s,
  subjects: { added: s.subjects.added.filter((x) => !sameSubject(x, subject)), removed: [...s.subjects.removed.filter((x) => !sameSubject(x, subject)), subject] },
  updated_at: now,
});

const str = (o: Record<string, unknown>, k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);

/**
 * Whether a subject names this session: its session id, or its delegator
 * (opaque id, iss_sub sub, email), or, for a complex subject, every member given.
 */
export const subjectMatches = (subject: Subject, s: Pick<SessionTrust, 'session_id' | 'tenant_id' | 'delegator'>): boolean => {
  const simple = (m: Record<string, unknown>, as: 'session' | 'user' | 'tenant' | 'any'): boolean => {
    const id = str(m, 'id') ?? str(m, 'sub') ?? str(m, 'email');
    if (id === undefined) return false;
    if (as === 'session') return id === s.session_id;
    if (as === 'tenant') return id === s.tenant_id;
    if (as === 'user') return id === s.delegator;
    return id === s.session_id || id === s.delegator;
  };
  if (subject.format !== 'complex') return simple(subject, 'any');
  const members = (['session', 'user', 'tenant'] as const).filter((k) => subject[k] !== null && typeof subject[k] === 'object');
  return members.length > 0 && members.every((k) => simple(subject[k] as Record<string, unknown>, k));
};

/** Whether a stream delivers events about this session: its tenant, and not a removed subject. */
export const streamCovers = (st: StreamRecord, s: SessionTrust): boolean =>
  st.tenant_id === s.tenant_id && !st.subjects.removed.some((sub) => subjectMatches(sub, s));

/** The configuration as a receiver reads it (SSF 1.0 §8.1.1); the push authorization header is a secret and never shown. */
export const publicView = (s: StreamRecord, issuer: string): Record<string, unknown> => ({
  stream_id: s.stream_id,
  iss: issuer,
  aud: s.aud,
  events_supported: [...TRANSMITTED_EVENT_TYPES],
  events_requested: s.events_requested,
  events_delivered: s.events_delivered,
  delivery: s.delivery.method === PUSH ? { method: PUSH, endpoint_url: s.delivery.endpoint_url } : s.delivery,
  ...(s.description !== undefined ? { description: s.description } : {}),
  min_verification_interval: s.min_verification_interval,
  ...(s.inactivity_timeout > 0 ? { inactivity_timeout: s.inactivity_timeout } : {}),
});

/** Event types sent whatever was requested (SSF 1.0 §8.1.4, §8.1.5). */
export const ALWAYS_DELIVERED: readonly string[] = [EVENT_TYPES.verification, EVENT_TYPES.streamUpdated];
