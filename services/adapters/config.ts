// The adapters' own settings, parsed once from the environment object the
// caller passes in (services/lib/config.ts owns the shared ones). Every bad
// variable is named in the error.
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';
import { LIMITS } from '../../schemas/events.ts';
import { err, ok, type FieldError, type Result } from '../../schemas/result.ts';
import { valueOrThrow } from '../lib/config.ts';
import {
  DEFAULT_CERBOS_CONVENTION,
  DEFAULT_OPA_CONVENTION,
  type CerbosConvention,
  type OpaConvention,
} from './mapping.ts';

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);
const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .transform((s) => s === 'true' || s === '1')
    .default(def);

const paths = z.array(z.string().min(1).max(256).regex(/^[^.\s]+(\.[^.\s]+)*$/, 'a dot-separated path')).min(1).max(16);

const overrides = <K extends string>(keys: readonly K[]) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(z.strictObject(Object.fromEntries(keys.map((k) => [k, paths.optional()])) as Record<K, z.ZodOptional<typeof paths>>));

const cerbosKeys = Object.keys(DEFAULT_CERBOS_CONVENTION) as (keyof CerbosConvention)[];
const opaKeys = Object.keys(DEFAULT_OPA_CONVENTION) as (keyof OpaConvention)[];

const envSchema = z.object({
  TRUSTFOLD_CERBOS_TOPIC: z.string().min(1).default('cerbos.audit.log'),
  TRUSTFOLD_CERBOS_GROUP_ID: z.string().min(1).default('trustfold-cerbos-adapter'),
  TRUSTFOLD_CERBOS_FROM_BEGINNING: bool(true),
  TRUSTFOLD_CERBOS_DEFAULT_TENANT: z.string().min(1).max(LIMITS.id).default('default'),
  TRUSTFOLD_CERBOS_PDP_ID: z.string().min(1).max(LIMITS.id).default('cerbos'),
  TRUSTFOLD_ADAPTER_MAPPING_CERBOS: overrides(cerbosKeys).optional(),
  TRUSTFOLD_OPA_DEFAULT_TENANT: z.string().min(1).max(LIMITS.id).default('default'),
  TRUSTFOLD_OPA_MAX_UPLOAD_BYTES: int(4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  TRUSTFOLD_OPA_MAX_DECOMPRESSED_BYTES: int(32 * 1024 * 1024, 1024, 2 * 1024 * 1024 * 1024),
  TRUSTFOLD_OPA_MAX_EVENTS: int(10_000, 1, 1_000_000),
  TRUSTFOLD_ADAPTER_MAPPING_OPA: overrides(opaKeys).optional(),
});

export type CerbosAdapterConfig = {
  topic: string;
  groupId: string;
  fromBeginning: boolean;
  defaultTenant: string;
  pdpId: string;
  convention: CerbosConvention;
};

export type OpaAdapterConfig = {
  defaultTenant: string;
  /** Largest gzip body accepted (413 above). Must exceed OPA's `reporting.upload_size_limit_bytes`. */
  maxUploadBytes: number;
  /** Largest body after gunzip (413 above): a small gzip bomb stays small. */
  maxDecompressedBytes: number;
  maxEvents: number;
  convention: OpaConvention;
};

export type AdapterConfig = { cerbos: CerbosAdapterConfig; opa: OpaAdapterConfig };

const withOverrides = <C extends Record<string, readonly string[]>>(defaults: C, o: Partial<Record<keyof C, readonly string[] | undefined>> | undefined): C => {
  const out: Record<string, readonly string[]> = { ...defaults };
  for (const [k, v] of Object.entries(o ?? {})) if (v !== undefined) out[k] = v;
  return out as C;
};

export const parseAdapterConfig = (env: Record<string, string | undefined>): Result<AdapterConfig, FieldError[]> => {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) return err(zodIssues(r.error));
  const e = r.data;
  if (e.TRUSTFOLD_OPA_MAX_DECOMPRESSED_BYTES < e.TRUSTFOLD_OPA_MAX_UPLOAD_BYTES) {
    return err([{ path: 'TRUSTFOLD_OPA_MAX_DECOMPRESSED_BYTES', message: 'must be at least TRUSTFOLD_OPA_MAX_UPLOAD_BYTES' }]);
  }
  return ok({
    cerbos: {
      topic: e.TRUSTFOLD_CERBOS_TOPIC,
      groupId: e.TRUSTFOLD_CERBOS_GROUP_ID,
      fromBeginning: e.TRUSTFOLD_CERBOS_FROM_BEGINNING,
      defaultTenant: e.TRUSTFOLD_CERBOS_DEFAULT_TENANT,
      pdpId: e.TRUSTFOLD_CERBOS_PDP_ID,
      convention: withOverrides(DEFAULT_CERBOS_CONVENTION, e.TRUSTFOLD_ADAPTER_MAPPING_CERBOS),
    },
    opa: {
      defaultTenant: e.TRUSTFOLD_OPA_DEFAULT_TENANT,
      maxUploadBytes: e.TRUSTFOLD_OPA_MAX_UPLOAD_BYTES,
      maxDecompressedBytes: e.TRUSTFOLD_OPA_MAX_DECOMPRESSED_BYTES,
      maxEvents: e.TRUSTFOLD_OPA_MAX_EVENTS,
      convention: withOverrides(DEFAULT_OPA_CONVENTION, e.TRUSTFOLD_ADAPTER_MAPPING_OPA),
    },
  });
};

/** Tests and embedding: the defaults with the given overrides, or a thrown error naming every bad variable. */
export const adapterConfigFrom = (env: Record<string, string | undefined>): AdapterConfig => {
  return valueOrThrow('adapter config', parseAdapterConfig(env));
};
