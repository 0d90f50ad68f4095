import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecisionEvent } from '../../schemas/events.ts';
import { parseDetectConfig } from '../../services/detect/config.ts';
import { detectAll, initialOutOfTask, initialRules, initialTokenReplay, outOfTask, tokenReplay, type Detection, type RulesState } from '../../services/detect/rules.ts';
import { detailOf, detectionIds, signalOf } from '../../services/detect/signal.ts';
import { admitEvents } from '../../services/ingest/admit.ts';
import { createRecentIds } from '../../services/ingest/recent-ids.ts';
import { incident } from '../helpers/audit-incident.ts';

const base = incident().denied;
const at = (s: number) => new Date(Date.parse('2026-06-09T14:00:00.000Z') + s * 1000).toISOString();
const call = (n: number, o: { s?: number; session?: string; jti?: string; expires?: string; cls?: string; tool?: string; action?: string; effect?: 'allow' | 'deny' } = {}): DecisionEvent => ({
  ...base,
  session_id: o.session ?? 'S-9',
  event_id: `01976d2a-0000-7000-8000-${String(n).padStart(12, '0')}`,
  occurred_at: at(o.s ?? n),
  token: { jti: o.jti ?? 'J-1', scopes: ['repo:write'], ...(o.expires !== undefined && { expires_at: o.expires }) },
  intent: { task_class: o.cls ?? 'refactor' },
  request: { ...base.request, tool: o.tool ?? 'git', action: o.action ?? 'read_file' },
  decision: { ...base.decision, effect: o.effect ?? 'allow' },
});

describe('token replay', () => {
  const run = (events: DecisionEvent[], maxTokens = 10) => {
    let s = initialTokenReplay();
    const all: Detection[] = [];
    for (const e of events) {
      const [n, out] = tokenReplay({ maxTokens }, s, e);
      s = n;
      all.push(...out);
    }
    return [s, all] as const;
  };
  test('given one jti in two sessions, then both sessions are flagged once, naming the first and the replaying decision', () => {
    const [, out] = run([call(1), call(2), call(3, { session: 'S-10' }), call(4, { session: 'S-10' })]);
    assert.deepEqual(out.map((d) => [d.session_id, d.event_ids]), [
      ['S-9', [call(1).event_id, call(3).event_id]],
      ['S-10', [call(1).event_id, call(3).event_id]],
    ]);
    assert.ok(out.every((d) => d.detector === 'trustfold/token-replay'));
  });
  test('a third session flags only itself; other tokens and tenants do not mix', () => {
    const [, out] = run([call(1), call(2, { session: 'S-10' }), call(3, { session: 'S-11' }), call(4, { session: 'S-12', jti: 'J-2' })]);
    assert.deepEqual(out.map((d) => d.session_id), ['S-9', 'S-10', 'S-11']);
  });
  test('used after expires_at fires once per session; at expiry exactly it does not', () => {
    const [, out] = run([call(1, { expires: at(1) }), call(2, { expires: at(1) }), call(3, { expires: at(1) })]);
    assert.equal(out.length, 1);
    assert.deepEqual(out[0]?.event_ids, [call(2).event_id]);
  });
  test('bounded: the least recently seen token is forgotten', () => {
    const [s] = run([call(1, { jti: 'A' }), call(2, { jti: 'B' }), call(3, { jti: 'C' })], 2);
    assert.deepEqual(s.order.map((k) => k.split('\u0000')[1]), ['B', 'C']);
  });
});

describe('out-of-task tool', () => {
  const cfg = { allowed: { refactor: ['git:*', 'fs:read'] }, maxSessions: 2 };
  test('a tool outside the task class fires once per session; allowed pairs and unlisted classes never', () => {
    let s = initialOutOfTask();
    const out: Detection[] = [];
    for (const e of [call(1), call(2, { tool: 'fs', action: 'read' }), call(3, { tool: 'payments', action: 'transfer_funds', effect: 'deny' }), call(4, { tool: 'payments', action: 'transfer_funds' }), call(5, { cls: 'other', tool: 'payments', action: 'x' })]) {
      const [n, o] = outOfTask(cfg, s, e);
      s = n;
      out.push(...o);
    }
    assert.deepEqual(out.map((d) => d.event_ids), [[call(3).event_id]]);
    assert.match(out[0]?.reason ?? '', /payments:transfer_funds is outside task class refactor/);
  });
});

