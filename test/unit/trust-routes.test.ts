// The trust HTTP routes over an in-memory view: tenancy, 404s, and the SSE
// stream's filters, heartbeats and Last-Event-ID resume.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { SessionTrust } from '../../schemas/events.ts';
import { createAuthenticator, mintToken } from '../../services/lib/auth.ts';
import { buildBaseApp, type App } from '../../services/lib/http.ts';
import type { TrustLookup } from '../../services/pdp-client/trust-view.ts';
import { createTrustHub } from '../../services/trust-api/hub.ts';
import { trustRoutes, type TrustSource } from '../../services/trust-api/routes.ts';
import { openSse, type SseFrame } from '../helpers/sse.ts';

const SECRET = 'x'.repeat(40);

const state = (session: string, version: number, over: Partial<SessionTrust> = {}): SessionTrust => ({
  session_id: session,
  tenant_id: 'acme',
  version,
  tier: 'trusted',
  delegator: 'U-442',
  causes: [],
  revoked_roles: [],
  consent_revoked: false,
  freezes: [],
  ended: false,
  updated_at: '2026-06-09T14:00:00.000Z',
  caused_by: '01976d2a-0000-7000-8000-000000000001',
  ...over,
});

const fakeView = () => {
  const m = new Map<string, SessionTrust>();
  const listeners = new Set<(s: SessionTrust) => void>();
  const view: TrustSource & { put(s: SessionTrust): void } = {
    isReady: () => true,
    get: (id, tenant): TrustLookup => {
      const s = m.get(`${tenant}/${id}`);
      return s === undefined ? { known: false, reason: 'unknown_session', stalenessMs: 3 } : { known: true, state: s, version: s.version, stalenessMs: 3, receivedAt: 0 };
    },
    find: (id) => [...m.values()].filter((s) => s.session_id === id),
    all: () => m.values(),
    onChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    put: (s) => {
      m.set(`${s.tenant_id}/${s.session_id}`, s);
      for (const l of listeners) l(s);
    },
  };
  return view;
};

let app: App;
let base: string;
const view = fakeView();
const hub = createTrustHub(4, 'e1');
const tokens: Record<string, string> = {};

before(async () => {
  view.onChange((s) => hub.publish(s));
  app = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
  await app.register(trustRoutes({ view, hub, heartbeatMs: 50 }));
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  tokens['acme'] = await mintToken({ sub: 'pdp-1', tenant: 'acme', scopes: ['trust:read'] }, SECRET);
  tokens['globex'] = await mintToken({ sub: 'pdp-2', tenant: 'globex', scopes: ['trust:read'] }, SECRET);
  tokens['op'] = await mintToken({ sub: 'soc', tenant: '*', scopes: ['trust:read', 'tenants:all'] }, SECRET);
  tokens['noscope'] = await mintToken({ sub: 'x', tenant: 'acme', scopes: ['events:write'] }, SECRET);
  view.put(state('S-1', 1));
  view.put(state('S-1', 1, { tenant_id: 'globex', delegator: 'U-g' }));
});
after(async () => {
  await app.close();
});

const auth = (who: string): Record<string, string> => ({ authorization: `Bearer ${tokens[who] ?? ''}` });

