// The audit log's settings, parsed once from the environment (the shared
// config covers Kafka, ClickHouse and the data dir). Pure.
import { z } from 'zod';
import { err, ok, type Result } from '../../schemas/result.ts';

export type AuditLogConfig = {
  /** Signer key in signed-note form (PRIVATE+KEY+name+id+key); unset: a local key in the data dir. */
  signingKey: string | undefined;
  /** Name of a generated local key. */
  keyName: string;
  /** Checkpoint origins are `<prefix>/<topic>/<partition>`. */
  originPrefix: string;
  checkpointIntervalMs: number;
  checkpointTopic: string;
  groupId: string;
  /** Extra verifier keys (a rotated-out signer, or the signer's key where only the API runs); the signer's own is always known. */
  verifierKeys: string[];
};

const envSchema = z.object({
  TRUSTFOLD_AUDIT_SIGNING_KEY: z.string().startsWith('PRIVATE+KEY+').optional(),
  TRUSTFOLD_AUDIT_KEY_NAME: z.string().regex(/^[^\s+]+$/, 'no spaces or plus signs').default('trustfold-audit'),
  TRUSTFOLD_AUDIT_ORIGIN: z.string().regex(/^[^\s]+$/, 'no spaces').default('trustfold.local/audit'),
  TRUSTFOLD_AUDIT_CHECKPOINT_INTERVAL_MS: z.coerce.number().int().min(100).max(86_400_000).default(10_000),
  TRUSTFOLD_TOPIC_AUDIT_CHECKPOINTS: z.string().min(1).default('trustfold.audit-checkpoints.v1'),
  TRUSTFOLD_AUDIT_VERIFIER_KEYS: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x !== ''))
    .pipe(z.array(z.string().regex(/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/, 'expected <name>+<id>+<key>')))
    .default([]),
  KAFKA_CLIENT_ID: z.string().min(1).default('trustfold'),
});

export const parseAuditLogConfig = (env: Record<string, string | undefined>): Result<AuditLogConfig, { path: string; message: string }[]> => {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) return err(r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
  const e = r.data;
  return ok({
    signingKey: e.TRUSTFOLD_AUDIT_SIGNING_KEY,
    keyName: e.TRUSTFOLD_AUDIT_KEY_NAME,
    originPrefix: e.TRUSTFOLD_AUDIT_ORIGIN,
    checkpointIntervalMs: e.TRUSTFOLD_AUDIT_CHECKPOINT_INTERVAL_MS,
    checkpointTopic: e.TRUSTFOLD_TOPIC_AUDIT_CHECKPOINTS,
    groupId: `${e.KAFKA_CLIENT_ID}-audit-log`,
    verifierKeys: e.TRUSTFOLD_AUDIT_VERIFIER_KEYS,
  });
};