describe('all rules, signals and settings', () => {
  const parsed = parseDetectConfig({ TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '2', TRUSTFOLD_DETECT_RULES: 'deny-storm,token-replay,out-of-task', TRUSTFOLD_DETECT_TASK_TOOLS: '{"refactor":["git:*"]}' });
  assert.ok(parsed.ok);
  const cfg = parsed.value;
  const events = [call(1, { effect: 'deny' }), call(2, { effect: 'deny', session: 'S-10' }), call(3, { effect: 'deny' }), call(4, { effect: 'deny', tool: 'payments', action: 'pay' })];
  const run = (evs: DecisionEvent[], s: RulesState = initialRules()): [RulesState, Detection[]] => {
    const all: Detection[] = [];
    for (const e of evs) {
      const [n, out] = detectAll(cfg.rules, s, e);
      s = n;
      all.push(...out);
    }
    return [s, all];
  };
  test('given a storm, a replayed token and an out-of-task call, then each rule reports, in a fixed order', () => {
    assert.deepEqual(run(events)[1].map((d) => `${d.detector} ${d.session_id}`), ['trustfold/token-replay S-9', 'trustfold/token-replay S-10', 'trustfold/deny-storm S-9', 'trustfold/out-of-task S-9']);
  });
  test('restart from a JSON snapshot of the state gives the same detections, hence the same signal ids', () => {
    const [mid] = run(events.slice(0, 2));
    const again = run(events.slice(2), JSON.parse(JSON.stringify(mid)) as RulesState)[1];
    assert.deepEqual(again, run(events)[1].slice(2));
    assert.deepEqual(again.map(detectionIds), run(events)[1].slice(2).map(detectionIds));
  });
  test('a detection is an injection_detected signal ingest admits for the detector as caller, with events:write only', () => {
    const d = run(events)[1][2]!;
    const raw = signalOf(d, cfg.severities['deny-storm']);
    const caller = { sub: d.detector, tenant: d.tenant_id, scopes: new Set(['events:write']), expiresAt: Number.MAX_SAFE_INTEGER };
    const a = admitEvents([raw], { caller, recent: createRecentIds(10), nowMs: Date.parse(d.at), bounds: { maxFutureSkewMs: 60_000, maxAgeMs: 86_400_000 } });
    assert.deepEqual(a.rejected, []);
    const e = a.events[0];
    assert.ok(e?.type === 'signal' && e.kind === 'injection_detected');
    assert.equal(e.emitted_by, 'trustfold/deny-storm');
    assert.equal(e.severity, 'medium');
    assert.match(e.detail ?? '', new RegExp(call(3).event_id));
    const other = admitEvents([raw], { caller: { ...caller, tenant: 'globex' }, recent: createRecentIds(10), nowMs: Date.parse(d.at), bounds: { maxFutureSkewMs: 60_000, maxAgeMs: 86_400_000 } });
    assert.deepEqual(other.reasons, ['tenant_mismatch']);
  });
  test('detail names as many decisions as fit the field', () => {
    const many: Detection = { detector: 'trustfold/deny-storm', tenant_id: 'acme', session_id: 'S', at: at(0), event_ids: Array.from({ length: 500 }, (_, i) => call(i).event_id) };
    const s = detailOf(many);
    assert.ok(s.length <= 4096);
    assert.match(s, /\(\+\d+ more\)$/);
  });
  test('settings: unknown rule, bad JSON, out-of-task without tools and a lookback shorter than the window are refused by name', () => {
    const bad = (env: Record<string, string>) => {
      const r = parseDetectConfig(env);
      return r.ok ? [] : r.error.map((e) => e.path);
    };
    assert.deepEqual(bad({ TRUSTFOLD_DETECT_RULES: 'deny-storm,nope' }), ['TRUSTFOLD_DETECT_RULES']);
    assert.deepEqual(bad({ TRUSTFOLD_DETECT_TASK_TOOLS: '{' }), ['TRUSTFOLD_DETECT_TASK_TOOLS']);
    assert.deepEqual(bad({ TRUSTFOLD_DETECT_RULES: 'out-of-task' }), ['TRUSTFOLD_DETECT_TASK_TOOLS']);
    assert.deepEqual(bad({ TRUSTFOLD_DETECT_LOOKBACK_MS: '1000' }), ['TRUSTFOLD_DETECT_LOOKBACK_MS']);
    assert.deepEqual(bad({ TRUSTFOLD_DETECT_DENY_STORM_SEVERITY: 'huge' }), ['TRUSTFOLD_DETECT_DENY_STORM_SEVERITY']);
  });
});

