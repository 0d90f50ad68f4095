// The composition root: builds the roles a process runs (services/roles/) from
// settings parsed once (services/roles/settings.ts, by services/main.ts), on
// one Kafka client, one metrics registry and one HTTP app, and hands to each
// what it shares with another (the projector's fold, a TrustView). It starts
// them in order, mounts their routes, and closes them in reverse. It parses
// nothing and serves nothing of its own; only this file knows every role.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka } from 'kafkajs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ActiveFreeze } from '../schemas/events.ts';
import { loadSigner } from './audit-log/keys.ts';
import { createAuditLogStore } from './audit-log/store.ts';
import { setUpAuth, type AuthSetup } from './lib/auth.ts';
import { clickhouseTarget, createClickHouse } from './lib/clickhouse.ts';
import { migrate } from './lib/clickhouse-migrate.ts';
import { errorMessage } from './lib/errors.ts';
import { buildBaseApp, type App, type ReadinessCheck } from './lib/http.ts';
import { createKafkaFor, ensureTopics, topicLayout } from './lib/kafka.ts';
import type { Logger } from './lib/log.ts';
import { auditLogRole } from './roles/audit-log.ts';
import { auditSinkRole } from './roles/audit-sink.ts';
import { cerbosAdapterRole } from './roles/cerbos-adapter.ts';
import { consoleRole } from './roles/console.ts';
import { detectRole } from './roles/detect.ts';
import { ingestRole, type FreezeSource } from './roles/ingest.ts';
import { projectorRole, type ProjectorRole } from './roles/projector.ts';
import { queryRole } from './roles/query.ts';
import type { RoleContext, RoleModule } from './roles/role.ts';
import type { Role, Settings } from './roles/settings.ts';
import { ssfRole } from './roles/ssf.ts';
import { trustViewRole, type TrustViewRole } from './roles/trust-view.ts';

export { ALL_ROLES, parseRoles, ROLES, type Role } from './roles/settings.ts';
export type { AuthSetup } from './lib/auth.ts';

export type SystemOptions = {
  settings: Settings;
  roles: ReadonlySet<Role>;
  brokers: string[];
  logger: Logger;
  /** Listen on config.http (default true); tests may use inject() only. */
  listen?: boolean;
};

export type System = {
  app: App;
  /** Base URL, when listening. */
  url: string | undefined;
  auth: AuthSetup;
  kafka: Kafka;
  close(): Promise<void>;
};

const withTimeout = async <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
};

