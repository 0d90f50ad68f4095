// The stale-PDP scenario end to end, in one `serve --role
// ingest,projector,audit-sink,query,detect`: an injection restricts session
// S-9 (trust v2); PDP pdp-stale then allows a call stamping trust v1, while
// pdp-current decides on v2. The story says the PDP decided on stale trust,
// GET /v1/audit/pdps names pdp-stale (from ClickHouse) and not pdp-current,
// the detector raises a trustfold/stale-pdp signal whose detail — as the
// audit stores it and the timeline shows it — names the decision, and
// /metrics counts the PDP.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { mintToken } from '../../services/lib/auth.ts';
import { configFrom } from '../../services/lib/config.ts';
import { createLogger } from '../../services/lib/log.ts';
import type { PdpSummary } from '../../services/query/pdps.ts';
import { operatorToken, startSystem, systemEnv, type System } from '../helpers/system.ts';
import { getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';
import { newEventId } from '../helpers/projector.ts';

const SECRET = 'detect-stale-pdp-test-secret-0123456789-abcdefghij';
let kafka: TestKafka;
let system: System | undefined;
let dataDir: string;

before(async () => {
  kafka = await getTestKafka();
  dataDir = mkdtempSync(join(tmpdir(), 'trustfold-stale-pdp-'));
});
after(async () => {
  await system?.close();
  await kafka.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('a PDP deciding on trust v1 while v2 was in force: story, /v1/audit/pdps, detector signal naming the decision, /metrics', { timeout: 120_000 }, async () => {
  const id = uniqueName('stale-pdp');
  const env = systemEnv(id, { secret: SECRET, dataDir, extra: { TRUSTFOLD_PROJECTOR_TICK_MS: '200', TRUSTFOLD_DETECT_SETTLE_MS: '500' } });
  system = await startSystem({
    config: configFrom(env),
    roles: new Set(['ingest', 'projector', 'audit-sink', 'query', 'detect'] as const),
    brokers: kafka.brokers,
    logger: createLogger('stale-pdp-test', 'silent', false),
    env,
    listen: false,
  });
  const app = system.app;
  const gw = await mintToken({ sub: 'gw-1', tenant: 'acme', scopes: ['events:write', 'trust:read', 'audit:read'] }, SECRET);
  const other = await mintToken({ sub: 'gw-2', tenant: 'globex', scopes: ['audit:read'] }, SECRET);
  const operator = await operatorToken(SECRET);
  const get = async <T>(url: string, token = gw): Promise<{ status: number; body: T }> => {
    const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
    return { status: r.statusCode, body: JSON.parse(r.body) as T };
  };
  const post = async (events: unknown[]): Promise<void> => {
    const r = await app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${gw}` }, payload: events });
    assert.equal(r.statusCode, 202, r.body);
    assert.deepEqual((JSON.parse(r.body) as { rejected?: unknown[] }).rejected ?? [], [], r.body);
  };
  const chain = [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: 'A-17' }];
  const t0 = Date.now() - 20_000;
  const iso = (ms: number) => new Date(ms).toISOString();
  await post([{ type: 'signal', kind: 'session_started', event_id: newEventId(), tenant_id: 'acme', occurred_at: iso(t0), session_id: 'S-9', chain }]);
  await post([{ type: 'signal', kind: 'injection_detected', event_id: newEventId(), tenant_id: 'acme', occurred_at: iso(t0 + 5_000), session_id: 'S-9', signal_id: 'SIG-INJ-8821', severity: 'high', detector: 'prompt-guard' }]);
  await waitForValue('S-9 restricted at v2', async () => (await get<{ tier?: string; version?: number }>('/v1/sessions/S-9/trust')).body, (b) => b.tier === 'restricted' && b.version === 2);

  const decision = (pdp: string, tv: number, at: number) => ({
    type: 'decision',
    event_id: newEventId(),
    tenant_id: 'acme',
    occurred_at: iso(at),
    session_id: 'S-9',
    chain,
    request: { tool: 'git', action: 'delete_file', resource: 'repo:R-payments-ledger' },
    decision: { effect: 'allow', policy_id: 'P-risk-43', rule_id: 'allow-scoped-write', trust_version: tv, pdp_id: pdp },
  });
  const stale = decision('pdp-stale', 1, t0 + 12_000);
  const current = decision('pdp-current', 2, t0 + 11_500);
  await post([stale, current]);

  // The story and the structured answer: the PDP decided on v1 although v2 (restricted) was in force; the allow is the finding.
  type Explained = { story: string; trust: { lag: { status: string; versions_behind?: number; ms_behind?: number }; finding?: string } };
  const x = await waitForValue('the stale decision explained against v2', async () => get<Explained>(`/v1/audit/decisions/${stale.event_id}`), (r) => r.status === 200 && r.body.trust.lag.status === 'stale');
  assert.deepEqual({ versions: x.body.trust.lag.versions_behind, ms: x.body.trust.lag.ms_behind, finding: x.body.trust.finding }, { versions: 1, ms: 7_000, finding: 'allowed_on_stale_trust' });
  assert.match(x.body.story, /the PDP decided on trust v1 \(trusted\) although the session had been restricted since .* after injection signal SIG-INJ-8821/);

  // GET /v1/audit/pdps, computed from ClickHouse.
  type Pdps = { items: PdpSummary[]; count: number; truncated: boolean };
  const pdps = await waitForValue('both PDPs in the audit', async () => get<Pdps>('/v1/audit/pdps'), (r) => r.status === 200 && r.body.items.reduce((n, p) => n + p.decisions, 0) === 2);
  const byId = new Map(pdps.body.items.map((p) => [p.pdp_id, p]));
  assert.deepEqual(
    { ...byId.get('pdp-stale'), first_seen: undefined },
    { tenant: 'acme', pdp_id: 'pdp-stale', first_seen: undefined, last_seen: stale.occurred_at, decisions: 1, unversioned: 0, stale_decisions: 1, stale_allows: 1, worst_lag: { versions: 1, ms: 7_000, event_id: stale.event_id, session_id: 'S-9' } },
  );
  assert.deepEqual({ stale: byId.get('pdp-current')?.stale_decisions, worst: byId.get('pdp-current')?.worst_lag }, { stale: 0, worst: null });
  assert.equal(pdps.body.items[0]?.pdp_id, 'pdp-stale', 'most stale first');
  assert.equal((await get<Pdps>('/v1/audit/pdps?grace_ms=7000')).body.items.find((p) => p.pdp_id === 'pdp-stale')?.stale_decisions, 0, '7000 ms behind is within a 7000 ms grace');
  assert.equal((await get<Pdps>('/v1/audit/pdps?grace_versions=1')).body.items.find((p) => p.pdp_id === 'pdp-stale')?.stale_decisions, 0);
  assert.deepEqual((await get<Pdps>('/v1/audit/pdps?pdp=pdp-current')).body.items.map((p) => p.pdp_id), ['pdp-current']);
  assert.equal((await get<Pdps>('/v1/audit/pdps', other)).body.count, 0, 'another tenant sees none of them');
  assert.equal((await get<Pdps>('/v1/audit/pdps?tenant=acme', other)).status, 403);
  assert.equal((await get<Pdps>('/v1/audit/pdps?tenant=acme', operator)).body.count, 2);
  const bad = await get<{ error: { errors: { path: string }[] } }>('/v1/audit/pdps?grace_ms=-1&nope=1');
  assert.equal(bad.status, 400);

  // The detector's signal, as the audit stored it: detector trustfold/stale-pdp, detail naming the decision.
  type Timeline = { entries: { kind: string; signal?: { kind: string; detector?: string; detail?: string; severity?: string } }[] };
  const tl = await waitForValue(
    'the stale-pdp signal in the session timeline',
    async () => get<Timeline>('/v1/audit/sessions/S-9/timeline?limit=100'),
    (r) => r.status === 200 && r.body.entries.some((e) => e.signal?.detector === 'trustfold/stale-pdp'),
  );
  const found = tl.body.entries.filter((e) => e.signal?.detector?.startsWith('trustfold/') === true);
  assert.equal(found.length, 1, 'one detection: pdp-current was current');
  assert.equal(found[0]?.signal?.severity, 'low');
  assert.match(found[0]?.signal?.detail ?? '', new RegExp(`PDP pdp-stale decided on trust v1 while v2 was in force .*decisions: ${stale.event_id}$`));
  const metrics = (await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${operator}` } })).body;
  assert.match(metrics, /trustfold_detect_pdp_stale_decisions\{tenant="acme",pdp_id="pdp-stale"\} 1/);
  assert.match(metrics, /trustfold_detect_pdp_stale_decisions\{tenant="acme",pdp_id="pdp-current"\} 0/);
  assert.match(metrics, /trustfold_detect_pdp_worst_lag_versions\{tenant="acme",pdp_id="pdp-stale"\} 1/);
  assert.match(metrics, /trustfold_detect_detections_total\{rule="stale-pdp"\} 1/);
});
