// The `ssf` role: transmitter (discovery, JWKS, streams, push and poll
// delivery from the session-trust topic) and receiver (pushed SETs from
// configured upstreams → ingest's admission → the signals topic). It reads
// the session-trust topic, writes the signals topic, and keeps its streams on
// a compacted topic of its own; services/system.ts only wires it.
import type { Kafka } from 'kafkajs';
import type { Registry } from 'prom-client';
import { createCodec } from '../../schemas/codec.ts';
import type { Config } from '../lib/config.ts';
import type { App } from '../lib/http.ts';
import { ensureTopics, retryTransient } from '../lib/kafka.ts';
import type { Logger } from '../lib/log.ts';
import type { EventSink } from '../ingest/sink.ts';
import { DEFAULT_TRANSMIT_MAPPING, type TransmitMapping } from './caep.ts';
import type { SsfConfig } from './config.ts';
import { loadOrCreateSigningKey } from './keys.ts';
import { createPushTransport } from './endpoint.ts';
import { createSsfMetrics } from './metrics.ts';
import { createReceiver } from './receiver.ts';
import { ssfRoutes } from './routes.ts';
import { createKafkaStreamStore } from './store.ts';
import { createTransmitter, type TransmitterOptions } from './transmitter.ts';

export type SsfRoleDeps = {
  app: App;
  kafka: Kafka;
  config: Config;
  ssf: SsfConfig;
  /** Where the issuer's URLs point when TRUSTFOLD_SSF_ISSUER is unset. */
  defaultIssuer: string;
  sink: EventSink;
  registry: Registry;
  readUncommitted: boolean;
  /** Which sessions a user has (for CAEP events about a user); the trust view's. */
  sessionsOfUser: (tenant: string, user: string) => string[];
  logger: Logger;
  mapping?: TransmitMapping;
  delivery?: TransmitterOptions['delivery'];
};

export type SsfRole = { issuer: string; close(): Promise<void> };

export const startSsfRole = async (d: SsfRoleDeps): Promise<SsfRole> => {
  const issuer = d.ssf.issuer ?? d.defaultIssuer;
  const key = await loadOrCreateSigningKey(d.ssf.signingKeyFile ?? `${d.config.dataDir}/ssf-signing-key.json`, d.ssf.signingKeyFile !== undefined);
  if (key.created) d.logger.info({ kid: key.signing.kid }, 'generated the SSF signing key');
  if (key.tightened) d.logger.warn('the SSF signing key file was readable by others; its mode is now 0600');
  const admin = d.kafka.admin();
  await retryTransient(() => admin.connect());
  try {
    await ensureTopics(admin, [
      {
        topic: d.ssf.streamsTopic,
        numPartitions: 1,
        replicationFactor: d.config.kafka.replication,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'min.insync.replicas', value: String(d.config.kafka.minInsyncReplicas) },
        ],
      },
    ]);
  } finally {
    await admin.disconnect();
  }
  const store = await createKafkaStreamStore({ kafka: d.kafka, topic: d.ssf.streamsTopic, logger: d.logger });
  const endpointPolicy = { allowPrivate: d.ssf.allowPrivateEndpoints };
  if (endpointPolicy.allowPrivate) d.logger.warn('TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS: push streams may send to http:// and private addresses (local development only)');
  let outstanding = (): number => 0;
  const metrics = createSsfMetrics(d.registry, () => outstanding());
  const transmitter = await createTransmitter({
    kafka: d.kafka,
    store,
    trustTopic: d.config.topics.sessionTrust,
    issuer,
    key: key.signing,
    codec: createCodec(),
    mapping: d.mapping ?? DEFAULT_TRANSMIT_MAPPING,
    readUncommitted: d.readUncommitted,
    groupPrefix: `${d.config.kafka.clientId}-ssf`,
    logger: d.logger,
    metrics,
    inactivityAction: d.ssf.inactivityAction,
    delivery: {
      pushTimeoutMs: d.ssf.pushTimeoutMs,
      retryBaseMs: d.ssf.retryBaseMs,
      retryMaxMs: d.ssf.retryMaxMs,
      transport: createPushTransport(endpointPolicy),
      ...d.delivery,
    },
  });
  outstanding = () => transmitter.outstanding();
  await d.app.register(
    ssfRoutes({ issuer, publicJwk: key.publicJwk, store, transmitter, minVerificationIntervalS: d.ssf.minVerificationIntervalS, inactivityTimeoutS: d.ssf.inactivityTimeoutS, endpointPolicy }),
  );
  const receiver = createReceiver({ upstreams: d.ssf.upstreams, sink: d.sink, topics: d.config.topics, registry: d.registry, sessionsOfUser: d.sessionsOfUser, eventTime: d.config.eventTime, logger: d.logger });
  await d.app.register(receiver.routes);
  receiver.startPolling();
  return {
    issuer,
    close: async () => {
      await receiver.close();
      await transmitter.close();
      await store.close();
    },
  };
};
