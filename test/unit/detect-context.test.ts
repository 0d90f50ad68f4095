// The rules that look things up (stale-pdp: the trust in force; token-replay:
// token_issued), the tool-description rule, the context store they read, and
// every setting of the detect role changing what it does.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecisionEvent, SignalEvent } from '../../schemas/events.ts';
import { parseDetectConfig, type DetectConfig } from '../../services/detect/config.ts';
import { createContextStore } from '../../services/detect/context.ts';
import {
  detectAll,
  initialRules,
  initialStalePdp,
  initialToolChanged,
  initialTokenReplay,
  stalePdp,
  toolChanged,
  tokenReplay,
  type Detection,
  type IssuedToken,
  type RuleContext,
  type RulesState,
  type StalePdpConfig,
  type StalePdpState,
  type ToolChangedState,
  type TrustStepLite,
} from '../../services/detect/rules.ts';
import { signalOf } from '../../services/detect/signal.ts';
import { incident } from '../helpers/audit-incident.ts';

const base = incident().denied;
const T0 = Date.parse('2026-06-09T14:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
type Call = { s?: number; session?: string; jti?: string; agent?: string; tv?: number; pdp?: string; tool?: string; digest?: string; effect?: 'allow' | 'deny'; expires?: string; cls?: string; action?: string };
const call = (n: number, o: Call = {}): DecisionEvent => ({
  ...base,
  session_id: o.session ?? 'S-9',
  event_id: `01976d2a-0000-7000-8000-${String(n).padStart(12, '0')}`,
  occurred_at: at(o.s ?? n),
  chain: [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: o.agent ?? 'A-17' }],
  token: { jti: o.jti ?? 'J-1', scopes: ['repo:write'], ...(o.expires !== undefined && { expires_at: o.expires }) },
  intent: { task_class: o.cls ?? 'refactor' },
  request: { ...base.request, tool: o.tool ?? 'git', action: o.action ?? 'read_file' },
  decision: { ...base.decision, effect: o.effect ?? 'allow', ...(o.tv !== undefined && { trust_version: o.tv }), ...(o.pdp !== undefined && { pdp_id: o.pdp }) },
  ...(o.digest !== undefined ? { provenance: { tool_schema_digest: o.digest } } : { provenance: undefined }),
});
const id = (n: number): string => call(n).event_id;

/** Session S-9: v1 at 0 s, v2 at 10 s, v3 at 20 s. */
const STEPS: TrustStepLite[] = [
  { version: 1, updated_at: at(0) },
  { version: 2, updated_at: at(10) },
  { version: 3, updated_at: at(20) },
];
const ctxOf = (steps: Record<string, TrustStepLite[]> = { 'S-9': STEPS }, tokens: Record<string, IssuedToken> = {}): RuleContext => ({
  trustSteps: (_t, s) => steps[s],
  issuedToken: (_t, j) => tokens[j],
});

