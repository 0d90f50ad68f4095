// The responder's and SOC's console at /console: a static page and one
// script, bundled in memory from web/ on the first request for it (esbuild;
// no build step, no network, nothing fetched at run time). Not at start: on a
// loaded host the bundling took longer than fastify's plugin timeout and the
// whole process failed to start (seen in the crash scenario under CPU
// pressure); a role never waits for the console. The page reads the same
// APIs a curl user does, with the token the person pastes; the only route of
// its own is whoami, so the page can show who the token is and offer only
// what its scopes allow.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { SCOPES } from '../lib/auth.ts';
import { callerOf, requireAnyScope, sendError } from '../lib/http.ts';
import { SIGN_IN_CODE_PATTERN, signInCodes, type SignInCodes } from './signin.ts';

/** No inline script or style, nothing from elsewhere: the page, its script, its style, and the APIs of this origin. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

type Asset = { type: string; body: Buffer; etag: string };

const web = (file: string): string => fileURLToPath(new URL(`./web/${file}`, import.meta.url));

const asset = (type: string, body: Buffer | string): Asset => {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  return { type, body: b, etag: `"${createHash('sha256').update(b).digest('base64url').slice(0, 22)}"` };
};

/** The page's script: web/ui/main.ts and what it imports, as one ES module. */
export const bundleConsole = async (): Promise<string> => {
  const r = await build({
    entryPoints: [web('ui/main.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const out = r.outputFiles[0];
  if (out === undefined) throw new Error('console bundle produced no output');
  return out.text;
};

// One bundle per process, however many apps are built in it (tests build many).
let bundled: Promise<string> | undefined;

/** Each asset read (or bundled) once per process, on its first request. */
const lazyAssets: Map<string, Promise<Asset>> = new Map();
const ASSETS: Record<string, () => Promise<Asset>> = {
  '/console': async () => asset('text/html; charset=utf-8', await readFile(web('index.html'))),
  '/console/app.js': async () => {
    bundled ??= bundleConsole();
    return asset('text/javascript; charset=utf-8', await bundled);
  },
  '/console/console.css': async () => asset('text/css; charset=utf-8', await readFile(web('console.css'))),
  '/console/favicon.svg': async () => asset('image/svg+xml', await readFile(web('favicon.svg'))),
};
const assetAt = (path: string, load: () => Promise<Asset>): Promise<Asset> => {
  let a = lazyAssets.get(path);
  if (a === undefined) {
    a = load();
    // A failed load is not kept: the next request tries again.
    a.catch(() => lazyAssets.delete(path));
    lazyAssets.set(path, a);
  }
  return a;
};

/** The sign-in exchange's body: the code alone; its value is never echoed back or logged. */
export const signInBody = z.strictObject({ code: z.string().regex(SIGN_IN_CODE_PATTERN, 'a sign-in code: 43 base64url characters') });

export type ConsoleRoutesOptions = {
  /** Where the one-time codes of sign-in links are redeemed; the process's own by default (what `trustfold serve` issues into). */
  codes?: SignInCodes;
};

export const consoleRoutes = (o: ConsoleRoutesOptions = {}): FastifyPluginAsync => async (fastify) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const codes = o.codes ?? signInCodes;
  const serve = (path: string, load: () => Promise<Asset>) => async (req: FastifyRequest, reply: FastifyReply) => {
    const a = await assetAt(path, load);
    reply.header('content-security-policy', CONSOLE_CSP).header('cache-control', 'no-cache').header('etag', a.etag);
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.type(a.type).send(a.body);
  };
  for (const [path, load] of Object.entries(ASSETS)) app.get(path, { schema: { hide: true } }, serve(path, load));
  app.get('/console/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console', 301));

  app.get('/console/api/whoami', { onRequest: requireAnyScope(SCOPES), schema: { hide: true } }, async (req) => {
    const c = callerOf(req);
    return { sub: c.sub, tenant: c.tenant, scopes: [...c.scopes].sort(), expires_at: new Date(c.expiresAt).toISOString() };
  });

  // A sign-in link's one-time code → its token. The code comes in the body
  // (a fragment never reaches a server; a query string would reach its log),
  // the token goes back in the body, and neither is cached or logged. Spent
  // on its first use, whatever happens next; a second use or a late one is a
  // 410 that says which.
  app.post('/console/api/sign-in', { schema: { hide: true, body: signInBody } }, async (req, reply) => {
    reply.header('cache-control', 'no-store');
    const r = codes.redeem(req.body.code);
    if (!r.ok) return sendError(reply, r.reason === 'unknown' ? 404 : 410, `sign_in_code_${r.reason}`, r.message, [{ path: 'code', message: r.message }]);
    return { token: r.token };
  });
};
