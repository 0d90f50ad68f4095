// Every HTTP route of trustfold with its real plugin, real auth and real SQL
// (embedded ClickHouse, two tenants' data), but with Kafka replaced by
// in-memory fakes: the hostile-input and authorization tests
// (test/unit/hostile-*.test.ts) run against this without a broker.
import type { ClickHouseClient } from '@clickhouse/client';
import { Registry } from 'prom-client';
import { parseEvent } from '../../schemas/codec.ts';
import { compact, decisionRow, signalRow, trustRow } from '../../schemas/clickhouse/rows.ts';
import { DECISIONS, insertColumns, SIGNALS, TRUST_TRANSITIONS } from '../../schemas/clickhouse/tables.ts';
import type { ActiveFreeze, DecisionEvent, SessionTrust, SignalEvent } from '../../schemas/events.ts';
import { parseAdapterConfig } from '../../services/adapters/config.ts';
import { opaRoutes } from '../../services/adapters/opa.ts';
import type { DecisionWriter } from '../../services/adapters/writer.ts';
import { ingestRoutes } from '../../services/ingest/routes.ts';
import type { EventSink, OutboundRecord } from '../../services/ingest/sink.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import { trustRoutes, type TrustSource } from '../../services/trust-api/routes.ts';
import { auditRoutes } from '../../services/query/routes.ts';
import { incident } from '../helpers/audit-incident.ts';
import { freshAuditDatabase } from '../helpers/clickhouse.ts';

export const HOSTILE_SECRET = 'hostile-secret-of-at-least-32-characters!';
export const TOPICS = { decisions: 'd', signals: 's', sessionTrust: 't', deadLetter: 'dl' };

/** Strings that exist in one tenant's data only: none may appear in another tenant's responses. */
export const TENANT_MARKERS: Record<string, string[]> = {};

export type HostileApp = {
  app: App;
  sent: OutboundRecord[];
  written: DecisionEvent[];
  /** The acme incident (docs/design.md#the-incident) planted in both tenants with tenant-specific ids. */
  acme: { decisionId: string; session: string; delegator: string; freezeId: string };
  globex: { decisionId: string; session: string; delegator: string; freezeId: string };
  clickhouse: ClickHouseClient;
  close(): Promise<void>;
};

const must = <T>(r: { ok: true; value: T } | { ok: false; error: unknown }): T => {
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
};

/** The incident of one tenant with ids and names that only that tenant has. */
const plant = (tenant: string, n: number) => {
  const inc = incident(tenant);
  const rename = (s: string): string => s.replace('S-9', `S-${tenant}-secret`).replace('U-442', `U-${tenant}-secret`);
  const hex = (i: number): string => `${String(n).padStart(4, '0')}${String(i).padStart(8, '0')}`;
  const decisions = inc.decisions.map((d, i) => {
    const x = JSON.parse(rename(JSON.stringify(d))) as DecisionEvent;
    return { ...x, event_id: `01976d2f-0000-7000-8000-${hex(i)}` };
  });
  const signals = inc.signals.map((s, i) => {
    const x = JSON.parse(rename(JSON.stringify(s))) as SignalEvent;
    return must(parseEvent({ ...x, event_id: `01976d2e-0000-7000-8000-${hex(i)}` })) as SignalEvent;
  });
  const trust = inc.trust.map((t) => JSON.parse(rename(JSON.stringify(t))) as SessionTrust);
  return { decisions, signals, trust };
};

