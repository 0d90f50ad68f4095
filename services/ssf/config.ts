// The SSF role's settings, parsed once from the environment it is given.
import { z } from 'zod';
import { zodIssues } from '../../schemas/codec.ts';
import { err, ok, type FieldError, type Result } from '../../schemas/result.ts';
import { upstreamSchema, type Upstream } from './receiver.ts';

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);

const flag = z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1').default(false);

const envSchema = z.object({
  TRUSTFOLD_SSF_ISSUER: z.url().optional(),
  TRUSTFOLD_SSF_SIGNING_KEY_FILE: z.string().min(1).optional(),
  TRUSTFOLD_TOPIC_SSF_STREAMS: z.string().min(1).default('trustfold.ssf-streams.v1'),
  TRUSTFOLD_SSF_MIN_VERIFICATION_INTERVAL_S: int(30, 0, 86_400),
  TRUSTFOLD_SSF_INACTIVITY_TIMEOUT_S: int(86_400, 0, 365 * 86_400),
  TRUSTFOLD_SSF_INACTIVITY_ACTION: z.enum(['pause', 'disable']).default('pause'),
  TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS: flag,
  TRUSTFOLD_SSF_PUSH_TIMEOUT_MS: int(10_000, 100, 120_000),
  TRUSTFOLD_SSF_RETRY_BASE_MS: int(250, 10, 60_000),
  TRUSTFOLD_SSF_RETRY_MAX_MS: int(30_000, 10, 3_600_000),
  TRUSTFOLD_SSF_RECEIVERS: z.string().optional(),
});

export type SsfConfig = {
  /** Base URL of the issuer; default the listener's own URL. */
  issuer: string | undefined;
  /** A configured private JWK file (must exist), or undefined for a generated one in the data dir. */
  signingKeyFile: string | undefined;
  streamsTopic: string;
  minVerificationIntervalS: number;
  /** 0: none (not shown, not enforced). */
  inactivityTimeoutS: number;
  /** What an inactive stream becomes (SSF 1.0 §8.1.1: pause, disable or delete; trustfold pauses or disables). */
  inactivityAction: 'pause' | 'disable';
  /** Push to http:// and to loopback/private/link-local addresses (local development and tests only). */
  allowPrivateEndpoints: boolean;
  pushTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  upstreams: Upstream[];
};

export const parseSsfConfig = (env: Record<string, string | undefined>): Result<SsfConfig, FieldError[]> => {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) return err(zodIssues(r.error));
  const e = r.data;
  let upstreams: Upstream[] = [];
  if (e.TRUSTFOLD_SSF_RECEIVERS !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(e.TRUSTFOLD_SSF_RECEIVERS);
    } catch (x) {
      return err([{ path: 'TRUSTFOLD_SSF_RECEIVERS', message: `not JSON: ${(x as Error).message}` }]);
    }
    const u = z.array(upstreamSchema).max(100).safeParse(raw);
    if (!u.success) return err(zodIssues(u.error).map((i) => ({ path: `TRUSTFOLD_SSF_RECEIVERS${i.path === '' || i.path.startsWith('[') ? i.path : `.${i.path}`}`, message: i.message })));
    const missingKeys = u.data.findIndex((x) => x.jwks === undefined && x.jwks_url === undefined);
    if (missingKeys >= 0) return err([{ path: `TRUSTFOLD_SSF_RECEIVERS[${missingKeys}]`, message: 'needs jwks_url or jwks' }]);
    upstreams = u.data;
  }
  return ok({
    issuer: e.TRUSTFOLD_SSF_ISSUER?.replace(/\/+$/, ''),
    signingKeyFile: e.TRUSTFOLD_SSF_SIGNING_KEY_FILE,
    streamsTopic: e.TRUSTFOLD_TOPIC_SSF_STREAMS,
    minVerificationIntervalS: e.TRUSTFOLD_SSF_MIN_VERIFICATION_INTERVAL_S,
    inactivityTimeoutS: e.TRUSTFOLD_SSF_INACTIVITY_TIMEOUT_S,
    inactivityAction: e.TRUSTFOLD_SSF_INACTIVITY_ACTION,
    allowPrivateEndpoints: e.TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS,
    pushTimeoutMs: e.TRUSTFOLD_SSF_PUSH_TIMEOUT_MS,
    retryBaseMs: e.TRUSTFOLD_SSF_RETRY_BASE_MS,
    retryMaxMs: Math.max(e.TRUSTFOLD_SSF_RETRY_MAX_MS, e.TRUSTFOLD_SSF_RETRY_BASE_MS),
    upstreams,
  });
};
