// `serve --role ingest,projector,detect` wired by the composition root: a burst
// of denials posted to /v1/events becomes a detection, the session is degraded
// on the trust route, and /metrics and /readyz name the role.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { mintToken } from '../../services/lib/auth.ts';
import { configFrom } from '../../services/lib/config.ts';
import { createLogger } from '../../services/lib/log.ts';
import { operatorToken, startSystem, systemEnv, type System } from '../helpers/system.ts';
import { getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';
import { newEventId } from '../helpers/projector.ts';

const SECRET = 'detect-system-test-secret-0123456789-abcdefghij';
let kafka: TestKafka;
let system: System | undefined;
let dataDir: string;

before(async () => {
  kafka = await getTestKafka();
  dataDir = mkdtempSync(join(tmpdir(), 'trustfold-detect-'));
});
after(async () => {
  await system?.close();
  await kafka.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('ingest → detect → projector in one process: four denies degrade the session', { timeout: 120_000 }, async () => {
  const id = uniqueName('detect-sys');
  const env = systemEnv(id, { secret: SECRET, dataDir, extra: { TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '3' } });
  system = await startSystem({ config: configFrom(env), roles: new Set(['ingest', 'projector', 'detect'] as const), brokers: kafka.brokers, logger: createLogger('detect-test', 'silent', false), env, listen: false });
  const app = system.app;
  const token = await mintToken({ sub: 'gw-1', tenant: 'acme', scopes: ['events:write', 'trust:read'] }, SECRET);
  const operator = await operatorToken(SECRET);
  const now = new Date().toISOString();
  const chain = [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: 'A-17' }];
  const deny = () => ({ type: 'decision', event_id: newEventId(), tenant_id: 'acme', occurred_at: now, session_id: 'S-9', chain, request: { tool: 'git', action: 'delete_file', resource: 'repo:R' }, decision: { effect: 'deny', policy_id: 'P-1' } });
  const events = [{ type: 'signal', kind: 'session_started', event_id: newEventId(), tenant_id: 'acme', occurred_at: now, session_id: 'S-9', chain }, deny(), deny(), deny(), deny()];
  const posted = await app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${token}` }, payload: events });
  assert.equal(posted.statusCode, 202, posted.body);
  assert.deepEqual((JSON.parse(posted.body) as { rejected?: unknown[] }).rejected ?? [], [], posted.body);

  const trust = await waitForValue(
    'S-9 degraded',
    async () => JSON.parse((await app.inject({ method: 'GET', url: '/v1/sessions/S-9/trust', headers: { authorization: `Bearer ${token}` } })).body) as { tier?: string; causes?: { kind: string; ref: string }[] },
    (b) => b.tier === 'degraded',
  );
  assert.ok(trust.causes?.some((c) => c.kind === 'injection_detected' && c.ref.startsWith('trustfold/deny-storm:')));
  const metrics = (await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${operator}` } })).body;
  assert.match(metrics, /trustfold_detect_signals_total\{rule="deny-storm",outcome="emitted"\} 1/);
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  assert.match(ready.body, /detect/);
});