describe('GET /v1/sessions/:id/trust', () => {
  test('returns the caller tenant\'s state with its version as ETag', async () => {
    const r = await app.inject({ url: '/v1/sessions/S-1/trust', headers: auth('acme') });
    assert.equal(r.statusCode, 200);
    assert.equal(r.json<SessionTrust>().tenant_id, 'acme');
    assert.equal(r.headers['etag'], '"1"');
    assert.equal(r.headers['x-trustfold-staleness-ms'], '3');
  });
  test('404 for an unknown session', async () => {
    const r = await app.inject({ url: '/v1/sessions/S-nope/trust', headers: auth('acme') });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'not_found');
  });
  test('a tenant cannot ask for another tenant', async () => {
    const r = await app.inject({ url: '/v1/sessions/S-1/trust?tenant=globex', headers: auth('acme') });
    assert.equal(r.statusCode, 403);
  });
  test('an operator must name the tenant when the id exists in several', async () => {
    assert.equal((await app.inject({ url: '/v1/sessions/S-1/trust', headers: auth('op') })).statusCode, 400);
    const r = await app.inject({ url: '/v1/sessions/S-1/trust?tenant=globex', headers: auth('op') });
    assert.equal(r.statusCode, 200);
    assert.equal(r.json<SessionTrust>().delegator, 'U-g');
  });
  test('401 without a token, 403 without trust:read', async () => {
    assert.equal((await app.inject({ url: '/v1/sessions/S-1/trust' })).statusCode, 401);
    assert.equal((await app.inject({ url: '/v1/sessions/S-1/trust', headers: auth('noscope') })).statusCode, 403);
  });
});

describe('GET /v1/trust/stream', () => {
  const trustFrames = (fs: SseFrame[]): SessionTrust[] => fs.filter((f) => f.event === 'trust').map((f) => JSON.parse(f.data ?? '{}') as SessionTrust);

  test('delivers matching changes only, with heartbeats, and resumes with Last-Event-ID', async () => {
    const c1 = await openSse(`${base}/v1/trust/stream?session=S-2&snapshot=false`, auth('acme'));
    assert.equal(c1.status, 200);
    view.put(state('S-3', 1)); // other session
    view.put(state('S-2', 1, { tenant_id: 'globex' })); // other tenant
    view.put(state('S-2', 1));
    await c1.until((fs) => trustFrames(fs).length === 1);
    await c1.until((fs) => fs.some((f) => f.comment?.startsWith('heartbeat') === true));
    const [first] = trustFrames(c1.frames);
    assert.deepEqual([first?.session_id, first?.tenant_id, first?.version], ['S-2', 'acme', 1]);
    const lastId = c1.frames.filter((f) => f.event === 'trust').at(-1)?.id ?? '';
    assert.match(lastId, /^e1-\d+$/);
    c1.close();

    view.put(state('S-2', 2, { tier: 'degraded' })); // missed while disconnected
    const c2 = await openSse(`${base}/v1/trust/stream?session=S-2`, { ...auth('acme'), 'last-event-id': lastId });
    await c2.until((fs) => trustFrames(fs).length >= 1);
    view.put(state('S-2', 3, { tier: 'restricted' }));
    await c2.until((fs) => trustFrames(fs).length >= 2);
    assert.deepEqual(trustFrames(c2.frames).map((s) => s.version), [2, 3]);
    c2.close();
  });

  test('a Last-Event-ID that fell out of the ring gets a snapshot of current states', async () => {
    for (let v = 4; v < 12; v++) view.put(state('S-2', v)); // ring holds 4
    const c = await openSse(`${base}/v1/trust/stream?session=S-2`, { ...auth('acme'), 'last-event-id': 'e1-1' });
    await c.until((fs) => trustFrames(fs).length >= 1);
    assert.deepEqual(trustFrames(c.frames).map((s) => s.version), [11]);
    c.close();
  });

  test('filter by delegator, snapshot first', async () => {
    const c = await openSse(`${base}/v1/trust/stream?delegator=U-g`, auth('op'));
    await c.until((fs) => trustFrames(fs).length >= 1);
    assert.deepEqual(trustFrames(c.frames).map((s) => [s.tenant_id, s.session_id]), [['globex', 'S-1']]);
    c.close();
  });

  test('a tenant token never streams another tenant', async () => {
    const c = await openSse(`${base}/v1/trust/stream?snapshot=true`, auth('globex'));
    await c.until((fs) => trustFrames(fs).length >= 2);
    assert.ok(trustFrames(c.frames).every((s) => s.tenant_id === 'globex'));
    c.close();
    const denied = await openSse(`${base}/v1/trust/stream?tenant=acme`, auth('globex'));
    assert.equal(denied.status, 403);
  });
});

