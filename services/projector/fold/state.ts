// The fold's state: one immutable record per session, the facts that fan out
// (a user's revocations, a freeze), and the world that holds them with the
// indexes that find the sessions a fact reaches.
import type { ActiveFreeze, SessionTrust, TrustCause } from '../../../schemas/events.ts';
import { tupleKey } from '../../../schemas/keys.ts';

/** One session's trust, plus the event ids already applied to it. */
export type SessionState = {
  readonly tenant_id: string;
  readonly session_id: string;
  readonly version: number;
  readonly delegator?: string;
  readonly agent?: string;
  readonly agent_version?: string;
  readonly consent_ref?: string;
  /** Active causes, in the order they were raised. */
  readonly causes: readonly TrustCause[];
  /** Active freezes listed on this session, by freeze_id. */
  readonly freezes: readonly ActiveFreeze[];
  readonly ended: boolean;
  readonly updated_at: string;
  readonly caused_by: string;
  /** Most recent event ids applied to this session (bounded; oldest first). */
  readonly applied: readonly string[];
};

/** The event that made a change, and its time: what a new version is stamped with. */
export type Stamp = { readonly event_id: string; readonly since: string };

/** Facts about one user that fan out to every live session they delegated. */
export type UserFacts = {
  readonly tenant_id: string;
  readonly user_id: string;
  /** role → the revocation in force. */
  readonly revokedRoles: ReadonlyMap<string, Stamp>;
  /** consent_ref (or '*' for all of the user's consents) → the revocation in force. */
  readonly consentRevocations: ReadonlyMap<string, Stamp>;
  readonly applied: readonly string[];
};

/** A freeze ever raised; kept after it is lifted so a late duplicate of the raise is recognised. */
export type FreezeRecord = {
  readonly tenant_id: string;
  readonly freeze: ActiveFreeze & { readonly event_id: string; readonly since: string };
  readonly status: 'active' | 'lifted' | 'expired';
  readonly applied: readonly string[];
};

/** A pending release: the cause (on session `key`) or the freeze (`key`) raised by `event_id`. */
export type Expiry = { at: number; key: string; event_id: string; what: 'cause' | 'freeze' };

/** The session-level facts the fold learns from chains and tokens. */
export type Facts = Pick<SessionState, 'delegator' | 'agent' | 'agent_version' | 'consent_ref'>;

/** A session's next content before it is committed as a version. */
export type Draft = Facts & { causes: readonly TrustCause[]; freezes: readonly ActiveFreeze[]; ended: boolean };

/**
 * The world is an *owned* accumulator: to stay O(1) per event at a million
 * sessions, the fold updates its maps in place and returns the same object
 * (like a reduce with a Map accumulator). Callers never keep using an older
 * world; `snapshotWorld` / `restoreWorld` (snapshot.ts) give value semantics.
 */
export type World = {
  /** The fold's clock (ms since epoch); advanced by event time and `tick`. */
  clock: number;
  /** Last wall time given to `tick`, if any: event time may run ahead of it by the allowed skew only. */
  wall: number | null;
  readonly sessions: Map<string, SessionState>;
  readonly users: Map<string, UserFacts>;
  readonly freezes: Map<string, FreezeRecord>;
  /** user key → keys of that user's live sessions. */
  readonly sessionsByUser: Map<string, Set<string>>;
  /** tenant → keys of its live sessions. */
  readonly sessionsByTenant: Map<string, Set<string>>;
  /** tenant → keys of its active freezes (a derived index, rebuilt on restore). */
  readonly activeFreezesByTenant: Map<string, Set<string>>;
  /** Min-heap of pending expiries (lazily invalidated). */
  readonly expiries: Expiry[];
};

export const initialWorld = (): World => ({
  clock: 0,
  wall: null,
  sessions: new Map(),
  users: new Map(),
  freezes: new Map(),
  sessionsByUser: new Map(),
  sessionsByTenant: new Map(),
  activeFreezesByTenant: new Map(),
  expiries: [],
});

/**
 * `changed`: every new session version, in order (what PDPs must see).
 * `touched`: keys of every record written, visible or not (a session whose
 * dedup memory moved, a user's facts, a freeze) — what a changelog persists.
 */
export type Transition = { world: World; changed: SessionTrust[]; touched: string[] };

export const sessionKeyOf = (tenantId: string, sessionId: string): string => tupleKey(tenantId, 'session', sessionId);
export const userKeyOf = (tenantId: string, userId: string): string => tupleKey(tenantId, 'user', userId);
export const freezeKeyOf = (tenantId: string, freezeId: string): string => tupleKey(tenantId, 'freeze', freezeId);
