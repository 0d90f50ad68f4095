// The pure mapping: a recorded Cerbos decision log entry and OPA decision-log
// events in, trustfold decisions out; partial mappings say what is missing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { decisionEventSchema, delegatorOf, actingAgentOf } from '../../schemas/events.ts';
import { classifyCerbosRecord } from '../../services/adapters/cerbos.ts';
import { DEFAULT_EVENT_TIME_BOUNDS } from '../../services/lib/event-time.ts';
import { adapterConfigFrom, parseAdapterConfig } from '../../services/adapters/config.ts';
import {
  asTime,
  canonicalJson,
  DEFAULT_CERBOS_CONVENTION,
  DEFAULT_OPA_CONVENTION,
  deterministicId,
  mapCerbosEntry,
  mapOpaEvent,
  UNMAPPED_MARKER,
  type CerbosDecisionLogEntry,
} from '../../services/adapters/mapping.ts';
import { CERBOS_CALL_ID, CERBOS_ENTRY_JSON, CERBOS_HEADERS_JSON, opaEvent } from './adapters-fixtures.ts';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const cerbosOpts = { convention: DEFAULT_CERBOS_CONVENTION, defaultTenant: 'acme', pdpId: 'cerbos-1', emittedBy: 'cerbos-adapter' };
const entry = (): CerbosDecisionLogEntry => JSON.parse(CERBOS_ENTRY_JSON) as CerbosDecisionLogEntry;
const opaOpts = { convention: DEFAULT_OPA_CONVENTION, callerTenant: 'acme', defaultTenant: 'default', emittedBy: 'opa-uploader', receivedAt: '2026-06-09T15:00:00.000Z' };