describe('GET /v1/trust/stream: bounded', () => {
  const withApp = async (deps: Partial<Parameters<typeof trustRoutes>[0]>, run: (base: string) => Promise<void>, source: TrustSource = fakeView()) => {
    const a = await buildBaseApp({ auth: createAuthenticator({ secret: SECRET }), registry: new Registry() });
    await a.register(trustRoutes({ view: source, heartbeatMs: 60_000, ...deps }));
    const url = await a.listen({ port: 0, host: '127.0.0.1' });
    try {
      await run(url);
    } finally {
      await a.close();
    }
  };
  const bearer = async (sub: string, ttlSeconds = 600) => ({ authorization: `Bearer ${await mintToken({ sub, tenant: 'acme', scopes: ['trust:read'], ttlSeconds }, SECRET)}` });

  test('a stream ends with event: token_expired when its token expires', async () => {
    const headers = await bearer('pdp-exp', 60);
    // The clock the route measures with is 59.9 s ahead: the token has 100 ms left.
    await withApp({ now: () => Date.now() + 59_900 }, async (url) => {
      const c = await openSse(`${url}/v1/trust/stream?snapshot=false`, headers);
      assert.equal(c.status, 200);
      await c.until((fs) => fs.some((f) => f.event === 'token_expired'));
      c.close();
    });
  });

  test('429 beyond the per-subject cap and beyond the global cap; a closed stream frees its slot', async () => {
    await withApp({ maxStreams: 2, maxStreamsPerSubject: 1 }, async (url) => {
      const a1 = await openSse(`${url}/v1/trust/stream?snapshot=false`, await bearer('pdp-a'));
      assert.equal(a1.status, 200);
      const a2 = await openSse(`${url}/v1/trust/stream?snapshot=false`, await bearer('pdp-a'));
      assert.equal(a2.status, 429);
      const b1 = await openSse(`${url}/v1/trust/stream?snapshot=false`, await bearer('pdp-b'));
      assert.equal(b1.status, 200);
      const c1 = await openSse(`${url}/v1/trust/stream?snapshot=false`, await bearer('pdp-c'));
      assert.equal(c1.status, 429);
      a1.close();
      // The server learns of the close asynchronously: ask until the slot is free (bounded).
      let again = 429;
      for (let i = 0; i < 100 && again === 429; i++) {
        const r = await openSse(`${url}/v1/trust/stream?snapshot=false`, await bearer('pdp-a'));
        again = r.status;
        r.close();
        if (again === 429) await new Promise((res) => setTimeout(res, 20));
      }
      assert.equal(again, 200);
      b1.close();
    });
  });

  test("a new stream's snapshot reads the caller's tenant only, never every tenant's states", async () => {
    const inner = fakeView();
    inner.put(state('S-1', 1));
    inner.put(state('S-1', 1, { tenant_id: 'globex', delegator: 'U-442' }));
    let walkedAll = 0;
    const source: TrustSource = {
      ...inner,
      all: () => {
        walkedAll++;
        return inner.all();
      },
      ofTenant: (t) => [...inner.all()].filter((s) => s.tenant_id === t),
    };
    await withApp({}, async (url) => {
      const headers = await bearer('pdp-snap');
      for (const q of ['session=S-1', 'delegator=U-442']) {
        const c = await openSse(`${url}/v1/trust/stream?${q}`, headers);
        await c.until((fs) => fs.some((f) => f.event === 'trust'));
        const states = c.frames.filter((f) => f.event === 'trust').map((f) => JSON.parse(f.data ?? '{}') as SessionTrust);
        assert.deepEqual(states.map((x) => x.tenant_id), ['acme'], q);
        c.close();
      }
    }, source);
    assert.equal(walkedAll, 0);
  });
});
