// The receiver: SETs pushed by an upstream transmitter (an identity provider)
// at POST /v1/ssf/receivers/:id (RFC 8935), verified against the upstream's
// keys, `iss`, `aud`, `iat` and jti replay, then mapped to ordinary trustfold
// signals that go through ingest's own admission (`admitEvents`: tenant,
// the scope each kind needs, actor stamping, event-time bounds, duplicate
// ids) and the same Kafka sink as `POST /v1/events`. The upstream acts as a
// caller whose `sub` is its name and whose scopes are the ones configured
// for it, so it can do exactly what a token with those scopes could.
//
// Answers (RFC 8935 §2.3, §2.4): 202 once the mapped signals are acked by
// Kafka, or when the SET is valid but maps to nothing (unknown event type,
// unknown subject: accepted, not applied, counted) or is a replay; 400 with
// `err` invalid_request / invalid_key / invalid_issuer / invalid_audience /
// access_denied; 401/403 without our token or its scope; 413 over the size
// limit; 503 when Kafka does not ack (the transmitter retries).
//
// An upstream that offers poll (RFC 8936) is polled instead of (or besides)
// pushing: one long-poll loop per upstream with `poll` configured. Each SET
// it hands out goes through the same steps; what would have answered 202 is
// acknowledged (`ack`), what would have answered 400 is reported in `setErrs`
// with the same `err`, and what would have answered 503 is neither, so the
// transmitter hands it out again. Acks are only dropped once a poll request
// carrying them was answered 2xx.
import { createHash } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { Tier } from '../../schemas/events.ts';
import { canAccessTenant, type Caller, type Scope } from '../lib/auth.ts';
import type { Topics } from '../lib/config.ts';
import { DEFAULT_EVENT_TIME_BOUNDS, type EventTimeBounds } from '../lib/event-time.ts';
import { callerOf, requireScope, sendError } from '../lib/http.ts';
import { partitionKeyOf, topicOf } from '../lib/kafka.ts';
import { admitEvents, type RejectReason } from '../ingest/admit.ts';
import { createRecentIds } from '../ingest/recent-ids.ts';
import type { EventSink } from '../ingest/sink.ts';
import type { Logger } from '../lib/log.ts';
import { EVENT_TYPES } from './caep.ts';
import { SET_CONTENT_TYPE, verifySet, type SetError, type VerifiedSet } from './set.ts';

export const upstreamSchema = z.strictObject({
  /** The path segment of its receive endpoint. */
  id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
  /** Who the signals are from, as `emitted_by` and in reasons ("okta"). */
  name: z.string().min(1).max(128),
  tenant: z.string().min(1).max(256),
  issuer: z.string().min(1).max(1024),
  audience: z.string().min(1).max(1024),
  jwks_url: z.url().optional(),
  jwks: z.object({ keys: z.array(z.looseObject({ kty: z.string() })).min(1) }).optional(),
  /** What the upstream may do, as a token's scopes would allow (EVENT_KIND_SCOPES). */
  scopes: z.array(z.string()).default(['events:write']),
  /** What a simple opaque subject names. */
  opaque_subject_is: z.enum(['session', 'user']).default('session'),
  /** What credential-change and token-claims-change do to the user: revoke consent (default) or a role. */
  credential_change: z.union([z.object({ as: z.literal('consent_revoked') }), z.object({ as: z.literal('role_revoked'), role: z.string().min(1).max(256) })]).default({ as: 'consent_revoked' }),
  /** Poll the upstream (RFC 8936): its stream's poll endpoint_url and the Authorization it wants. Set by the operator, not a receiver. */
  poll: z
    .strictObject({
      url: z.url({ protocol: /^https?$/ }),
      authorization_header: z.string().min(1).max(8192).optional(),
      max_events: z.number().int().min(1).max(1000).default(100),
    })
    .optional(),
});
export type Upstream = z.infer<typeof upstreamSchema>;

/** CAEP risk level → the tier trustfold sets. */
export const LEVEL_TIERS: Readonly<Record<string, Tier>> = { LOW: 'trusted', MEDIUM: 'degraded', HIGH: 'restricted' };

export type Target = { session?: string; user?: string };