describe('Cerbos entry → decisions', () => {
  test('one decision per resource × action, with the delegation chain from principal attributes', () => {
    const { mapped, failures } = mapCerbosEntry(entry(), cerbosOpts);
    assert.deepEqual(failures, []);
    assert.equal(mapped.length, 2);
    const byAction = new Map(mapped.map((m) => [m.event.request.action, m]));
    const deny = byAction.get('delete_file');
    const allow = byAction.get('read_file');
    assert.ok(deny && allow);
    assert.deepEqual(deny.missing, []);
    const e = deny.event;
    assert.equal(decisionEventSchema.safeParse(e).success, true);
    assert.equal(e.tenant_id, 'acme');
    assert.equal(e.session_id, 'S-9');
    assert.equal(e.occurred_at, '2026-11-23T18:47:12.391Z');
    assert.deepEqual(e.chain, [
      { kind: 'human', id: 'U-442' },
      { kind: 'agent', id: 'A-17', version: '3.2' },
    ]);
    assert.equal(delegatorOf(e.chain)?.id, 'U-442');
    assert.equal(actingAgentOf(e.chain)?.id, 'A-17');
    assert.deepEqual(e.request, { tool: 'git', action: 'delete_file', resource: 'repo:R-payments-ledger', args_digest: 'sha256:abc' });
    assert.deepEqual(e.token, { jti: 'J-1', scopes: ['repo:write', 'repo:read'], expires_at: '2033-05-18T03:33:20.000Z' });
    assert.deepEqual(e.decision, {
      effect: 'deny',
      policy_id: 'resource.git.vdefault',
      policy_version: 'default',
      rule_id: 'deny-destructive-when-degraded',
      reasons: ['session trust is degraded'],
      pdp_id: 'cerbos-1',
    });
    assert.equal(allow.event.decision.effect, 'allow');
    assert.equal(allow.event.decision.rule_id, 'allow-read');
    assert.deepEqual(allow.event.decision.reasons, ['read allowed']);
    assert.equal(e.emitted_by, 'cerbos-adapter');
  });

  test('event ids are deterministic per call × resource × action, and distinct between actions', () => {
    const a = mapCerbosEntry(entry(), cerbosOpts).mapped.map((m) => m.event.event_id);
    const b = mapCerbosEntry(entry(), cerbosOpts).mapped.map((m) => m.event.event_id);
    assert.deepEqual(a, b);
    assert.equal(new Set(a).size, 2);
    for (const id of a) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const other = entry();
    other.callId = '01M84VQK85AB5S9CVS956T1420';
    const c = mapCerbosEntry(other, cerbosOpts).mapped.map((m) => m.event.event_id);
    assert.equal(c.some((id) => a.includes(id)), false);
  });

  test('no delegator or session → still stored, placeholder session, missing fields listed in reasons', () => {
    const e = entry();
    const input = e.checkResources?.inputs?.[0];
    assert.ok(input?.principal);
    input.principal.attr = { agent_version: '3.2' };
    delete input.auxData;
    delete e.requestContext;
    const { mapped } = mapCerbosEntry(e, cerbosOpts);
    assert.equal(mapped.length, 2);
    for (const m of mapped) {
      assert.deepEqual(m.missing, ['session_id', 'delegator']);
      assert.equal(m.event.session_id, `unmapped:cerbos:${CERBOS_CALL_ID}`);
      assert.deepEqual(m.event.chain, [{ kind: 'agent', id: 'A-17', version: '3.2' }]);
      assert.equal(m.event.decision.reasons.at(-1), `${UNMAPPED_MARKER}session_id,delegator`);
      assert.equal(m.event.token, undefined);
    }
  });

  test('EFFECT_NO_MATCH is a deny that says so; an output {effect: step_up} is a step-up', () => {
    const e = entry();
    const out = e.checkResources?.outputs?.[0];
    assert.ok(out?.actions);
    out.actions['delete_file'] = { effect: 'EFFECT_NO_MATCH', policy: 'NO_MATCH' };
    out.outputs = [{ src: 'resource.git.vdefault#approve-first', val: { effect: 'step_up', reason: 'needs approval' }, action: 'read_file' }];
    const { mapped } = mapCerbosEntry(e, cerbosOpts);
    const byAction = new Map(mapped.map((m) => [m.event.request.action, m.event]));
    assert.equal(byAction.get('delete_file')?.decision.effect, 'deny');
    assert.match(byAction.get('delete_file')?.decision.reasons[0] ?? '', /EFFECT_NO_MATCH/);
    assert.equal(byAction.get('read_file')?.decision.effect, 'step_up');
    assert.equal(byAction.get('read_file')?.decision.rule_id, 'approve-first');
    assert.deepEqual(byAction.get('read_file')?.decision.reasons, ['needs approval']);
  });

  test('an action with no output is stored as an unread effect (deny + marker), not dropped', () => {
    const e = entry();
    delete e.checkResources?.outputs?.[0]?.actions?.['delete_file'];
    const m = mapCerbosEntry(e, cerbosOpts).mapped.find((x) => x.event.request.action === 'delete_file');
    assert.ok(m);
    assert.deepEqual(m.missing, ['effect', 'policy_id']);
    assert.equal(m.event.decision.effect, 'deny');
    assert.equal(m.event.decision.policy_id, 'unmapped');
  });

  test('older Cerbos entries with top-level inputs/outputs map the same', () => {
    const e = entry();
    const { checkResources, ...rest } = e;
    const legacy: CerbosDecisionLogEntry = { ...rest, inputs: checkResources?.inputs ?? [], outputs: checkResources?.outputs ?? [] };
    assert.deepEqual(
      mapCerbosEntry(legacy, cerbosOpts).mapped.map((m) => m.event),
      mapCerbosEntry(e, cerbosOpts).mapped.map((m) => m.event),
    );
  });

  test('a convention override moves where the session comes from', () => {
    const cfg = adapterConfigFrom({ TRUSTFOLD_ADAPTER_MAPPING_CERBOS: JSON.stringify({ session: ['principal.attr.trust_tier'] }) });
    const { mapped } = mapCerbosEntry(entry(), { ...cerbosOpts, convention: cfg.cerbos.convention });
    assert.equal(mapped[0]?.event.session_id, 'degraded');
    assert.deepEqual(cfg.cerbos.convention.delegator, DEFAULT_CERBOS_CONVENTION.delegator);
  });

  test('records on the topic: access logs ignored, protobuf/garbage/non-entries are poison with a reason', () => {
    const cfg = { convention: DEFAULT_CERBOS_CONVENTION, defaultTenant: 'acme', pdpId: 'cerbos' };
    // The fixture entry is dated 2026-11-23T18:47:12Z.
    const time = { nowMs: Date.parse('2026-11-23T18:50:00Z'), bounds: DEFAULT_EVENT_TIME_BOUNDS };
    const ok = classifyCerbosRecord(Buffer.from(CERBOS_ENTRY_JSON), CERBOS_HEADERS_JSON, cfg, time);
    assert.equal(ok.kind, 'mapped');
    assert.equal(ok.kind === 'mapped' ? ok.mapped.length : 0, 2);
    assert.deepEqual(classifyCerbosRecord(Buffer.from('{}'), { 'cerbos.audit.kind': 'access' }, cfg, time), { kind: 'ignored', why: 'access_log' });
    const proto = classifyCerbosRecord(Buffer.from([0x0a, 0x01]), { 'cerbos.audit.encoding': 'protobuf', 'cerbos.audit.kind': 'decision' }, cfg, time);
    assert.equal(proto.kind === 'poison' ? proto.reason : proto.kind, 'unsupported_encoding');
    const garbage = classifyCerbosRecord(Buffer.from('{"callId": '), CERBOS_HEADERS_JSON, cfg, time);
    assert.equal(garbage.kind === 'poison' ? garbage.reason : garbage.kind, 'bad_json');
    const notEntry = classifyCerbosRecord(Buffer.from('{"hello": "world"}'), CERBOS_HEADERS_JSON, cfg, time);
    assert.equal(notEntry.kind === 'poison' ? notEntry.reason : notEntry.kind, 'not_a_decision_log_entry');
    assert.equal(classifyCerbosRecord(null, CERBOS_HEADERS_JSON, cfg, time).kind, 'poison');
    const plan = classifyCerbosRecord(Buffer.from(JSON.stringify({ callId: 'x', planResources: { input: {} } })), CERBOS_HEADERS_JSON, cfg, time);
    assert.deepEqual(plan, { kind: 'ignored', why: 'plan_resources' });
  });

  test('an entry dated outside the event-time bounds is poison naming occurred_at, ahead or too old', () => {
    const cfg = { convention: DEFAULT_CERBOS_CONVENTION, defaultTenant: 'acme', pdpId: 'cerbos' };
    const entryAt = Date.parse('2026-11-23T18:47:12Z');
    for (const nowMs of [entryAt - 120_000, entryAt + 31 * 86_400_000]) {
      const r = classifyCerbosRecord(Buffer.from(CERBOS_ENTRY_JSON), CERBOS_HEADERS_JSON, cfg, { nowMs, bounds: DEFAULT_EVENT_TIME_BOUNDS });
      assert.equal(r.kind === 'poison' ? r.reason : r.kind, 'occurred_at_out_of_bounds');
      assert.match(r.kind === 'poison' ? r.message : '', /^occurred_at: /);
    }
  });
});