export const startSystem = async (o: SystemOptions): Promise<System> => {
  const { settings, roles, logger } = o;
  const { config } = settings;
  const has = (r: Role): boolean => roles.has(r);
  const closers: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        logger.warn({ err: errorMessage(e) }, 'error while stopping');
      }
    }
  };

  try {
    const kafka = createKafkaFor(config.kafka, o.brokers, config.kafka.clientId);
    const admin = kafka.admin();
    await admin.connect();
    closers.push(() => admin.disconnect());
    const created = await ensureTopics(admin, topicLayout(config));
    if (created.length > 0) logger.info({ topics: created }, 'created topics');

    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const auth = setUpAuth(config);
    if (auth.tightened === true) logger.warn({ file: auth.secretFile }, 'the local JWT secret file was readable by others; its mode is now 0600');
    const readiness: ReadinessCheck[] = [
      {
        name: 'kafka',
        check: async () => {
          await withTimeout(admin.describeCluster(), 2_000, 'kafka');
          return true;
        },
      },
    ];

    // ClickHouse: every role opens clients of its own on the one target (one
    // chdb connection runs one operation at a time); all close with the process.
    // They close after every role has stopped (a role may still write while it stops).
    const target = clickhouseTarget(config.clickhouse);
    const clients: ClickHouseClient[] = [];
    closers.push(async () => {
      for (const c of clients.splice(0).reverse()) {
        try {
          await c.close();
        } catch (e) {
          logger.warn({ err: errorMessage(e) }, 'error while stopping');
        }
      }
    });
    const openClickHouse = (): ClickHouseClient => {
      const client = createClickHouse(target);
      clients.push(client);
      return client;
    };
    const ctx: RoleContext = { config, kafka, admin, registry, logger, openClickHouse };

    if (has('audit-sink') || has('query')) {
      const ch = openClickHouse();
      const report = await migrate(ch, { database: config.clickhouse.database, ttlDays: config.clickhouse.ttlDays, cluster: config.clickhouse.cluster });
      if (report.applied.length > 0) logger.info({ applied: report.applied }, 'ClickHouse migrations applied');
      readiness.push({
        name: 'clickhouse',
        check: async () => {
          const r = await withTimeout(ch.ping(), 2_000, 'clickhouse');
          if (r.success) return true;
          // The driver's text names hosts and ports: the log has it, /readyz does not.
          logger.warn({ err: errorMessage(r.error) }, 'ClickHouse ping failed');
          return 'ClickHouse unreachable';
        },
      });
    }
    const alc = settings.auditLog;
    if (alc !== undefined) await createAuditLogStore(openClickHouse(), config.clickhouse.database).ensureTables();
    const signer = alc !== undefined && has('audit-log') ? loadSigner({ signingKey: alc.signingKey, keyName: alc.keyName, dataDir: config.dataDir }).signer : undefined;

    // The roles, in start order; what two of them share is handed over here.
    const pc = settings.projector;
    const readUncommitted = pc?.delivery === 'idempotent';
    const modules: RoleModule[] = [];
    let projector: ProjectorRole | undefined;
    let view: TrustViewRole | undefined;
    // The view first, read to its start-time end before the projector joins its group: catching up on the
    // whole session-trust topic right after the join starved a restarted instance's heartbeats, and the group
    // dropped it (projector README, "Scaling out").
    if (has('projector') || has('ssf')) modules.push((view = trustViewRole(ctx, readUncommitted, { waitForCatchUp: has('projector') })));
    if (has('projector') && pc !== undefined) modules.push((projector = projectorRole(ctx, pc)));
    // The log writer is hooked into a sink of this process (started before it,
    // stopped after it); alone it reads the topics itself.
    if (has('audit-log') && alc !== undefined && signer !== undefined) {
      const log = auditLogRole(ctx, alc, signer, has('audit-sink') ? 'hooked' : 'consumer');
      modules.push(log);
      if (has('audit-sink')) modules.push(auditSinkRole(ctx, log.sinkHooks));
    } else if (has('audit-sink')) modules.push(auditSinkRole(ctx));
    if (has('cerbos-adapter')) modules.push(cerbosAdapterRole(ctx, settings.adapters));
    if (has('ingest')) {
      const p = projector?.projector;
      const v = view;
      // The freezes of a tenant from the projected state: the in-process fold
      // when the projector runs here, else the trust states of the process's
      // TrustView (a freeze shows there once it matches a live session), else
      // ingest's own reader of the freezes.
      const activeFreezes: FreezeSource | undefined =
        p !== undefined
          ? async (tenant) => p.activeFreezes(tenant)
          : v !== undefined
            ? async (tenant) => {
                const byId = new Map<string, ActiveFreeze>();
                for (const s of v.view()?.all() ?? []) if (s.tenant_id === tenant) for (const f of s.freezes) byId.set(f.freeze_id, f);
                return [...byId.values()];
              }
            : undefined;
      modules.push(ingestRole(ctx, { adapters: settings.adapters, activeFreezes, readUncommitted }));
    }
    if (has('query')) modules.push(queryRole(ctx, { auditLog: alc, signer }));
    if (has('ssf') && settings.ssf !== undefined) {
      const v = view;
      modules.push(ssfRole(ctx, { ssf: settings.ssf, readUncommitted, view: () => v?.view() }));
    }
    if (has('detect') && settings.detect !== undefined) modules.push(detectRole(ctx, settings.detect));
    modules.push(consoleRole());

    const started: RoleModule[] = [];
    closers.push(async () => {
      for (const m of started.splice(0).reverse()) {
        try {
          await m.close();
        } catch (e) {
          logger.warn({ err: errorMessage(e) }, 'error while stopping');
        }
      }
    });
    for (const m of modules) {
      started.push(m);
      await m.start();
      readiness.push(...m.readiness());
    }

    const app = await buildBaseApp({
      auth: auth.authenticator,
      registry,
      logger: logger.child({ role: 'http' }),
      readiness,
      bodyLimit: config.http.maxBodyBytes,
      metricsToken: config.http.metricsToken,
    });
    // Closed first: no request reaches a role that is stopping.
    closers.push(() => app.close());
    for (const m of modules) await m.routes?.(app);

    await app.ready();
    let url: string | undefined;
    if (o.listen !== false) {
      const address = await app.listen({ port: config.http.port, host: config.http.host });
      url = address.replace('://[::1]', '://localhost');
    }
    return { app, url, auth, kafka, close };
  } catch (e) {
    await close();
    throw e;
  }
};