/** Subject formats (RFC 9493) that name a user; jwt_id, saml_assertion_id, device-only and proprietary formats name no user or session trustfold knows. */
const USER_FORMATS: ReadonlySet<string> = new Set(['iss_sub', 'email', 'phone_number']);

const idOf = (m: unknown): string | undefined => {
  if (m === null || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  const key = o['format'] === 'iss_sub' ? 'sub' : o['format'] === 'email' ? 'email' : o['format'] === 'phone_number' ? 'phone_number' : o['format'] === 'opaque' ? 'id' : undefined;
  const v = key !== undefined ? o[key] : undefined;
  return typeof v === 'string' && v !== '' ? v : undefined;
};

/** The session and/or user a SET is about: SSF 1.0's top-level sub_id, or CAEP's older `subject` inside the event. */
export const targetOf = (set: VerifiedSet, u: Pick<Upstream, 'opaque_subject_is'>): Target => {
  const sub = Object.keys(set.claims.sub_id).length > 0 ? set.claims.sub_id : (set.event['subject'] as Record<string, unknown> | undefined) ?? {};
  if (sub['format'] === 'complex') {
    const s = sub['session'] as Record<string, unknown> | undefined;
    const usr = sub['user'] as Record<string, unknown> | undefined;
    const session = s?.['format'] === 'opaque' ? idOf(s) : undefined;
    const user = usr !== undefined && (USER_FORMATS.has(String(usr['format'])) || usr['format'] === 'opaque') ? idOf(usr) : undefined;
    return { ...(session !== undefined ? { session } : {}), ...(user !== undefined ? { user } : {}) };
  }
  const id = idOf(sub);
  if (id === undefined) return {};
  if (sub['format'] === 'opaque') return u.opaque_subject_is === 'session' ? { session: id } : { user: id };
  return USER_FORMATS.has(String(sub['format'])) ? { user: id } : {};
};

export type Mapped = { signals: Record<string, unknown>[] } | { unapplied: 'unknown_event_type' | 'unknown_subject' | 'not_restrictive' | 'ssf_control' };

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : v !== null && typeof v === 'object' && typeof (v as Record<string, unknown>)['en'] === 'string' ? ((v as Record<string, string>)['en'] as string) : undefined);

/**
 * CAEP event → trustfold signals (without envelope). Pure; `sessionsOfUser`
 * answers which sessions a user has (for events about a user, not a session).
 *   session-revoked                        → session_ended (the session, or each of the user's)
 *   credential-change, token-claims-change → consent_revoked or role_revoked of the user (configured)
 *   risk-level-change                      → trust_set with the level's tier (LEVEL_TIERS)
 *   assurance-level-change (decrease)      → trust_set degraded
 *   device-compliance-change (not-compliant) → trust_set degraded
 * Anything else is accepted and not applied.
 */
export const mapCaep = (set: VerifiedSet, u: Upstream, sessionsOfUser: (tenant: string, user: string) => string[]): Mapped => {
  const t = targetOf(set, u);
  const sessions = t.session !== undefined ? [t.session] : t.user !== undefined ? sessionsOfUser(u.tenant, t.user) : [];
  const why = text(set.event['reason_admin']);
  const said = (what: string): string => `${u.name} reported ${what}${why !== undefined ? `: ${why}` : ''}`;
  const perSession = (make: (session_id: string) => Record<string, unknown>): Mapped => (sessions.length === 0 ? { unapplied: 'unknown_subject' } : { signals: sessions.map(make) });
  const setTier = (tier: Tier | undefined, what: string): Mapped =>
    tier === undefined ? { unapplied: 'not_restrictive' } : perSession((session_id) => ({ kind: 'trust_set', session_id, tier, reason: said(what) }));
  switch (set.eventType) {
    case EVENT_TYPES.sessionRevoked:
      return perSession((session_id) => ({ kind: 'session_ended', session_id, reason: said('the session revoked') }));
    case EVENT_TYPES.credentialChange:
    case EVENT_TYPES.tokenClaimsChange: {
      if (t.user === undefined) return { unapplied: 'unknown_subject' };
      const what = set.eventType === EVENT_TYPES.credentialChange ? 'a credential change' : 'changed token claims';
      return u.credential_change.as === 'role_revoked'
        ? { signals: [{ kind: 'role_revoked', user_id: t.user, role: u.credential_change.role, reason: said(what) }] }
        : { signals: [{ kind: 'consent_revoked', user_id: t.user }] };
    }
    case EVENT_TYPES.riskLevelChange: {
      const level = typeof set.event['current_level'] === 'string' ? set.event['current_level'].toUpperCase() : '';
      return setTier(LEVEL_TIERS[level], `risk ${level}${typeof set.event['risk_reason'] === 'string' ? ` (${set.event['risk_reason']})` : ''}`);
    }
    case EVENT_TYPES.assuranceLevelChange:
      return set.event['change_direction'] === 'decrease' ? setTier('degraded', 'a lower assurance level') : { unapplied: 'not_restrictive' };
    case EVENT_TYPES.deviceComplianceChange:
      return set.event['current_status'] === 'not-compliant' ? setTier('degraded', 'the device not compliant') : { unapplied: 'not_restrictive' };
    case EVENT_TYPES.verification:
    case EVENT_TYPES.streamUpdated:
      // The upstream's answers about our stream with it: accepted, logged by their count.
      return { unapplied: 'ssf_control' };
    default:
      return { unapplied: 'unknown_event_type' };
  }
};

