// The composition root: wires the roles a process runs to Kafka, ClickHouse
// and one HTTP app. `trustfold serve --role …` (services/main.ts) calls it; so
// do the end-to-end tests. Roles never import each other, only this file
// knows them all.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka } from 'kafkajs';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { migrate } from './lib/clickhouse-migrate.ts';
import type { ActiveFreeze } from '../schemas/events.ts';
import { err, ok, type Result } from '../schemas/result.ts';
import { createCerbosAuditConsumer } from './adapters/cerbos.ts';
import { parseAdapterConfig, type AdapterConfig } from './adapters/config.ts';
import { opaRoutes } from './adapters/opa.ts';
import { createDecisionWriter } from './adapters/writer.ts';
import { parseAuditLogConfig } from './audit-log/config.ts';
import { knownVerifierKeys, loadSigner } from './audit-log/keys.ts';
import { createRecordReader } from './audit-log/record-reader.ts';
import { auditLogRoutes } from './audit-log/routes.ts';
import { createAuditLogStore } from './audit-log/store.ts';
import { createVerifier } from './audit-log/verify.ts';
import { createAuditLogWriter, ensureCheckpointTopic } from './audit-log/writer.ts';
import { createAuditSink } from './audit-sink/sink.ts';
import { consoleRoutes } from './console/plugin.ts';
import { ingestRoutes, kafkaReadiness } from './ingest/routes.ts';
import { createKafkaSink } from './ingest/sink.ts';
import { createAuthenticator, loadOrCreateLocalSecret, localSecretFile, type Authenticator } from './lib/auth.ts';
import { clickhouseTarget, createClickHouse } from './lib/clickhouse.ts';
import type { Config } from './lib/config.ts';
import { errorMessage } from './lib/errors.ts';
import { buildBaseApp, type App, type ReadinessCheck } from './lib/http.ts';
import { createKafkaFor, ensureTopics, topicLayout } from './lib/kafka.ts';
import type { Logger } from './lib/log.ts';
import { createTrustView, type TrustView } from './pdp-client/trust-view.ts';
import { parseProjectorConfig } from './projector/config.ts';
import { createProjector, type Projector, type ProjectorStats } from './projector/runtime.ts';
import { trustRoutes } from './trust-api/routes.ts';
import { auditRoutes } from './query/routes.ts';
import { parseSsfConfig } from './ssf/config.ts';
import { startSsfRole } from './ssf/role.ts';
import { auditSinkGroupOf } from './audit-sink/group.ts';
import { parseDetectConfig } from './detect/config.ts';
import { createDetectRole } from './detect/role.ts';

export const ROLES = ['ingest', 'projector', 'audit-sink', 'audit-log', 'query', 'cerbos-adapter', 'ssf', 'detect'] as const;
export type Role = (typeof ROLES)[number];
/** `all` is every role but the Cerbos adapter, which needs a Cerbos audit topic to read, `ssf` (OpenID Shared Signals) and `detect` (detections as signals; a consumer of every decision, opt-in while its rules are tuned), asked for by name: `--role all,ssf,detect`. */
export const ALL_ROLES: readonly Role[] = ['ingest', 'projector', 'audit-sink', 'audit-log', 'query'];

/** `all`, one role, or a comma-separated list (`ingest,query`). */
export const parseRoles = (spec: string): Result<ReadonlySet<Role>, string> => {
  const out = new Set<Role>();
  for (const part of spec.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (part === 'all') ALL_ROLES.forEach((r) => out.add(r));
    else if ((ROLES as readonly string[]).includes(part)) out.add(part as Role);
    else return err(`unknown role "${part}" (roles: all, ${ROLES.join(', ')})`);
  }
  return out.size === 0 ? err('no role given') : ok(out);
};

export type AuthSetup = { authenticator: Authenticator; localSecret?: string; secretFile?: string; created?: boolean; tightened?: boolean };