describe('stale PDP', () => {
  const cfg: StalePdpConfig = { graceVersions: 0, graceMs: 1_000, signal: true, maxPdps: 10, maxSessions: 10 };
  const run = (events: DecisionEvent[], c: StalePdpConfig = cfg, s: StalePdpState = initialStalePdp(), steps = STEPS): [StalePdpState, Detection[]] => {
    const all: Detection[] = [];
    for (const e of events) {
      const [n, out] = stalePdp(c, s, e, e.session_id === 'S-9' ? steps : undefined);
      s = n;
      all.push(...out);
    }
    return [s, all];
  };
  test('given v1 stamped at 25 s (v3 in force since 20 s), then one signal naming the decision and the PDP counted', () => {
    const [s, out] = run([call(1, { s: 25, tv: 1, pdp: 'pdp-a' })]);
    assert.deepEqual(out.map((d) => [d.detector, d.event_ids]), [['trustfold/stale-pdp', [id(1)]]]);
    assert.match(out[0]?.reason ?? '', /PDP pdp-a decided on trust v1 while v3 was in force \(2 versions and 15000 ms behind\)/);
    assert.deepEqual(Object.values(s.pdps), [{ tenant_id: 'acme', pdp_id: 'pdp-a', last_seen: at(25), decisions: 1, stale: 1, worst_lag_versions: 2, worst_lag_ms: 15_000 }]);
  });
  test('in force means at or before occurred_at: v2 stamped at 15 s is current; at exactly 20 s v3 is in force', () => {
    assert.equal(run([call(1, { s: 15, tv: 2, pdp: 'p' })])[1].length, 0);
    const [s] = run([call(1, { s: 20, tv: 2, pdp: 'p' })], { ...cfg, graceMs: -1 });
    assert.equal(Object.values(s.pdps)[0]?.stale, 1, 'v3 (updated_at 20 s) is in force at 20 s');
  });
  test('grace in ms: a view 1000 ms behind is within the grace, 1001 ms is not', () => {
    const within = { ...call(1, { tv: 2, pdp: 'p' }), occurred_at: new Date(T0 + 21_000).toISOString() };
    const beyond = { ...call(2, { tv: 2, pdp: 'p' }), occurred_at: new Date(T0 + 21_001).toISOString() };
    assert.equal(run([within])[1].length, 0);
    assert.equal(run([beyond])[1].length, 1);
  });
  test('grace in versions: 1 version behind is within TRUSTFOLD_DETECT_STALE_PDP_GRACE_VERSIONS=1, 2 are not', () => {
    const c = { ...cfg, graceVersions: 1 };
    assert.equal(run([call(1, { s: 30, tv: 2, pdp: 'p' })], c)[1].length, 0);
    assert.equal(run([call(2, { s: 30, tv: 1, pdp: 'p' })], c)[1].length, 1);
  });
  test('once per (session, PDP); another PDP in the same session fires too; a PDP ahead, unknown steps or no version never', () => {
    const [s, out] = run([call(1, { s: 30, tv: 1, pdp: 'p' }), call(2, { s: 31, tv: 1, pdp: 'p' }), call(3, { s: 32, tv: 1, pdp: 'q' }), call(4, { s: 33, tv: 9, pdp: 'p' }), call(5, { s: 34, tv: 1, pdp: 'p', session: 'S-x' }), call(6, { s: 35, pdp: 'p' })]);
    assert.deepEqual(out.map((d) => d.event_ids[0]), [id(1), id(3)]);
    assert.equal(s.pdps['acme\u0000p']?.decisions, 5);
    assert.equal(s.pdps['acme\u0000p']?.stale, 2, 'every stale decision counts, the signal is once');
  });
  test('signal off: counted, no detection', () => {
    const [s, out] = run([call(1, { s: 30, tv: 1, pdp: 'p' })], { ...cfg, signal: false });
    assert.equal(out.length, 0);
    assert.equal(s.pdps['acme\u0000p']?.stale, 1);
  });
  test('bounded: PDPs and flagged sessions are evicted least recently seen first', () => {
    const [s] = run([call(1, { s: 30, tv: 1, pdp: 'p1' }), call(2, { s: 30, tv: 1, pdp: 'p2' }), call(3, { s: 30, tv: 1, pdp: 'p3' })], { ...cfg, maxPdps: 2, maxSessions: 2 });
    assert.deepEqual(Object.keys(s.pdps), ['acme\u0000p2', 'acme\u0000p3']);
    assert.deepEqual(s.flaggedOrder.map((k) => k.split('\u0000')[2]), ['p2', 'p3']);
    const again = run([call(4, { s: 31, tv: 1, pdp: 'p1' })], { ...cfg, maxPdps: 2, maxSessions: 2 }, s)[1];
    assert.equal(again.length, 1, 'an evicted flag fires again (bounded state, documented)');
  });
  test('restart from a JSON snapshot gives the same detections as an uninterrupted run', () => {
    const events = [call(1, { s: 30, tv: 1, pdp: 'p' }), call(2, { s: 31, tv: 1, pdp: 'q' }), call(3, { s: 32, tv: 1, pdp: 'p' })];
    const [mid] = run(events.slice(0, 1));
    assert.deepEqual(run(events.slice(1), cfg, JSON.parse(JSON.stringify(mid)) as StalePdpState)[1], run(events)[1].slice(1));
  });
});