describe('OPA event → decision', () => {
  test('a full agent tool-call event maps every field of the contract it carries', () => {
    const r = mapOpaEvent(opaEvent(), opaOpts);
    assert.ok(r.ok);
    const { event: e, missing } = r.value;
    assert.deepEqual(missing, []);
    assert.equal(e.tenant_id, 'acme');
    assert.equal(e.session_id, 'S-9');
    assert.equal(e.occurred_at, '2026-06-09T14:03:11.123Z');
    assert.deepEqual(e.chain, [
      { kind: 'human', id: 'U-442' },
      { kind: 'agent', id: 'A-17', version: '3.2', owner: 'team-payments' },
    ]);
    assert.deepEqual(e.token, { jti: 'J-1', scopes: ['repo:write'], audience: 'git-gateway', expires_at: '2026-05-28T20:26:40.000Z', consent_ref: 'C-88' });
    assert.deepEqual(e.intent, { task_class: 'refactor', statement: 'clean up obsolete code' });
    assert.equal(e.request.tool, 'git');
    assert.equal(e.request.action, 'delete_file');
    assert.equal(e.request.resource, 'repo:R-payments-ledger');
    // Raw arguments are never stored, only their digest.
    assert.equal(e.request.args_digest, `sha256:${sha256('{"path":"migrations/001.sql"}')}`);
    assert.deepEqual(e.decision, {
      effect: 'deny',
      policy_id: 'agents/authz/decision',
      policy_version: 'rev-12',
      rule_id: 'deny-destructive-when-degraded',
      reasons: ['session trust is degraded'],
      pdp_id: 'opa-7f3c',
      latency_us: 420,
    });
    assert.equal(e.emitted_by, 'opa-uploader');
  });

  test('the event id depends on tenant and decision_id only: a re-upload is a duplicate', () => {
    const a = mapOpaEvent(opaEvent(), opaOpts);
    const b = mapOpaEvent(opaEvent({ requested_by: 'elsewhere', req_id: 99 }), { ...opaOpts, receivedAt: '2027-01-01T00:00:00.000Z' });
    const c = mapOpaEvent(opaEvent(), { ...opaOpts, callerTenant: 'globex' });
    assert.ok(a.ok && b.ok && c.ok);
    assert.equal(a.value.event.event_id, b.value.event.event_id);
    assert.notEqual(a.value.event.event_id, c.value.event.event_id);
    assert.equal(a.value.event.event_id, deterministicId('opa', 'acme', '4ca636c1-55e4-417a-b1d8-4aceb67960d1'));
  });

  test('boolean result (the docs example: "allow" rule) → effect; a non-agent input is stored with what is missing', () => {
    const r = mapOpaEvent(
      { decision_id: 'd-1', path: 'http/example/authz/allow', input: { method: 'GET', path: '/salary/bob' }, result: true, timestamp: '2018-01-01T00:00:00.000000Z' },
      opaOpts,
    );
    assert.ok(r.ok);
    assert.deepEqual(r.value.missing, ['session_id', 'delegator', 'agent', 'tool', 'action', 'resource']);
    assert.equal(r.value.event.decision.effect, 'allow');
    assert.equal(r.value.event.decision.policy_id, 'http/example/authz/allow');
    assert.equal(r.value.event.session_id, 'unmapped:opa:d-1');
    assert.deepEqual(r.value.event.decision.reasons, [`${UNMAPPED_MARKER}session_id,delegator,agent,tool,action,resource`]);
  });

  test('erased result and no timestamp: effect recorded as deny and marked, time falls back to receipt, erasure noted', () => {
    const ev = opaEvent({ erased: ['/result', '/input/token'], timestamp: undefined });
    delete ev['result'];
    const r = mapOpaEvent(ev, opaOpts);
    assert.ok(r.ok);
    assert.deepEqual(r.value.missing, ['effect', 'occurred_at']);
    assert.equal(r.value.event.decision.effect, 'deny');
    assert.equal(r.value.event.occurred_at, opaOpts.receivedAt);
    assert.ok(r.value.event.decision.reasons.includes('opa erased: /result /input/token'));
    assert.equal(r.value.event.decision.reasons.at(-1), `${UNMAPPED_MARKER}effect,occurred_at`);
  });

  test('operator tokens take the tenant from the event; string effects and multiple bundles', () => {
    const r = mapOpaEvent(
      opaEvent({ input: { ...(opaEvent()['input'] as object), tenant_id: 'globex' }, result: { decision: 'step_up' }, bundles: { b: { revision: '2' }, a: { revision: '1' } } }),
      { ...opaOpts, callerTenant: '*' },
    );
    assert.ok(r.ok);
    assert.equal(r.value.event.tenant_id, 'globex');
    assert.equal(r.value.event.decision.effect, 'step_up');
    assert.equal(r.value.event.decision.policy_version, 'a@1,b@2');
  });

  test('hostile sizes are clipped to the contract, never rejected', () => {
    const r = mapOpaEvent(opaEvent({ input: { session_id: 'S'.repeat(10_000), delegator: { nested: true }, tool: 'x', action: 'y', resource: 'z' } }), opaOpts);
    assert.ok(r.ok);
    assert.equal(r.value.event.session_id.length, 256);
    assert.ok(r.value.missing.includes('delegator'));
  });
});

