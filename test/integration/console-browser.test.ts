// The console in a real browser: Debian's Chromium driven by playwright-core,
// against a real startSystem (Kafka broker, projector, embedded ClickHouse).
// The seed incident is posted through ingest while the page watches: the
// session turns restricted in place, the timeline draws the band and the
// denied delete_file, its story names who and why; a freeze raised and lifted
// from the page reaches the live view; a tenant token sees its tenant only;
// an expired token gets the sign-in prompt. Screenshots go to the folder the
// test prints. Skipped, saying why, when there is no Chromium.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { TrustfoldEventInput } from '../../schemas/events.ts';
import { mintToken, OPERATOR_TENANT, SCOPES } from '../../services/lib/auth.ts';
import { createSseParser } from '../../services/console/web/lib/sse.ts';
import { configFrom } from '../../services/lib/config.ts';
import { createLogger } from '../../services/lib/log.ts';
import { ALL_ROLES, startSystem, type System } from '../helpers/system.ts';
import { getTestKafka, uniqueName, type TestKafka } from '../helpers/kafka.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SECRET = 'console-browser-secret-0123456789-abcdefghij';
const SHOTS = join(process.cwd(), '.scratch', 'console-screenshots');
const skip = existsSync(CHROMIUM) ? false : `no ${CHROMIUM}: npm run chromium:fetch installs Debian's chromium (needs apt-get and root)`;

const chain = [
  { kind: 'human', id: 'U-442' },
  { kind: 'agent', id: 'A-17', version: '3.2', owner: 'team-payments' },
] as const;

const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