describe('token replay: token_issued', () => {
  const issued: IssuedToken = { agent_id: 'A-17', user_id: 'U-442', expires_at: at(100), event_id: '01976d2a-0000-7000-8000-999999999999' };
  const run = (events: DecisionEvent[], tok: IssuedToken | undefined = issued, maxTokens = 10) => {
    let s = initialTokenReplay();
    const all: Detection[] = [];
    for (const e of events) {
      const [n, out] = tokenReplay({ maxTokens }, s, e, tok);
      s = n;
      all.push(...out);
    }
    return [s, all] as const;
  };
  test('another acting agent than the one the token was issued to fires once per session, naming the decision and the issuing signal', () => {
    const [, out] = run([call(1), call(2, { agent: 'A-99' }), call(3, { agent: 'A-99' })]);
    assert.deepEqual(out.map((d) => [d.session_id, d.event_ids]), [['S-9', [id(2)]]]);
    assert.match(out[0]?.reason ?? '', /issued to agent A-17 \(token_issued 01976d2a-0000-7000-8000-999999999999\) used by agent A-99/);
  });
  test("token_issued's expires_at counts when the decision carries none; unknown tokens are not judged for agent", () => {
    assert.deepEqual(run([call(1, { s: 100 }), call(2, { s: 101 })])[1].map((d) => d.event_ids), [[id(2)]]);
    assert.deepEqual(tokenReplay({ maxTokens: 10 }, initialTokenReplay(), call(1, { agent: 'A-99' }), undefined)[1], []);
  });
  test('restart from a JSON snapshot keeps what already fired', () => {
    const [mid] = run([call(1, { agent: 'A-99' })]);
    const [, out] = ((): readonly [unknown, Detection[]] => {
      const [n, o] = tokenReplay({ maxTokens: 10 }, JSON.parse(JSON.stringify(mid)) as typeof mid, call(2, { agent: 'A-99' }), issued);
      return [n, o];
    })();
    assert.equal(out.length, 0);
  });
});

describe('tool description changed', () => {
  const cfg = { maxSessions: 2, maxToolsPerSession: 2 };
  const run = (events: DecisionEvent[], s: ToolChangedState = initialToolChanged(), c = cfg): [ToolChangedState, Detection[]] => {
    const all: Detection[] = [];
    for (const e of events) {
      const [n, out] = toolChanged(c, s, e);
      s = n;
      all.push(...out);
    }
    return [s, all];
  };
  test('a tool seen under a new digest in the same session fires, naming the first decision under the old digest and this one', () => {
    const [, out] = run([call(1, { digest: 'd1' }), call(2, { digest: 'd1' }), call(3, { digest: 'd2' }), call(4, { digest: 'd2' })]);
    assert.deepEqual(out.map((d) => [d.detector, d.event_ids]), [['trustfold/tool-description-changed', [id(1), id(3)]]]);
    assert.match(out[0]?.reason ?? '', /tool git called under schema digest d2, after d1/);
  });
  test('once per (session, tool, digest); a change back fires again; other sessions, other tools and no digest never', () => {
    const [, out] = run([call(1, { digest: 'd1' }), call(2, { digest: 'd2' }), call(3, { digest: 'd1' }), call(4, { digest: 'd2' }), call(5, { digest: 'd9', session: 'S-10' }), call(6, { digest: 'x', tool: 'fs' }), call(7)]);
    assert.deepEqual(out.map((d) => d.event_ids), [[id(1), id(2)], [id(2), id(3)]]);
  });
  test('bounded: least recently seen session evicted, oldest tool forgotten', () => {
    const [s] = run([call(1, { digest: 'a', session: 'A' }), call(2, { digest: 'a', session: 'B' }), call(3, { digest: 'a', session: 'C' })]);
    assert.deepEqual(s.order.map((k) => k.split('\u0000')[1]), ['B', 'C']);
    const [t] = run([call(1, { digest: 'a', tool: 't1' }), call(2, { digest: 'a', tool: 't2' }), call(3, { digest: 'a', tool: 't3' })]);
    assert.deepEqual(Object.keys(t.sessions['acme\u0000S-9']?.tools ?? {}), ['t2', 't3']);
  });
  test('restart from a JSON snapshot gives the same detections', () => {
    const events = [call(1, { digest: 'd1' }), call(2, { digest: 'd2' }), call(3, { digest: 'd3' })];
    const [mid] = run(events.slice(0, 1));
    assert.deepEqual(run(events.slice(1), JSON.parse(JSON.stringify(mid)) as ToolChangedState)[1], run(events)[1]);
  });
});

