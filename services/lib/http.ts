// The HTTP shell every role shares: fastify with zod validation, one error
// body shape, bearer auth with scopes, health, readiness, metrics and docs,
// standard security headers. Built without listening (tests use
// app.inject()); services/main.ts listens.
import { timingSafeEqual } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import type { FieldError } from '../../schemas/result.ts';
import { isErrorCode, type ErrorCode } from './errors.ts';
import type { Authenticator, Caller, Scope } from './auth.ts';
import type { Logger } from './log.ts';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
}

export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, ZodTypeProvider>;
export type ErrorBody = { error: { code: ErrorCode; message: string; errors?: FieldError[] } };

export const errorBody = (code: ErrorCode, message: string, errors?: FieldError[]): ErrorBody => ({
  error: errors === undefined ? { code, message } : { code, message, errors },
});

export const sendError = (
  reply: FastifyReply,
  status: number,
  code: ErrorCode,
  message: string,
  errors?: FieldError[],
): FastifyReply => reply.code(status).type('application/json').send(errorBody(code, message, errors));

/** The error body every refusal carries (sendError): a code, a message, and the fields at fault when there are any. */
export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), errors: z.array(z.object({ path: z.string(), message: z.string() })).optional() }),
});

/**
 * The answers every documented route can give besides its own, so the OpenAPI
 * document lists them all: a route's own declaration of a status (with its
 * specific description) wins over these.
 */
const commonResponses = (guarded: boolean, hasBody: boolean): Record<string, z.ZodType> => ({
  400: errorBodySchema.describe('bad_request: a parameter, the URL or the body is invalid; each field at fault is named in errors'),
  ...(guarded
    ? {
        401: errorBodySchema.describe('unauthorized: no valid bearer token'),
        403: errorBodySchema.describe('forbidden: a scope the route needs is missing, or another tenant is named'),
      }
    : {}),
  ...(hasBody
    ? {
        413: errorBodySchema.describe('payload_too_large: the body is over TRUSTFOLD_MAX_BODY_BYTES'),
        415: errorBodySchema.describe('unsupported_media_type: a Content-Type the route does not read'),
      }
    : {}),
  // Answered by Node's HTTP parser before any route runs, in its own shape.
  431: z.object({ error: z.string(), message: z.string(), statusCode: z.number() }).describe('request headers or URL over the server limit'),
  503: errorBodySchema.describe('the server is shutting down, or a dependency (Kafka, ClickHouse) is unavailable'),
});

/** A dependency /readyz asks; it answers true, or a reason it is not ready. */
export type ReadinessCheck = { name: string; check: () => Promise<true | string> };

export type BaseAppDeps = {
  auth: Authenticator;
  registry: Registry;
  logger?: Logger | boolean;
  readiness?: ReadinessCheck[];
  bodyLimit?: number;
  version?: string;
  /** Base URL shown in the OpenAPI document. */
  publicUrl?: string;
  /** When set, /metrics answers only `Authorization: Bearer <this>` (config.http.metricsToken). */
  metricsToken?: string | undefined;
};

export const AUTH_DECORATION = Symbol.for('trustfold.auth');

/** The caller, set by requireScope. Routes behind requireScope can rely on it. */
export const callerOf = (req: FastifyRequest): Caller => {
  if (req.caller === undefined) throw new Error(`route ${req.routeOptions.url ?? req.url} is not behind requireScope`);
  return req.caller;
};

const authenticatorOf = (req: FastifyRequest): Authenticator =>
  (req.server as FastifyInstance & { [AUTH_DECORATION]: Authenticator })[AUTH_DECORATION];

/**
 * A hook (use it as `onRequest`, so no body is read or parsed for a caller
 * without a token): 401 without a valid token, 403 without any of the
 * scopes; sets `request.caller`.
 */
export const requireAnyScope =
  (scopes: readonly Scope[]) =>
  async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const r = await authenticatorOf(req).verify(req.headers.authorization);
    if (!r.ok) {
      reply.header('www-authenticate', 'Bearer realm="trustfold"');
      await sendError(reply, 401, r.error.code, r.error.message);
      return reply;
    }
    if (!scopes.some((s) => r.value.scopes.has(s))) {
      await sendError(reply, 403, 'forbidden', `token lacks scope ${scopes.join(' or ')}`);
      return reply;
    }
    req.caller = r.value;
  };

