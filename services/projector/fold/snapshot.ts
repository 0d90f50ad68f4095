// Snapshots: the world as plain records (the projector's changelog), and back.
// Indexes and the expiry heap are derived, so they are rebuilt, not stored.
import { freezeKeyOf, initialWorld, sessionKeyOf, userKeyOf, type FreezeRecord, type SessionState, type Stamp, type UserFacts, type World } from './state.ts';
import { putFreeze, putSession, scheduleFreezeExpiry } from './world.ts';

export type Snapshot = {
  clock: number;
  wall: number | null;
  sessions: SessionState[];
  users: { tenant_id: string; user_id: string; revokedRoles: [string, Stamp][]; consentRevocations: [string, Stamp][]; applied: string[] }[];
  freezes: FreezeRecord[];
};

// Revocations keep the order they were made in (not sorted): a session that
// starts later inherits them in that order, so a restored world must list them
// exactly as the live one did or its new sessions would differ from a replay.
export const userRecord = (u: UserFacts): Snapshot['users'][number] => ({
  tenant_id: u.tenant_id,
  user_id: u.user_id,
  revokedRoles: [...u.revokedRoles],
  consentRevocations: [...u.consentRevocations],
  applied: [...u.applied],
});

const byKey = <T>(m: Map<string, T>): T[] => [...m.keys()].sort().map((k) => m.get(k) as T);

/** A deterministic, JSON-safe copy of the world (keys sorted). */
export const snapshotWorld = (w: World): Snapshot => ({
  clock: w.clock,
  wall: w.wall,
  sessions: byKey(w.sessions).filter((s) => s.version > 0),
  users: byKey(w.users).map(userRecord),
  freezes: byKey(w.freezes),
});

export const restoreSession = (w: World, s: SessionState): void => {
  const key = sessionKeyOf(s.tenant_id, s.session_id);
  const prev = w.sessions.get(key);
  if (prev !== undefined && prev.version >= s.version) return; // never regress
  putSession(w, key, prev, s);
};

export const restoreUser = (w: World, u: Snapshot['users'][number]): void => {
  w.users.set(userKeyOf(u.tenant_id, u.user_id), {
    tenant_id: u.tenant_id,
    user_id: u.user_id,
    revokedRoles: new Map(u.revokedRoles),
    consentRevocations: new Map(u.consentRevocations),
    applied: [...u.applied],
  });
};

export const restoreFreeze = (w: World, f: FreezeRecord): void => {
  const key = freezeKeyOf(f.tenant_id, f.freeze.freeze_id);
  putFreeze(w, key, f);
  if (f.status === 'active' && f.freeze.expires_at !== undefined) scheduleFreezeExpiry(w, key, f.freeze.event_id, f.freeze.expires_at);
};

/** Restores records into a fresh world; indexes and expiries are rebuilt. */
export const restoreWorld = (snap: Snapshot): World => {
  const w = initialWorld();
  w.clock = snap.clock;
  w.wall = snap.wall;
  for (const u of snap.users) restoreUser(w, u);
  for (const f of snap.freezes) restoreFreeze(w, f);
  for (const s of snap.sessions) restoreSession(w, s);
  return w;
};