describe('context store', () => {
  const trust = (session: string, version: number, s: number) => ({ tenant_id: 'acme', session_id: session, version, updated_at: at(s) });
  test('keeps the newest maxSteps steps per session, in version order, once each; at most maxSessions sessions', () => {
    const c = createContextStore({ maxSessions: 2, maxSteps: 2, maxTokens: 2 });
    for (const [v, s] of [[2, 10], [1, 0], [3, 20], [3, 20]] as const) c.applyTrust(trust('S-9', v, s));
    assert.deepEqual(c.trustSteps('acme', 'S-9'), [{ version: 2, updated_at: at(10) }, { version: 3, updated_at: at(20) }]);
    c.applyTrust(trust('S-a', 1, 0));
    c.applyTrust(trust('S-b', 1, 0));
    assert.equal(c.trustSteps('acme', 'S-9'), undefined, 'least recently touched session evicted');
    assert.equal(c.sizes().sessions, 2);
  });
  test("a record whose Kafka key is not its session's is refused, as TrustView refuses it", () => {
    const c = createContextStore({ maxSessions: 10, maxSteps: 10, maxTokens: 10 });
    assert.equal(c.applyTrust(trust('S-9', 1, 0), { key: '["acme","session","S-other"]', offset: '0' }), false);
    assert.equal(c.trustSteps('acme', 'S-9'), undefined);
    assert.equal(c.sizes().refused, 1);
  });
  test('token_issued: the first issuance of a jti is kept; other signals are ignored; bounded', () => {
    const c = createContextStore({ maxSessions: 10, maxSteps: 10, maxTokens: 2 });
    const issued = (jti: string, agent: string): SignalEvent => ({ type: 'signal', kind: 'token_issued', event_id: `01976d2a-0000-7000-8000-0000000000${jti.length}${agent.length}`, tenant_id: 'acme', occurred_at: at(0), jti, user_id: 'U', agent_id: agent, scopes: [], expires_at: at(60) });
    c.applySignal(issued('J-1', 'A-17'));
    c.applySignal(issued('J-1', 'A-evil'));
    assert.equal(c.issuedToken('acme', 'J-1')?.agent_id, 'A-17');
    assert.equal(c.issuedToken('globex', 'J-1'), undefined);
    c.applySignal(issued('J-2', 'A'));
    c.applySignal(issued('J-3', 'A'));
    assert.equal(c.sizes().tokens, 2);
  });
});