/** requireAnyScope of one scope. */
export const requireScope = (scope: Scope) => requireAnyScope([scope]);

/** Constant-time comparison of a bearer header with the metrics token. */
const bearerMatches = (authorization: string | undefined, token: string): boolean => {
  const given = Buffer.from(/^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1] ?? '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
};

/** On every answer but /docs (which sets its own CSP for swagger-ui's assets). */
const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

/**
 * The code of a refusal raised by the framework or a plugin with a status and
 * a code of its own (FST_ERR_…): ours, by status, so every error body speaks
 * the one vocabulary (errors.ts).
 */
export const codeOfStatus = (status: number): ErrorCode => {
  switch (status) {
    case 401: return 'unauthorized';
    case 403: return 'forbidden';
    case 404: return 'not_found';
    case 405: return 'method_not_allowed';
    case 413: return 'payload_too_large';
    case 415: return 'unsupported_media_type';
    case 429: return 'too_many_requests';
    case 503: return 'not_ready';
    default: return status >= 500 ? 'internal' : 'bad_request';
  }
};

/** A fastify route path (`/v1/sessions/:id/trust`, `/console/*`) as a pattern over request paths. */
export const pathPattern = (url: string): RegExp => {
  const segments = url.split('/').map((seg) => {
    if (seg === '*') return '.*';
    if (seg.startsWith(':')) return '[^/]+';
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  return new RegExp(`^${segments.join('/')}/?$`);
};

const zodErrors = (e: FastifyError): FieldError[] => {
  if (!hasZodFastifySchemaValidationErrors(e)) return [];
  const where = e.validationContext ?? '';
  return e.validation.map((v) => {
    const path = v.instancePath.replace(/^\//, '').split('/').filter((p) => p !== '');
    const joined = path.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('');
    const field = `${where}${joined}`.replace(/^\./, '');
    return { path: field === '' ? '(root)' : field, message: v.message ?? 'invalid' };
  });
};

export const buildBaseApp = async (deps: BaseAppDeps): Promise<App> => {
  const app = Fastify({
    ...(typeof deps.logger === 'object'
      ? { loggerInstance: deps.logger as FastifyBaseLogger }
      : { logger: deps.logger ?? false }),
    bodyLimit: deps.bodyLimit ?? 16 * 1024 * 1024,
    // Hostile input: no prototype pollution through JSON bodies.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { maxParamLength: 512 },
    return503OnClosing: true,
    // Errors raised before routing (a URL that does not decode, a failed
    // constraint) get the same JSON error body as everything else.
    frameworkErrors: (e, _req, reply) => {
      const where = e.code === 'FST_ERR_BAD_URL' ? 'url' : '(request)';
      void sendError(reply, 400, 'bad_request', e.message, [{ path: where, message: e.message }]);
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  // Response schemas document the API (/docs); they are not re-validated on
  // the way out: the contract's timestamps are one-way transforms, which the
  // zod provider's encode-based serializer cannot run backwards.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.decorate(AUTH_DECORATION, deps.auth);
  // Documentation only (the serializer above does not validate): every route
  // registered after this lists the refusals it can give.
  // Every route's path and methods, so a known path asked with another method
  // answers 405 with `Allow` (RFC 9110 §15.5.6), not 404.
  const known: { path: RegExp; methods: Set<string> }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    known.push({ path: pathPattern(route.url), methods: new Set(methods.map((m) => m.toUpperCase())) });
  });
  app.addHook('onRoute', (route) => {
    const schema = route.schema;
    if (schema === undefined || schema.hide === true) return;
    const declared = (schema.response ?? {}) as Record<string, unknown>;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const hasBody = methods.some((m) => m === 'POST' || m === 'PUT' || m === 'PATCH');
    const success = Object.keys(declared).some((k) => /^(2|3|default)/.test(k)) ? {} : { '2xx': z.unknown().describe('success') };
    route.schema = { ...schema, response: { ...success, ...commonResponses(route.onRequest !== undefined, hasBody), ...declared } };
  });

  const duration = new Histogram({
    name: 'trustfold_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [deps.registry],
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) if (!reply.hasHeader(name)) reply.header(name, value);
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    duration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  /** No route for this method and path: 405 with `Allow` when the path is served with other methods, else 404. */
  const noRoute = (req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = new Set<string>();
    for (const k of known) if (k.path.test(path)) for (const m of k.methods) allowed.add(m);
    if (allowed.size > 0 && !allowed.has(req.method)) {
      const list = [...allowed].sort().join(', ');
      void reply.header('allow', list);
      return sendError(reply, 405, 'method_not_allowed', `${req.method} is not allowed on ${path} (allowed: ${list})`);
    }
    return sendError(reply, 404, 'not_found', `no route ${req.method} ${path}`);
  };

  app.setErrorHandler((e: FastifyError, req, reply) => {
    // A request no route serves failed before the 404 handler ran (QUERY, a body
    // method, without Content-Type): it still answers as having no route.
    if (req.is404) return noRoute(req, reply);
    if (hasZodFastifySchemaValidationErrors(e)) {
      const errors = zodErrors(e);
      return sendError(reply, 400, 'bad_request', `invalid ${e.validationContext ?? 'request'}: ${errors.map((x) => `${x.path}: ${x.message}`).join('; ')}`, errors);
    }
    switch (e.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendError(reply, 413, 'payload_too_large', `body larger than ${deps.bodyLimit ?? 16 * 1024 * 1024} bytes`);
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendError(reply, 415, 'unsupported_media_type', e.message);
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return sendError(reply, 400, 'bad_request', e.message, [{ path: '(body)', message: e.message }]);
      default:
        break;
    }
    if (e instanceof SyntaxError) return sendError(reply, 400, 'bad_request', `malformed JSON: ${e.message}`, [{ path: '(body)', message: e.message }]);
    const status = e.statusCode ?? 500;
    if (status < 500) return sendError(reply, status, isErrorCode(e.code) ? e.code : codeOfStatus(status), e.message, status === 400 ? [{ path: '(request)', message: e.message }] : undefined);
    req.log.error({ err: e }, 'request failed');
    return sendError(reply, status, 'internal', `internal error (request ${req.id})`);
  });
  app.setNotFoundHandler((req, reply) => noRoute(req, reply));

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'trustfold', description: 'Event-sourced audit and session trust for AI agents', version: deps.version ?? '0.1.0' },
      servers: deps.publicUrl !== undefined ? [{ url: deps.publicUrl }] : [],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
    // Named zod schemas (`.meta({ id })`, needed for a recursive one such as a JSON value)
    // are listed under components.schemas, where the routes' `$ref`s to them point.
    transformObject: jsonSchemaTransformObject,
  });
  // swagger-ui's own CSP (hashes of its inline script and style), minus
  // upgrade-insecure-requests, which would break /docs on a plain-HTTP localhost.
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ''),
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (req, reply) => {
    const checks: Record<string, string> = {};
    let ready = true;
    await Promise.all(
      (deps.readiness ?? []).map(async (c) => {
        let r: true | string;
        try {
          r = await c.check();
        } catch (e) {
          // An exception's text (addresses, hosts, stack) is for the log, not for whoever asks /readyz.
          req.log.warn({ check: c.name, err: e instanceof Error ? e.message : String(e) }, 'readiness check failed');
          r = 'check failed (see the server log)';
        }
        checks[c.name] = r === true ? 'ok' : r;
        if (r !== true) ready = false;
      }),
    );
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
  });
  const metricsToken = deps.metricsToken;
  app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
    if (metricsToken !== undefined && !bearerMatches(req.headers.authorization, metricsToken)) {
      reply.header('www-authenticate', 'Bearer realm="trustfold-metrics"');
      return sendError(reply, 401, 'unauthorized', 'metrics need Authorization: Bearer <TRUSTFOLD_METRICS_TOKEN>');
    }
    return reply.type(deps.registry.contentType).send(await deps.registry.metrics());
  });
  return app;
};