describe('helpers and config', () => {
  test('asTime reads RFC 3339, JWT seconds and epoch ms', () => {
    assert.equal(asTime('2026-06-09T14:03:11.123456Z'), '2026-06-09T14:03:11.123Z');
    assert.equal(asTime(1_780_000_000), '2026-05-28T20:26:40.000Z');
    assert.equal(asTime(1_780_000_000_000), '2026-05-28T20:26:40.000Z');
    assert.equal(asTime('nope'), undefined);
  });
  test('canonicalJson sorts keys at every depth', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}');
  });
  test('config: defaults, and precise errors for bad overrides', () => {
    const d = adapterConfigFrom({});
    assert.equal(d.cerbos.topic, 'cerbos.audit.log');
    assert.equal(d.opa.maxUploadBytes, 4 * 1024 * 1024);
    const bad = parseAdapterConfig({ TRUSTFOLD_ADAPTER_MAPPING_OPA: '{"sesion": ["input.sid"]}', TRUSTFOLD_CERBOS_FROM_BEGINNING: 'maybe' });
    assert.equal(bad.ok, false);
    const paths = bad.ok ? [] : bad.error.map((e) => e.path);
    assert.ok(paths.includes('TRUSTFOLD_CERBOS_FROM_BEGINNING'), paths.join());
    assert.ok(paths.some((p) => p.startsWith('TRUSTFOLD_ADAPTER_MAPPING_OPA')), paths.join());
    const notJson = parseAdapterConfig({ TRUSTFOLD_ADAPTER_MAPPING_CERBOS: '{' });
    assert.equal(notJson.ok ? '' : notJson.error[0]?.message, 'not valid JSON');
  });
});