export const buildHostileApp = async (): Promise<HostileApp> => {
  const db = await freshAuditDatabase('hostile');
  const tenants = { acme: plant('acme', 1), globex: plant('globex', 2) };
  let offset = 0;
  const at = () => ({ topic: 'seed', partition: 0, offset: String(offset++) });
  for (const t of Object.values(tenants)) {
    await db.writer.insert({ table: `${db.database}.decisions`, values: t.decisions.map((d) => compact(DECISIONS, decisionRow(d, at()))), columns: insertColumns(DECISIONS) as [string, ...string[]], format: 'JSONCompactEachRow' });
    await db.writer.insert({ table: `${db.database}.signals`, values: t.signals.map((s) => compact(SIGNALS, signalRow(s, at()))), columns: insertColumns(SIGNALS) as [string, ...string[]], format: 'JSONCompactEachRow' });
    await db.writer.insert({ table: `${db.database}.trust_transitions`, values: t.trust.map((s) => compact(TRUST_TRANSITIONS, trustRow(s, at()))), columns: insertColumns(TRUST_TRANSITIONS) as [string, ...string[]], format: 'JSONCompactEachRow' });
  }
  const ids = (tenant: 'acme' | 'globex') => ({
    decisionId: tenants[tenant].decisions[2]?.event_id ?? '',
    session: `S-${tenant}-secret`,
    delegator: `U-${tenant}-secret`,
    freezeId: `INC-${tenant}-secret`,
  });
  for (const tenant of ['acme', 'globex'] as const) {
    const t = tenants[tenant];
    TENANT_MARKERS[tenant] = [ids(tenant).session, ids(tenant).delegator, ids(tenant).freezeId, ...t.decisions.map((d) => d.event_id), ...t.signals.map((s) => s.event_id)];
  }

  const states = new Map<string, SessionTrust>();
  for (const t of Object.values(tenants)) for (const s of t.trust) states.set(`${s.tenant_id}/${s.session_id}`, s);
  const view: TrustSource = {
    isReady: () => true,
    get: (session, tenant) => {
      const s = states.get(`${tenant}/${session}`);
      return s === undefined ? { known: false, reason: 'unknown_session', stalenessMs: 0 } : { known: true, state: s, version: s.version, stalenessMs: 0, receivedAt: 0 };
    },
    find: (session) => [...states.values()].filter((s) => s.session_id === session),
    all: () => states.values(),
    onChange: () => () => undefined,
  };
  // A Map, not an object literal: a tenant named "constructor" must not find Object's.
  const freezes = new Map<string, ActiveFreeze[]>([
    ['acme', [{ freeze_id: ids('acme').freezeId, scope: { resource_prefix: 'repo:' }, reason: 'incident' }]],
    ['globex', [{ freeze_id: ids('globex').freezeId, scope: { resource_prefix: 'repo:' }, reason: 'incident' }]],
  ]);

  const sent: OutboundRecord[] = [];
  const sink: EventSink = { send: async (r) => void sent.push(...r), ready: async () => true, close: async () => undefined };
  const written: DecisionEvent[] = [];
  const writer: DecisionWriter = { write: async (e) => void written.push(...e), close: async () => undefined };
  const registry = new Registry();
  const app = await buildBaseApp({ auth: createAuthenticator({ secret: HOSTILE_SECRET }), registry, bodyLimit: 1024 * 1024 });
  await app.register(ingestRoutes({ sink, topics: TOPICS, registry, activeFreezes: async (t) => freezes.get(t) ?? [], limits: { maxBodyBytes: 1024 * 1024, maxEventsPerRequest: 1000, produceTimeoutMs: 1000 } }));
  await app.register(opaRoutes({ writer, opa: must(parseAdapterConfig({})).opa, registry }));
  await app.register(trustRoutes({ view, heartbeatMs: 60_000 }));
  await app.register(auditRoutes({ clickhouse: db.reader, database: db.database }));
  await app.ready();
  return { app, sent, written, acme: ids('acme'), globex: ids('globex'), clickhouse: db.reader, close: () => app.close() };
};

export type Credential = 'none' | 'bad_signature' | 'expired' | 'wrong_scope' | 'other_tenant' | 'operator' | 'own';

/** An Authorization header of the given kind, for a route that needs `scope`, against tenant acme's data. */
export const authHeader = async (kind: Credential, scope: string): Promise<Record<string, string>> => {
  const all = ['events:write', 'trust:write', 'freeze:write', 'freeze:read', 'trust:read', 'audit:read'];
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  switch (kind) {
    case 'none':
      return {};
    case 'bad_signature':
      return bearer(await mintToken({ sub: 'x', tenant: 'acme', scopes: all }, 'another-secret-of-at-least-32-characters'));
    case 'expired':
      return bearer(await mintToken({ sub: 'x', tenant: 'acme', scopes: all, ttlSeconds: -60 }, HOSTILE_SECRET));
    case 'wrong_scope':
      return bearer(await mintToken({ sub: 'x', tenant: 'acme', scopes: all.filter((s) => s !== scope) }, HOSTILE_SECRET));
    case 'other_tenant':
      return bearer(await mintToken({ sub: 'x', tenant: 'globex', scopes: all }, HOSTILE_SECRET));
    case 'operator':
      return bearer(await mintToken({ sub: 'op', tenant: '*', scopes: [...all, 'tenants:all'] }, HOSTILE_SECRET));
    case 'own':
      return bearer(await mintToken({ sub: 'x', tenant: 'acme', scopes: all }, HOSTILE_SECRET));
  }
};