/** One event id per (upstream, jti, index): a re-sent SET maps to the same ids, which ingest and the fold recognise. */
export const eventIdFor = (u: Pick<Upstream, 'tenant' | 'issuer'>, jti: string, index: number): string => {
  const h = createHash('sha256').update(JSON.stringify([u.tenant, u.issuer, jti, index])).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
};

export type ReceiverDeps = {
  upstreams: readonly Upstream[];
  sink: EventSink;
  topics: Topics;
  registry: Registry;
  sessionsOfUser: (tenant: string, user: string) => string[];
  eventTime?: EventTimeBounds;
  codec?: Codec;
  clock?: () => number;
  /** Largest SET accepted (bytes). Default 64 KiB. */
  maxSetBytes?: number;
  /** For tests: keys instead of fetching jwks_url. */
  keysFor?: (u: Upstream) => JWTVerifyGetKey;
  logger?: Logger;
  /** Poll loops: how a poll request is made (tests), the longest a request may take, the backoff after a failure. */
  pollFetch?: typeof fetch;
  pollTimeoutMs?: number;
  pollRetryBaseMs?: number;
  pollRetryMaxMs?: number;
};

/** What one SET came to, however it arrived (push or poll). */
export type SetOutcome =
  | { kind: 'accepted'; applied: boolean; outcome: string }
  | { kind: 'rejected'; error: SetError }
  | { kind: 'unavailable' };

const setErr = (reply: Parameters<typeof sendError>[0], status: number, e: SetError): unknown => reply.code(status).type('application/json').send(e);

const REJECT_ERR: Partial<Record<RejectReason, SetError['err']>> = { missing_scope: 'access_denied', tenant_mismatch: 'access_denied' };

export type Receiver = {
  routes: FastifyPluginAsyncZod;
  /** Verifies, maps and stores one SET from an upstream. */
  process(u: Upstream, token: string, via: 'push' | 'poll'): Promise<SetOutcome>;
  /** Starts a poll loop for every upstream with `poll`. */
  startPolling(): void;
  close(): Promise<void>;
};

type PollAnswer = { sets: Record<string, string>; moreAvailable: boolean };
const pollAnswer = z.object({ sets: z.record(z.string(), z.string()), moreAvailable: z.boolean().optional() });