describe('every setting changes what the role does', () => {
  const cfgOf = (env: Record<string, string>): DetectConfig => {
    const r = parseDetectConfig(env);
    assert.ok(r.ok, JSON.stringify(!r.ok && r.error));
    return r.value;
  };
  const run = (c: DetectConfig, events: DecisionEvent[], ctx: RuleContext = ctxOf(), s: RulesState = initialRules()): Detection[] => {
    const all: Detection[] = [];
    for (const e of events) {
      const [n, out] = detectAll(c.rules, s, e, ctx);
      s = n;
      all.push(...out);
    }
    return all;
  };
  const rulesFired = (c: DetectConfig, events: DecisionEvent[], ctx?: RuleContext): string[] => [...new Set(run(c, events, ctx).map((d) => d.detector))].sort();
  const denies = (k: number, spacingS = 1): DecisionEvent[] => Array.from({ length: k }, (_, i) => call(100 + i, { s: i * spacingS, effect: 'deny', jti: `J-${i}` }));
  const everything = [
    ...denies(11),
    call(1, { s: 30, tv: 1, pdp: 'p', jti: 'J-x' }),
    call(2, { s: 31, jti: 'J-x', session: 'S-10' }),
    call(3, { s: 32, digest: 'd1', jti: 'J-y' }),
    call(4, { s: 33, digest: 'd2', jti: 'J-y' }),
    call(5, { s: 34, tool: 'payments', action: 'transfer_funds', jti: 'J-y' }),
  ];

  test('defaults: deny-storm, token-replay, stale-pdp and tool-description-changed on; out-of-task off', () => {
    assert.deepEqual(rulesFired(cfgOf({}), everything), ['trustfold/deny-storm', 'trustfold/stale-pdp', 'trustfold/token-replay', 'trustfold/tool-description-changed']);
  });
  test('TRUSTFOLD_DETECT_RULES turns each rule on and off', () => {
    for (const rule of ['deny-storm', 'token-replay', 'stale-pdp', 'tool-description-changed'] as const) {
      assert.deepEqual(rulesFired(cfgOf({ TRUSTFOLD_DETECT_RULES: rule }), everything), [`trustfold/${rule}`], rule);
    }
    assert.deepEqual(rulesFired(cfgOf({ TRUSTFOLD_DETECT_RULES: 'out-of-task', TRUSTFOLD_DETECT_TASK_TOOLS: '{"refactor":["git:*"]}' }), everything), ['trustfold/out-of-task']);
  });
  test('TRUSTFOLD_DETECT_TASK_TOOLS decides what is out of task', () => {
    const c = (tools: string) => cfgOf({ TRUSTFOLD_DETECT_RULES: 'out-of-task', TRUSTFOLD_DETECT_TASK_TOOLS: tools });
    assert.equal(run(c('{"refactor":["git:*"]}'), everything).length, 1);
    assert.equal(run(c('{"refactor":["git:*","payments:*"]}'), everything).length, 0);
  });
  test('deny-storm threshold and window', () => {
    const ds = (env: Record<string, string>, evs: DecisionEvent[]) => run(cfgOf({ TRUSTFOLD_DETECT_RULES: 'deny-storm', ...env }), evs).length;
    assert.equal(ds({}, denies(10)), 0, 'default: more than 10');
    assert.equal(ds({}, denies(11)), 1);
    assert.equal(ds({ TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '3' }, denies(4)), 1);
    assert.equal(ds({ TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '3' }, denies(4, 20)), 0, 'default window 60 s: 4 denies over 60 s are not within it');
    assert.equal(ds({ TRUSTFOLD_DETECT_DENY_STORM_THRESHOLD: '3', TRUSTFOLD_DETECT_DENY_STORM_WINDOW_MS: '61000', TRUSTFOLD_DETECT_LOOKBACK_MS: '600000' }, denies(4, 20)), 1);
  });
  test('stale-pdp grace (versions, ms) and signal', () => {
    const sp = (env: Record<string, string>, e: DecisionEvent) => run(cfgOf({ TRUSTFOLD_DETECT_RULES: 'stale-pdp', ...env }), [e]).length;
    const oneBehind = call(1, { s: 25, tv: 2, pdp: 'p' });
    assert.equal(sp({}, oneBehind), 1);
    assert.equal(sp({ TRUSTFOLD_DETECT_STALE_PDP_GRACE_VERSIONS: '1' }, oneBehind), 0);
    assert.equal(sp({ TRUSTFOLD_DETECT_STALE_PDP_GRACE_MS: '5000' }, oneBehind), 0, '5000 ms behind is within a 5000 ms grace');
    assert.equal(sp({ TRUSTFOLD_DETECT_STALE_PDP_GRACE_MS: '4999' }, oneBehind), 1);
    assert.equal(sp({ TRUSTFOLD_DETECT_STALE_PDP_SIGNAL: 'false' }, oneBehind), 0);
  });
  test('each severity setting is the severity of its rule’s signal', () => {
    const c = cfgOf({
      TRUSTFOLD_DETECT_DENY_STORM_SEVERITY: 'critical',
      TRUSTFOLD_DETECT_TOKEN_REPLAY_SEVERITY: 'low',
      TRUSTFOLD_DETECT_OUT_OF_TASK_SEVERITY: 'high',
      TRUSTFOLD_DETECT_STALE_PDP_SEVERITY: 'medium',
      TRUSTFOLD_DETECT_TOOL_CHANGED_SEVERITY: 'critical',
    });
    assert.deepEqual(c.severities, { 'deny-storm': 'critical', 'token-replay': 'low', 'out-of-task': 'high', 'stale-pdp': 'medium', 'tool-description-changed': 'critical' });
    const d: Detection = { detector: 'trustfold/tool-description-changed', tenant_id: 'acme', session_id: 'S', event_ids: [id(1)], at: at(0) };
    assert.equal(signalOf(d, c.severities['tool-description-changed']).severity, 'critical');
    assert.deepEqual(cfgOf({}).severities, { 'deny-storm': 'medium', 'token-replay': 'high', 'out-of-task': 'medium', 'stale-pdp': 'low', 'tool-description-changed': 'medium' });
  });
  test('state bounds: TRUSTFOLD_DETECT_MAX_SESSIONS, _MAX_TOKENS, _MAX_PDPS', () => {
    const c = cfgOf({ TRUSTFOLD_DETECT_MAX_SESSIONS: '1', TRUSTFOLD_DETECT_MAX_TOKENS: '1', TRUSTFOLD_DETECT_MAX_PDPS: '1' });
    let s = initialRules();
    for (const e of [call(1, { session: 'A', jti: 'J-a', pdp: 'p1', digest: 'x' }), call(2, { session: 'B', jti: 'J-b', pdp: 'p2', digest: 'x' })]) s = detectAll(c.rules, s, e, ctxOf())[0];
    assert.deepEqual([Object.keys(s.denyStorm.sessions).length, Object.keys(s.tokenReplay.tokens).length, Object.keys(s.stalePdp.pdps).length, Object.keys(s.toolChanged.sessions).length], [1, 1, 1, 1]);
    const wide = cfgOf({});
    let w = initialRules();
    for (const e of [call(1, { session: 'A', jti: 'J-a', pdp: 'p1', digest: 'x' }), call(2, { session: 'B', jti: 'J-b', pdp: 'p2', digest: 'x' })]) w = detectAll(wide.rules, w, e, ctxOf())[0];
    assert.deepEqual([Object.keys(w.denyStorm.sessions).length, Object.keys(w.tokenReplay.tokens).length, Object.keys(w.stalePdp.pdps).length], [2, 2, 2]);
  });
  test('context settings are parsed into the role’s context, and refused by name when out of range', () => {
    const c = cfgOf({ TRUSTFOLD_DETECT_SETTLE_MS: '0', TRUSTFOLD_DETECT_CONTEXT_TIMEOUT_MS: '250', TRUSTFOLD_DETECT_TOKEN_LOOKBACK_MS: '1000', TRUSTFOLD_DETECT_MAX_TRUST_STEPS: '4' });
    assert.deepEqual(c.context, { settleMs: 0, timeoutMs: 250, tokenLookbackMs: 1000, maxSteps: 4, maxSessions: 100_000, maxTokens: 100_000 });
    const r = parseDetectConfig({ TRUSTFOLD_DETECT_SETTLE_MS: '-1', TRUSTFOLD_DETECT_STALE_PDP_SIGNAL: 'maybe' });
    assert.ok(!r.ok);
    assert.deepEqual(r.error.map((e) => e.path).sort(), ['TRUSTFOLD_DETECT_SETTLE_MS', 'TRUSTFOLD_DETECT_STALE_PDP_SIGNAL']);
  });
});