describe('console in headless Chromium', { skip, timeout: 600_000 }, () => {
  let kafka: TestKafka;
  let system: System;
  let context: BrowserContext;
  let base = '';
  let operator = '';
  const dirs: string[] = [];
  const errors: string[] = [];

  const post = async (events: TrustfoldEventInput[]): Promise<void> => {
    const res = await fetch(`${base}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' }, body: JSON.stringify(events) });
    assert.equal(res.status, 202, await res.text());
  };
  const now = (): string => new Date().toISOString();
  const started = (tenant: string, session: string, c: readonly { kind: string; id: string }[] = chain): TrustfoldEventInput =>
    ({ type: 'signal', kind: 'session_started', event_id: randomUUID(), tenant_id: tenant, occurred_at: now(), session_id: session, chain: [...c] }) as TrustfoldEventInput;
  const injection = (tenant: string, session: string, signalId: string): TrustfoldEventInput => ({
    type: 'signal', kind: 'injection_detected', event_id: randomUUID(), tenant_id: tenant, occurred_at: now(), session_id: session, signal_id: signalId, severity: 'high', detector: 'prompt-guard',
  });
  const decision = (session: string, action: string, resource: string, effect: 'allow' | 'deny', rule: string, trustVersion: number): TrustfoldEventInput & { event_id: string } => ({
    type: 'decision', event_id: randomUUID(), tenant_id: 'acme', occurred_at: now(), session_id: session, chain: [...chain],
    token: { jti: 'J-1', scopes: ['repo:write'], audience: 'git-gateway', consent_ref: 'C-88' },
    request: { tool: 'git', action, resource },
    decision: { effect, policy_id: 'P-risk-43', policy_version: '12', rule_id: rule, trust_version: trustVersion, pdp_id: 'pdp-1' },
    provenance: { model: 'model-x-2026-05', tool_schema_digest: 'sha256:7d1e0c' },
  });

  const openPage = async (): Promise<Page> => {
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    return page;
  };
  /** A new tab (its own sessionStorage) signed in through the `#token=` link, at `route`. */
  const signedIn = async (route: string, token = operator): Promise<Page> => {
    const p = await openPage();
    await p.goto(`${base}/console#token=${token}&next=${encodeURIComponent(route)}`);
    return p;
  };
  const shot = async (page: Page, name: string): Promise<void> => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const row = (page: Page, tenant: string, session: string) => page.locator(`#live-rows tr[data-tenant="${tenant}"][data-session="${session}"]`);
  /** Console errors since the last look, but for the HTTP refusals a step provoked on purpose. */
  const unexpectedErrors = (allowed: RegExp[] = []): string[] => errors.splice(0).filter((e) => !allowed.some((r) => r.test(e)));

  before(async () => {
    kafka = await getTestKafka();
    const id = uniqueName('console');
    const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-console-'));
    dirs.push(dataDir);
    const env: Record<string, string> = {
      TRUSTFOLD_TOPIC_DECISIONS: `${id}.decisions`,
      TRUSTFOLD_TOPIC_SIGNALS: `${id}.signals`,
      TRUSTFOLD_TOPIC_SESSION_TRUST: `${id}.session-trust`,
      TRUSTFOLD_TOPIC_DEAD_LETTER: `${id}.dead-letter`,
      KAFKA_CLIENT_ID: id,
      CLICKHOUSE_DATABASE: id.replace(/[^A-Za-z0-9_]/g, '_'),
      TRUSTFOLD_PARTITIONS: '3',
      TRUSTFOLD_JWT_SECRET: SECRET,
      TRUSTFOLD_DATA_DIR: dataDir,
      PORT: '0',
    };
    system = await startSystem({ config: configFrom(env), roles: new Set(ALL_ROLES), brokers: kafka.brokers, logger: createLogger('console-test', 'silent'), env });
    base = system.url ?? '';
    // The token npm start prints: every scope, every tenant.
    operator = await mintToken({ sub: 'local-operator', tenant: OPERATOR_TENANT, scopes: SCOPES }, SECRET);
    const profile = mkdtempSync(join(tmpdir(), 'trustfold-chromium-'));
    dirs.push(profile);
    mkdirSync(SHOTS, { recursive: true });
    process.stdout.write(`console screenshots: ${SHOTS}\n`);
    // A persistent context is Playwright's way to a fresh --user-data-dir of our own.
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 860 } });
  });
  after(async () => {
    await context?.close();
    await system?.close();
    await kafka?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  let page: Page;
  let deniedId = '';

  test('sign in with the link npm start prints: who, which scopes, the token gone from the address bar', async () => {
    page = await openPage();
    await page.goto(`${base}/console#token=${operator}`);
    await page.locator('[data-testid=sub]').waitFor();
    assert.equal(await page.locator('[data-testid=sub]').textContent(), 'local-operator');
    assert.match((await page.locator('[data-testid=tenant]').textContent()) ?? '', /^\* \(every tenant\)/);
    assert.equal(await page.locator('[data-testid=scopes]').textContent(), [...SCOPES].sort().join(' '));
    assert.ok(!page.url().includes('token'), `no token in ${page.url()}`);
    assert.deepEqual(await page.locator('nav a').allTextContents(), ['Live sessions', 'Search', 'Freezes']);
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('live: S-9 appears trusted, then turns restricted in the same row when the injection is posted', async () => {
    await post([started('acme', 'S-9')]);
    const r = row(page, 'acme', 'S-9');
    await r.and(page.locator('[data-tier=trusted]')).waitFor();
    const handle = await r.elementHandle();
    assert.ok(handle !== null);
    await post([decision('S-9', 'read_file', 'repo:R-payments-ledger/README.md', 'allow', 'allow-read', Number(await r.getAttribute('data-version')))]);
    await post([injection('acme', 'S-9', 'SIG-INJ-8821')]);
    await r.and(page.locator('[data-tier=restricted]')).waitFor();
    assert.equal(await handle.evaluate((el) => el.isConnected && el.getAttribute('data-tier')), 'restricted', 'the same row element changed in place');
    assert.match((await r.locator('td.causes').textContent()) ?? '', /injection_detected SIG-INJ-8821/);
    assert.match((await r.textContent()) ?? '', /U-442.*A-17 v3\.2/);

    // The SOC's freeze reaches the row; then the delete the PDP denies.
    const raised = await fetch(`${base}/v1/freezes?tenant=acme`, {
      method: 'POST', headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
      body: JSON.stringify({ freeze_id: 'INC-77', scope: { resource_prefix: 'repo:', actions: ['delete_file', 'force_push'] }, reason: 'incident INC-77: payments ledger under investigation', ticket: 'INC-77' }),
    });
    assert.equal(raised.status, 201);
    await r.locator('td.freezes', { hasText: 'INC-77' }).waitFor();
    const denied = decision('S-9', 'delete_file', 'repo:R-payments-ledger', 'deny', 'deny-destructive-when-restricted', Number(await r.getAttribute('data-version')));
    deniedId = denied.event_id;
    await post([denied]);

    // Filters: by tier and delegator, in the address so the view is a link.
    await page.selectOption('select[name=tier]', 'restricted');
    await page.waitForURL(/tier=restricted/);
    await r.waitFor();
    assert.equal(await page.locator('#live-rows tr[data-tier=trusted]').count(), 0);
    await shot(page, 'live');
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('figure: time from a posted signal to the new tier in the live view, p50 over 20 signals', async () => {
    await page.goto(`${base}/console#/live?tenant=acme`);
    const ms: number[] = [];
    for (let i = 0; i < 20; i++) {
      const session = `S-lat-${i}`;
      await post([started('acme', session, [{ kind: 'human', id: 'U-lat' }, { kind: 'agent', id: 'A-lat' }])]);
      await row(page, 'acme', session).and(page.locator('[data-tier=trusted]')).waitFor();
      const t0 = performance.now();
      await post([injection('acme', session, `SIG-LAT-${i}`)]);
      await row(page, 'acme', session).and(page.locator('[data-tier=restricted]')).waitFor();
      ms.push(performance.now() - t0);
    }
    process.stdout.write(`figure: signal posted → new tier shown in the browser: p50 ${p50(ms).toFixed(0)} ms, max ${Math.max(...ms).toFixed(0)} ms over ${ms.length} signals\n`);
    assert.equal(ms.length, 20);
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('session: the band over time, the denied delete_file as a mark; a click tells its story', async () => {
    // The audit sink is a consumer of its own: wait until it stored the deny.
    for (;;) {
      const res = await fetch(`${base}/v1/audit/decisions/${deniedId}?tenant=acme`, { headers: { authorization: `Bearer ${operator}` } });
      if (res.status === 200) break;
      assert.equal(res.status, 404);
      await new Promise((r) => setTimeout(r, 200));
    }
    await page.goto(`${base}/console#/live?tenant=acme&session=S-9`);
    await row(page, 'acme', 'S-9').locator('td.id a').click();
    await page.waitForURL(/#\/session\/S-9/);
    const mark = page.locator(`svg.band .mark.effect-deny[data-event-id="${deniedId}"]`);
    await mark.waitFor();
    assert.equal(await page.locator('svg.band rect.seg[data-tier=trusted]').count(), 1);
    assert.equal(await page.locator('svg.band rect.seg[data-tier=restricted]').count(), 1);
    assert.match((await mark.getAttribute('aria-label')) ?? '', /^deny delete_file repo:R-payments-ledger at .* UTC \(trust restricted\)$/);
    assert.equal(await mark.getAttribute('tabindex'), '0', 'keyboard reachable');
    assert.equal(await page.locator('svg.band .mark.effect-allow').count(), 1);
    assert.match((await page.locator('table.timeline').textContent()) ?? '', /injection_detected SIG-INJ-8821/);
    await shot(page, 'session');

    await mark.click();
    await page.waitForURL(new RegExp(`#/decision/${deniedId}`));
    const story = (await page.locator('#story').textContent()) ?? '';
    for (const id of ['A-17', 'U-442', 'P-risk-43', 'SIG-INJ-8821', 'INC-77', 'delete_file']) assert.ok(story.includes(id), `story names ${id}: ${story}`);
    assert.match(story, /denied/);
    assert.match((await page.locator('main').textContent()) ?? '', /deny-destructive-when-restricted/);
    await shot(page, 'decision');
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('delegator and search: counts per session, every filter in the address, NDJSON export of the result', async () => {
    await page.goto(`${base}/console#/delegator/U-442?tenant=acme&window=1h`);
    const s9 = page.locator('tbody tr', { hasText: 'S-9' });
    await s9.waitFor();
    assert.deepEqual((await s9.locator('td.num').allTextContents()).slice(0, 3), ['2', '1', '1'], 'decisions, allows, denies');
    assert.equal(await s9.locator('.tier').textContent(), 'restricted');
    await shot(page, 'delegator');

    await page.goto(`${base}/console#/search?tenant=acme`);
    await page.fill('input[name=agent]', 'A-17');
    await page.selectOption('select[name=effect]', 'deny');
    await page.fill('input[name=from]', '-1h');
    await page.click('form.search button[type=submit]');
    await page.waitForURL(/agent=A-17&effect=deny&from=/);
    const hit = page.locator('tbody tr', { hasText: 'delete_file' });
    await hit.waitFor();
    assert.equal(await page.locator('tbody tr').count(), 1);
    assert.match((await page.locator('.status').first().textContent()) ?? '', /1 decisions, all that match/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('button:has-text("Export all as NDJSON")')]);
    const lines = readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0] ?? '{}') as { event_id?: string }).event_id, deniedId);
    await shot(page, 'search');
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('freezes: raised and lifted from the page after a confirmation that names the scope, seen in the live view', async () => {
    await page.goto(`${base}/console#/freezes?tenant=acme`);
    await page.locator('tr[data-freeze="INC-77"]').waitFor();
    await page.fill('input[name=freeze_id]', 'INC-90');
    await page.fill('input[name=resource_prefix]', 'repo:');
    await page.fill('input[name=actions]', 'force_push');
    await page.fill('input[name=agent_id]', 'A-17');
    await page.fill('input[name=reason]', 'drill: force pushes stopped');
    await page.fill('input[name=expires_in_minutes]', '30');
    await page.click('form.raise button[type=submit]');
    const confirmText = (await page.locator('#confirm-text').textContent()) ?? '';
    assert.match(confirmText, /^Freeze \(INC-90\) force_push on resources starting with "repo:" by agent A-17 in tenant acme, until .* UTC\.$/);
    await shot(page, 'freeze-confirm');
    await page.click('dialog button[value=ok]');
    await page.locator('tr[data-freeze="INC-90"]').waitFor();
    await shot(page, 'freezes');

    const live = await signedIn('#/live?tenant=acme&session=S-9');
    await row(live, 'acme', 'S-9').locator('td.freezes', { hasText: 'INC-90' }).waitFor();

    await page.click('button[aria-label="lift INC-90"]');
    assert.match((await page.locator('#confirm-text').textContent()) ?? '', /^Lift freeze INC-90 in tenant acme/);
    await page.click('dialog button[value=ok]');
    await page.locator('tr[data-freeze="INC-90"]').waitFor({ state: 'detached' });
    await row(live, 'acme', 'S-9').and(live.locator(':not(:has(td.freezes:has-text("INC-90")))')).waitFor();
    assert.match((await row(live, 'acme', 'S-9').locator('td.freezes').textContent()) ?? '', /^INC-77$/);
    await live.close();
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('a tenant token sees its own tenant only, and is offered only what its scopes allow', async () => {
    await post([started('globex', 'S-G1', [{ kind: 'human', id: 'U-9' }, { kind: 'agent', id: 'A-9' }])]);
    await page.goto(`${base}/console#/live?session=S-G1`);
    await row(page, 'globex', 'S-G1').waitFor();

    const acme = await mintToken({ sub: 'responder-acme', tenant: 'acme', scopes: ['trust:read', 'audit:read'] }, SECRET);
    const p = await openPage();
    await p.goto(`${base}/console`);
    await p.fill('#token', acme);
    await p.click('form.signin button[type=submit]');
    await row(p, 'acme', 'S-9').waitFor();
    assert.equal(await p.locator('#live-rows tr[data-tenant=globex]').count(), 0);
    assert.equal(await p.locator('#live-rows tr:not([data-tenant=acme]):not(:has(td.empty))').count(), 0);
    assert.deepEqual(await p.locator('nav a').allTextContents(), ['Live sessions', 'Search'], 'no freezes without freeze:read');
    assert.equal(await p.locator('input[name=tenant]').count(), 0, 'no tenant picker for a tenant token');

    await p.goto(`${base}/console#/session/S-G1?tenant=globex`);
    await p.locator('.status.error', { hasText: 'This link is for tenant globex; your token reads tenant acme only.' }).waitFor();
    // And asked directly, the API refuses it too.
    const direct = await p.evaluate(`fetch('/v1/audit/sessions/S-G1/timeline?tenant=globex', { headers: { authorization: 'Bearer ${acme}' } }).then((r) => r.status)`);
    assert.equal(direct, 403);
    await p.goto(`${base}/console#/freezes`);
    await p.locator('h1', { hasText: 'Not with this token' }).waitFor();
    await p.close();
    assert.deepEqual(unexpectedErrors([/status of 403/]), []);
  });

  test('an expired token: the stream ends and the page asks to sign in again', async () => {
    const short = await mintToken({ sub: 'short-lived', tenant: 'acme', scopes: ['trust:read'], ttlSeconds: 3 }, SECRET);
    const p = await signedIn('#/live', short);
    await row(p, 'acme', 'S-9').waitFor();
    await p.locator('form.signin .status.error', { hasText: 'Your token has expired: sign in again' }).waitFor({ timeout: 30_000 });
    assert.equal(await p.locator('#token').count(), 1);
    await shot(p, 'signin-expired');

    await p.reload();
    await p.locator('form.signin').waitFor();
    await p.goto(`${base}/console#token=${short}`);
    await p.locator('form.signin .status.error', { hasText: 'expired' }).waitFor();
    await p.close();
    assert.deepEqual(unexpectedErrors([/status of 401/]), []);
  });

  test('narrow screen: the live view fits 390 px (tables scroll inside their box)', async () => {
    const p = await signedIn('#/live?tenant=acme');
    await p.setViewportSize({ width: 390, height: 800 });
    await row(p, 'acme', 'S-9').waitFor();
    // Runs in the page: the page's globals, read by name (this file is not compiled with the DOM library).
    const overflow = await p.evaluate('document.documentElement.scrollWidth - window.innerWidth');
    assert.ok(typeof overflow === 'number' && overflow <= 1, `page wider than the screen by ${overflow} px`);
    await shot(p, 'live-narrow');
    await p.close();
    assert.deepEqual(unexpectedErrors(), []);
  });

  test('figure: first load of the live view with 10 000 sessions in the stream', async () => {
    const n = 10_000;
    const events = Array.from({ length: n }, (_, i) => started('bulk', `S-bulk-${i}`, [{ kind: 'human', id: `U-${i % 50}` }, { kind: 'agent', id: `A-${i % 7}` }]));
    await post(events);
    // Until the projector has published them all (the operator's stream of tenant bulk counts them).
    const probe = await signedIn('#/live?tenant=bulk');
    await probe.locator('.counts', { hasText: `trusted ${'10 000'}` }).waitFor({ timeout: 180_000 });
    await probe.close();

    const t0 = performance.now();
    const p = await signedIn('#/live?tenant=bulk');
    await p.locator('.counts', { hasText: 'trusted 10 000' }).waitFor();
    await p.locator('#live-rows tr[data-session]').nth(199).waitFor();
    const ms = performance.now() - t0;
    const rows = await p.locator('#live-rows tr[data-session]').count();
    // The same snapshot read by Node, for what the server and the wire take of it.
    const t1 = performance.now();
    const res = await fetch(`${base}/v1/trust/stream?snapshot=true&tenant=bulk`, { headers: { authorization: `Bearer ${operator}` }, signal: AbortSignal.timeout(120_000) });
    let frames = 0;
    const decoder = new TextDecoder();
    const parser = createSseParser((e) => void (e.event === 'trust' && frames++));
    for await (const chunk of res.body ?? []) {
      parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
      if (frames >= n) break;
    }
    const wire = performance.now() - t1;
    process.stdout.write(`figure: live view first load with ${n} sessions in the stream: ${ms.toFixed(0)} ms to all counted and the first ${rows} rows drawn (the snapshot alone, read by Node: ${wire.toFixed(0)} ms)\n`);
    assert.equal(rows, 200, 'the first 200 drawn, the rest behind "show more"');
    assert.match((await p.locator('button.more').textContent()) ?? '', /Show 200 more/);
    await p.close();
    assert.deepEqual(unexpectedErrors(), []);
  });
});
