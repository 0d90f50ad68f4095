// Trust activity for the bench's generated sessions (bench/audit.ts, part 3):
// one session in ten gets an injection signal and the trust transition it
// caused, and one in fifty also a second transition caused by its tenant's
// change freeze (a signal of no session, named by the transition). Without
// them every timeline page of the bench would read empty signal and
// transition branches, and never the signals a transition names.
import type { ClickHouseClient } from '@clickhouse/client';
import { compact, signalRow, trustRow } from '../schemas/clickhouse/rows-write.ts';
import { insertColumns, SIGNALS, TRUST_TRANSITIONS } from '../schemas/clickhouse/tables.ts';
import { sessionTrustSchema, signalEventSchema, type SessionTrust, type SignalEvent } from '../schemas/events.ts';

/** Sessions S-n with n % ACTIVE_EVERY = ACTIVE_AT have a signal and a transition; with n % FROZEN_EVERY = ACTIVE_AT, a freeze's too. */
export const ACTIVE_EVERY = 10;
export const FROZEN_EVERY = 50;
export const ACTIVE_AT = 3;

export type SessionKind = 'quiet' | 'active' | 'frozen';

export const sessionKindOf = (sessionId: string): SessionKind => {
  const n = Number(sessionId.slice(2));
  if (n % FROZEN_EVERY === ACTIVE_AT) return 'frozen';
  if (n % ACTIVE_EVERY === ACTIVE_AT) return 'active';
  return 'quiet';
};

/** A UUIDv7-shaped id from a number, `kind` 1 (injection) or 2 (freeze), so the rows of two tables can name each other. */
const idOf = (kind: 1 | 2, n: number): string => `01976d2a-0000-7${kind}00-8000-${String(n).padStart(12, '0')}`;
const iso = (ms: number): string => new Date(ms).toISOString();
const COORDS = { topic: 'bench', partition: 0 };

type Freeze = Extract<SignalEvent, { kind: 'change_freeze_raised' }>;

/** The tenant's change freeze: a signal of no session. */
const freezeOf = (tenant: string, n: number, atMs: number): Freeze => {
  const e = signalEventSchema.parse({
    type: 'signal', kind: 'change_freeze_raised', event_id: idOf(2, n), tenant_id: tenant, occurred_at: iso(atMs),
    freeze_id: `INC-${tenant}`, scope: { resource_prefix: 'repo:' }, reason: 'bench: a change freeze', raised_by: 'soc-oncall',
  });
  if (e.kind !== 'change_freeze_raised') throw new Error('not a freeze');
  return e;
};

/**
 * Writes the activity into `database`.signals and .trust_transitions unless
 * they already hold it (a kept store); every event and state is checked
 * against the contract first, as readers check them. Returns what it wrote.
 */
export const addTrustActivity = async (
  writer: ClickHouseClient,
  reader: ClickHouseClient,
  database: string,
  freezeAtMs: number,
): Promise<{ signals: number; transitions: number; seconds: number }> => {
  const t0 = performance.now();
  const count = async (table: string): Promise<number> => {
    const rs = await reader.query({ query: `SELECT count() AS n FROM ${database}.${table}`, format: 'JSONEachRow' });
    const [row] = await rs.json<{ n: number | string }>();
    return Number(row?.n);
  };
  const rs = await reader.query({
    query:
      `SELECT tenant, session_id, toUnixTimestamp64Milli(min(occurred_at)) AS first FROM ${database}.decisions ` +
      `WHERE toUInt64OrZero(substring(session_id, 3)) % ${ACTIVE_EVERY} = ${ACTIVE_AT} GROUP BY tenant, session_id`,
    format: 'JSONEachRow',
  });
  const sessions = await rs.json<{ tenant: string; session_id: string; first: number | string }>();
  const signals: SignalEvent[] = [];
  const states: SessionTrust[] = [];
  const freezes = new Map<string, Freeze>();
  for (const s of sessions) {
    const n = Number(s.session_id.slice(2));
    const freeze = freezes.get(s.tenant) ?? freezeOf(s.tenant, freezes.size, freezeAtMs);
    if (!freezes.has(s.tenant)) {
      freezes.set(s.tenant, freeze);
      signals.push(freeze);
    }
    // Between the session's first and second decision (a minute apart).
    const at = Number(s.first) + 30_000;
    const injection = signalEventSchema.parse({
      type: 'signal', kind: 'injection_detected', event_id: idOf(1, n), tenant_id: s.tenant, occurred_at: iso(at),
      session_id: s.session_id, signal_id: `SIG-${n}`, severity: 'high', detector: 'prompt-guard',
    });
    signals.push(injection);
    const cause = { kind: 'injection_detected', ref: `SIG-${n}`, event_id: injection.event_id, since: iso(at), tier: 'restricted' as const };
    const v1 = sessionTrustSchema.parse({
      session_id: s.session_id, tenant_id: s.tenant, version: 1, tier: 'restricted', causes: [cause], revoked_roles: [], consent_revoked: false,
      freezes: [], ended: false, updated_at: iso(at + 5), caused_by: injection.event_id,
    });
    states.push(v1);
    if (sessionKindOf(s.session_id) === 'frozen') {
      const active = { freeze_id: freeze.freeze_id, scope: freeze.scope, reason: freeze.reason, raised_by: freeze.raised_by, event_id: freeze.event_id, since: freeze.occurred_at };
      states.push(sessionTrustSchema.parse({ ...v1, version: 2, freezes: [active], updated_at: iso(at + 10), caused_by: freeze.event_id }));
    }
  }
  if ((await count('signals')) !== signals.length || (await count('trust_transitions')) !== states.length) {
    await writer.command({ query: `TRUNCATE TABLE ${database}.signals` });
    await writer.command({ query: `TRUNCATE TABLE ${database}.trust_transitions` });
    const at = (i: number) => ({ ...COORDS, offset: String(i) });
    await writer.insert({ table: `${database}.signals`, values: signals.map((e, i) => compact(SIGNALS, signalRow(e, at(i)))), columns: insertColumns(SIGNALS) as [string, ...string[]], format: 'JSONCompactEachRow' });
    await writer.insert({ table: `${database}.trust_transitions`, values: states.map((t, i) => compact(TRUST_TRANSITIONS, trustRow(t, at(i)))), columns: insertColumns(TRUST_TRANSITIONS) as [string, ...string[]], format: 'JSONCompactEachRow' });
  }
  return { signals: signals.length, transitions: states.length, seconds: (performance.now() - t0) / 1000 };
};