/** The configured key, or in local mode a generated secret kept in the data dir. */
export const setUpAuth = (config: Config): AuthSetup => {
  if (config.auth.secret !== undefined || config.auth.jwksUrl !== undefined) {
    return { authenticator: createAuthenticator(config.auth) };
  }
  const file = localSecretFile(config);
  const { secret, created, tightened } = loadOrCreateLocalSecret(file);
  return {
    authenticator: createAuthenticator({ ...config.auth, secret }),
    localSecret: secret,
    secretFile: file,
    created,
    ...(tightened === true ? { tightened } : {}),
  };
};

export type SystemOptions = {
  config: Config;
  roles: ReadonlySet<Role>;
  brokers: string[];
  logger: Logger;
  /** Raw environment, for the roles' own settings (projector, adapters). */
  env: Record<string, string | undefined>;
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

const configOrThrow = <T>(what: string, r: Result<T, { path: string; message: string }[]>): T => {
  if (r.ok) return r.value;
  throw new Error(`invalid ${what} configuration: ${r.error.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
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
  const { config, roles, logger } = o;
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
    const adapters: AdapterConfig = configOrThrow('adapter', parseAdapterConfig(o.env));
    const readiness: ReadinessCheck[] = [
      {
        name: 'kafka',
        check: async () => {
          await withTimeout(admin.describeCluster(), 2_000, 'kafka');
          return true;
        },
      },
    ];

    // ClickHouse: the sink writes and the API reads on separate clients (one
    // chdb connection runs one operation at a time).
    const target = clickhouseTarget(config.clickhouse);
    const ddl = { database: config.clickhouse.database, ttlDays: config.clickhouse.ttlDays, cluster: config.clickhouse.cluster };
    const openClickHouse = async (): Promise<ClickHouseClient> => {
      const client = createClickHouse(target);
      closers.push(() => client.close());
      return client;
    };
    if (has('audit-sink') || has('query')) {
      const ch = await openClickHouse();
      const report = await migrate(ch, ddl);
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

    // The projector's delivery mode also decides how trust readers read: with
    // transactional output they must skip aborted records; with idempotent
    // output every record is final, so reading uncommitted costs nothing.
    // Parsed only where a projector or a trust view runs, so a sink-only
    // process does not fail on projector settings.
    const pc = has('projector') || has('ingest') || has('ssf') ? configOrThrow('projector', parseProjectorConfig(o.env)) : undefined;
    let projector: Projector | undefined;
    if (has('projector') && pc !== undefined) {
      projector = createProjector({
        kafka,
        config,
        logger: logger.child({ role: 'projector' }),
        groupId: pc.groupId,
        tickIntervalMs: pc.tickIntervalMs,
        fold: pc.fold,
        delivery: pc.delivery,
      });
      await projector.start();
      closers.push(() => projector?.stop() ?? Promise.resolve());
      const p = projector;
      // The projector's counters, read at scrape time.
      const stat = (name: string, help: string, read: (st: ProjectorStats) => number): void => {
        new Gauge({ name: `trustfold_projector_${name}`, help, registers: [registry], collect() { this.set(read(p.stats())); } });
      };
      stat('sessions', 'sessions in the fold', (st) => st.sessions);
      stat('published_states', 'trust states published since start', (st) => st.published);
      stat('batches', 'input batches folded since start', (st) => st.batches);
      stat('dead_lettered', 'input records sent to the dead-letter topic since start', (st) => st.deadLettered);
      stat('recoveries', 'times the in-memory fold was rebuilt from the changelog since start', (st) => st.recoveries);
      stat('replay_skipped', 'input records skipped after a restore because the changelog already covered them', (st) => st.replaySkipped);
      stat('key_mismatches', 'input records whose Kafka key disagreed with their event (dead-lettered, not folded) since start', (st) => st.keyMismatches);
      stat('unpublished_states', 'trust states folded but not yet acknowledged by the session-trust topic (0 at rest)', (st) => st.unpublished);
      stat('publish_lag_ms', 'age of the oldest folded state not yet on the session-trust topic, ms (0 at rest)', (st) => st.publishLagMs);
      readiness.push({ name: 'projector', check: async () => p.readiness() });
    }

    let view: TrustView | undefined;
    if (pc !== undefined) {
      view = await createTrustView({
        kafka,
        topic: config.topics.sessionTrust,
        logger: logger.child({ role: 'trust-view' }),
        readUncommitted: pc.delivery === 'idempotent',
      });
      closers.push(() => view?.close() ?? Promise.resolve());
      const v = view;
      readiness.push({ name: 'trust_view', check: async () => (v.isReady() ? true : 'catching up') });
      new Gauge({
        name: 'trustfold_trust_view_refused_records',
        help: 'session-trust records the trust view refused since start (key not the payload\'s session, impossible version), by reason',
        labelNames: ['reason'],
        registers: [registry],
        collect() {
          for (const [reason, n] of Object.entries(v.refused())) this.set({ reason }, n);
        },
      });
    }

    if (has('audit-sink')) {
      const sink = createAuditSink({
        kafka,
        clickhouse: await openClickHouse(),
        database: config.clickhouse.database,
        cluster: config.clickhouse.cluster,
        topics: config.topics,
        groupId: auditSinkGroupOf(config.kafka.clientId),
        registry,
        log: logger.child({ role: 'audit-sink' }),
      });
      await sink.start();
      closers.push(() => sink.stop());
      readiness.push({ name: 'audit_sink', check: async () => (sink.isRunning() ? true : 'consumer stopped') });
    }

    // The tamper-evident log: its writer is a role of its own (its own consumer
    // group beside the sink's, docs/audit-log.md); the query role serves its proofs.
    const alc = has('audit-log') || has('query') ? configOrThrow('audit log', parseAuditLogConfig(o.env)) : undefined;
    const signer = alc !== undefined && has('audit-log') ? loadSigner({ signingKey: alc.signingKey, keyName: alc.keyName, dataDir: config.dataDir }).signer : undefined;
    if (alc !== undefined) await createAuditLogStore(await openClickHouse(), config.clickhouse.database).ensureTables();
    if (alc !== undefined && signer !== undefined) {
      await ensureCheckpointTopic(admin, alc.checkpointTopic, config.kafka.replication);
      const writer = createAuditLogWriter({
        kafka,
        store: createAuditLogStore(await openClickHouse(), config.clickhouse.database),
        topics: config.topics,
        groupId: alc.groupId,
        signer,
        originPrefix: alc.originPrefix,
        checkpointTopic: alc.checkpointTopic,
        checkpointIntervalMs: alc.checkpointIntervalMs,
        log: logger.child({ role: 'audit-log' }),
      });
      await writer.start();
      closers.push(() => writer.stop());
      readiness.push({ name: 'audit_log', check: async () => (writer.isRunning() ? true : 'consumer stopped') });
    }

    if (has('cerbos-adapter')) {
      const cerbos = createCerbosAuditConsumer({
        kafka,
        topics: config.topics,
        cerbos: adapters.cerbos,
        registry,
        logger: logger.child({ role: 'cerbos-adapter' }),
        produceTimeoutMs: config.http.produceTimeoutMs,
        eventTime: config.eventTime,
      });
      await cerbos.start();
      closers.push(() => cerbos.stop());
      readiness.push({ name: 'cerbos_adapter', check: async () => (cerbos.isRunning() ? true : 'consumer stopped') });
    }

    const app = await buildBaseApp({
      auth: auth.authenticator,
      registry,
      logger: logger.child({ role: 'http' }),
      readiness,
      bodyLimit: config.http.maxBodyBytes,
      metricsToken: config.http.metricsToken,
    });
    closers.push(() => app.close());

    if (has('ingest')) {
      const sink = createKafkaSink({ kafka, timeoutMs: config.http.produceTimeoutMs, producers: config.http.ingestProducers });
      closers.push(() => sink.close());
      const p = projector;
      const v = view;
      // The freezes of a tenant from the projected state: the in-process fold
      // when the projector runs here, else the trust states on the compacted
      // topic (a freeze shows there once it matches a live session).
      const activeFreezes = async (tenant: string): Promise<ActiveFreeze[]> => {
        if (p !== undefined) return p.activeFreezes(tenant);
        const byId = new Map<string, ActiveFreeze>();
        for (const s of v?.all() ?? []) if (s.tenant_id === tenant) for (const f of s.freezes) byId.set(f.freeze_id, f);
        return [...byId.values()];
      };
      readiness.push(kafkaReadiness(sink));
      await app.register(ingestRoutes({ sink, topics: config.topics, registry, activeFreezes, limits: config.http, eventTime: config.eventTime, recentIdCapacity: config.http.recentIdCapacity }));
      const writer = createDecisionWriter({ kafka, topic: config.topics.decisions, timeoutMs: config.http.produceTimeoutMs });
      closers.push(() => writer.close());
      await app.register(opaRoutes({ writer, opa: adapters.opa, registry, eventTime: config.eventTime }));
    }
    if (view !== undefined && has('projector')) {
      await app.register(trustRoutes({ view, maxStreams: config.http.maxStreams, maxStreamsPerSubject: config.http.maxStreamsPerSubject }));
    }
    if (has('query')) {
      await app.register(auditRoutes({ clickhouse: await openClickHouse(), database: config.clickhouse.database }));
      if (alc !== undefined) {
        const client = await openClickHouse();
        const store = createAuditLogStore(client, config.clickhouse.database);
        const { keys, verifiers } = knownVerifierKeys({ signingKey: alc.signingKey, keyName: alc.keyName, dataDir: config.dataDir, extra: alc.verifierKeys, ...(signer !== undefined ? { signer } : {}) });
        const verifier = createVerifier({ client, database: config.clickhouse.database, store, verifiers, originPrefix: alc.originPrefix });
        await app.register(auditLogRoutes({ store, reader: createRecordReader(client, config.clickhouse.database), verify: verifier.verify, verifierKeys: keys }));
      }
    }
    if (has('ssf') && pc !== undefined) {
      const ssf = configOrThrow('ssf', parseSsfConfig(o.env));
      const sink = createKafkaSink({ kafka, timeoutMs: config.http.produceTimeoutMs });
      closers.push(() => sink.close());
      const v = view;
      const role = await startSsfRole({
        app,
        kafka,
        config,
        ssf,
        defaultIssuer: `http://${config.http.host}:${config.http.port}`,
        sink,
        registry,
        readUncommitted: pc.delivery === 'idempotent',
        sessionsOfUser: (tenant, user) => [...(v?.all() ?? [])].filter((s) => s.tenant_id === tenant && s.delegator === user && !s.ended).map((s) => s.session_id),
        logger: logger.child({ role: 'ssf' }),
      });
      closers.push(() => role.close());
    }
    if (has('detect')) {
      const detectSink = createKafkaSink({ kafka, timeoutMs: config.http.produceTimeoutMs });
      closers.push(() => detectSink.close());
      const detect = createDetectRole({
        kafka,
        topics: config.topics,
        config: configOrThrow('detect', parseDetectConfig(o.env)),
        sink: detectSink,
        registry,
        logger: logger.child({ role: 'detect' }),
        eventTime: config.eventTime,
      });
      await detect.start();
      closers.push(() => detect.stop());
      readiness.push({ name: 'detect', check: async () => (detect.isRunning() ? true : 'consumer stopped') });
    }
    // The responder's and SOC's page: static, it reads the routes above with the signed-in token.
    await app.register(consoleRoutes());

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