export const createReceiver = (deps: ReceiverDeps): Receiver => {
  const codec = deps.codec ?? createCodec();
  const clock = deps.clock ?? Date.now;
  const bounds = deps.eventTime ?? DEFAULT_EVENT_TIME_BOUNDS;
  const byId = new Map(deps.upstreams.map((u) => [u.id, u]));
  const keys = new Map(
    deps.upstreams.map((u) => [
      u.id,
      deps.keysFor?.(u) ?? (u.jwks !== undefined ? createLocalJWKSet(u.jwks as JSONWebKeySet) : createRemoteJWKSet(new URL(u.jwks_url ?? 'invalid:'))),
    ]),
  );
  const seen = new Map(deps.upstreams.map((u) => [u.id, createRecentIds(100_000)]));
  const recent = createRecentIds(100_000);
  const received = new Counter({ name: 'trustfold_ssf_received_total', help: 'SETs received, by receiver, delivery (push, poll) and outcome', labelNames: ['receiver', 'delivery', 'outcome'], registers: [deps.registry] });
  const polls = new Counter({ name: 'trustfold_ssf_receiver_polls_total', help: 'Poll requests (RFC 8936) to upstream transmitters, by receiver and result', labelNames: ['receiver', 'result'], registers: [deps.registry] });

  const process = async (u: Upstream, token: string, via: 'push' | 'poll'): Promise<SetOutcome> => {
    const count = (outcome: string): void => received.inc({ receiver: u.id, delivery: via, outcome });
    const nowMs = clock();
    const keySet = keys.get(u.id);
    const replays = seen.get(u.id);
    if (keySet === undefined || replays === undefined) return { kind: 'rejected', error: { err: 'invalid_issuer', description: `no receiver "${u.id}"` } };
    const v = await verifySet(token.trim(), keySet, { issuer: u.issuer, audience: u.audience, nowMs, maxAgeMs: bounds.maxAgeMs, maxFutureSkewMs: bounds.maxFutureSkewMs });
    if (!v.ok) {
      count(`rejected_${v.error.err}`);
      return { kind: 'rejected', error: v.error };
    }
    if (replays.digestOf(u.tenant, v.value.claims.jti) !== undefined) {
      // RFC 8935 §2: answered as if it had not been received before; not applied again.
      count('replay');
      return { kind: 'accepted', applied: false, outcome: 'replay' };
    }
    const mapped = mapCaep(v.value, u, deps.sessionsOfUser);
    if ('unapplied' in mapped) {
      count(`unapplied_${mapped.unapplied}`);
      replays.addAll([{ tenant: u.tenant, id: v.value.claims.jti, digest: '-' }]);
      return { kind: 'accepted', applied: false, outcome: `unapplied_${mapped.unapplied}` };
    }
    const ts = typeof v.value.event['event_timestamp'] === 'number' ? v.value.event['event_timestamp'] : v.value.claims.iat;
    const occurred_at = new Date(Math.min(ts * 1000, nowMs)).toISOString();
    const raw = mapped.signals.map((sig, i) => ({ type: 'signal', event_id: eventIdFor(u, v.value.claims.jti, i), tenant_id: u.tenant, occurred_at, ...sig }));
    const caller: Caller = { sub: u.name, tenant: u.tenant, scopes: new Set(u.scopes as Scope[]), expiresAt: Number.MAX_SAFE_INTEGER };
    const admission = admitEvents(raw, { caller, recent, nowMs, bounds });
    const first = admission.rejected[0];
    if (first !== undefined && admission.events.length === 0) {
      const reason = admission.reasons[0] ?? 'invalid';
      count(`rejected_${reason}`);
      return { kind: 'rejected', error: { err: REJECT_ERR[reason] ?? 'invalid_request', description: first.errors.map((e) => `${e.path}: ${e.message}`).join('; ') } };
    }
    try {
      await deps.sink.send(admission.events.map((e) => ({ topic: topicOf(deps.topics, e), key: partitionKeyOf(e), value: codec.encodeEvent(e) })));
    } catch (e) {
      deps.logger?.warn({ err: (e as Error).message, receiver: u.id }, 'ssf receiver: produce failed');
      count('unavailable');
      return { kind: 'unavailable' };
    }
    recent.addAll(admission.events.map((e, i) => ({ tenant: e.tenant_id, id: e.event_id, digest: admission.digests[i] ?? '' })));
    replays.addAll([{ tenant: u.tenant, id: v.value.claims.jti, digest: '-' }]);
    count('applied');
    return { kind: 'accepted', applied: true, outcome: 'applied' };
  };

  const routes: FastifyPluginAsyncZod = async (app) => {
    app.removeContentTypeParser(['application/json']);
    app.addContentTypeParser([SET_CONTENT_TYPE, 'application/jwt', 'application/json'], { parseAs: 'string', bodyLimit: deps.maxSetBytes ?? 65_536 }, (_req, body, done) => done(null, body));

    app.post(
      '/v1/ssf/receivers/:id',
      {
        onRequest: requireScope('ssf:receive'),
        bodyLimit: deps.maxSetBytes ?? 65_536,
        validatorCompiler: () => (data) => ({ value: data }),
        schema: { summary: 'Receive a pushed SET (RFC 8935) from a configured upstream transmitter', tags: ['ssf'], params: z.object({ id: z.string() }) },
      },
      async (req, reply) => {
        const { id } = req.params as { id: string };
        const u = byId.get(id);
        if (u === undefined) return sendError(reply, 404, 'not_found', `no receiver "${id}"`);
        const token = callerOf(req);
        if (!canAccessTenant(token, u.tenant)) return setErr(reply, 403, { err: 'access_denied', description: `the token may not write tenant "${u.tenant}"` });
        const r = await process(u, typeof req.body === 'string' ? req.body : '', 'push');
        if (r.kind === 'accepted') return reply.code(202).send();
        if (r.kind === 'rejected') return setErr(reply, 400, r.error);
        reply.header('retry-after', '2');
        return sendError(reply, 503, 'kafka_unavailable', 'signals not stored (Kafka unavailable); retry');
      },
    );
  };

  const stopping = new AbortController();
  const loops: Promise<void>[] = [];
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      stopping.signal.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      }, { once: true });
    });

  const pollLoop = async (u: Upstream, p: NonNullable<Upstream['poll']>): Promise<void> => {
    const doFetch = deps.pollFetch ?? fetch;
    let ack: string[] = [];
    let setErrs: Record<string, { err: string; description: string }> = {};
    let failures = 0;
    while (!stopping.signal.aborted) {
      let answer: PollAnswer;
      try {
        const res = await doFetch(p.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', ...(p.authorization_header !== undefined ? { authorization: p.authorization_header } : {}) },
          body: JSON.stringify({ maxEvents: p.max_events, returnImmediately: false, ack, setErrs }),
          signal: AbortSignal.any([stopping.signal, AbortSignal.timeout(deps.pollTimeoutMs ?? 60_000)]),
        });
        const text = await res.text();
        if (res.status < 200 || res.status > 299) throw new Error(`poll answered ${res.status}: ${text.slice(0, 200)}`);
        const parsed = pollAnswer.safeParse(JSON.parse(text));
        if (!parsed.success) throw new Error(`poll answer is not RFC 8936: ${parsed.error.issues[0]?.message ?? ''}`);
        answer = { sets: parsed.data.sets, moreAvailable: parsed.data.moreAvailable ?? false };
        polls.inc({ receiver: u.id, result: 'ok' });
      } catch (e) {
        if (stopping.signal.aborted) return;
        polls.inc({ receiver: u.id, result: 'failed' });
        failures++;
        deps.logger?.warn({ err: (e as Error).message, receiver: u.id }, 'ssf receiver: poll failed; retrying');
        // The acks of this request were not seen by the transmitter: they go with the next one.
        await sleep(Math.min(deps.pollRetryMaxMs ?? 30_000, (deps.pollRetryBaseMs ?? 500) * 2 ** Math.min(16, failures - 1)));
        continue;
      }
      failures = 0;
      ack = [];
      setErrs = {};
      let unavailable = false;
      for (const [jti, set] of Object.entries(answer.sets)) {
        const r = await process(u, set, 'poll');
        if (r.kind === 'accepted') ack.push(jti);
        else if (r.kind === 'rejected') setErrs[jti] = { err: r.error.err, description: r.error.description };
        else unavailable = true; // neither acked nor refused: the transmitter hands it out again
      }
      if (unavailable) await sleep(deps.pollRetryBaseMs ?? 500);
    }
  };

  return {
    routes,
    process,
    startPolling() {
      for (const u of deps.upstreams) if (u.poll !== undefined) loops.push(pollLoop(u, u.poll));
    },
    async close() {
      stopping.abort();
      await Promise.all(loops);
    },
  };
};

/** The push endpoint alone (no poll loops). */
export const receiverRoutes = (deps: ReceiverDeps): FastifyPluginAsyncZod => createReceiver(deps).routes;
