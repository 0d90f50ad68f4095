// The OpenAPI document tells the truth: Schemathesis (property-based, from
// PyPI, installed by scripts/schemathesis-setup.mjs into .cache/schemathesis)
// generates requests from /docs/json of a real system and checks every answer
// against the document — statuses, response schemas, and that requests the
// document calls valid are accepted and those it calls invalid refused. The
// SSE stream never ends, so it is left out.
//
// Its settings are test/schemathesis/schemathesis.toml; the rules no OpenAPI
// schema can state (two parameters tied together, a header naming the body's
// encoding), each written in its operation's description, are taught to
// Schemathesis in test/schemathesis/hooks.py, so a request it calls valid is
// one the API must accept. Nothing is excluded per operation and no check is
// switched off.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mintToken, SCOPES } from '../../services/lib/auth.ts';
import { configFrom } from '../../services/lib/config.ts';
import { createLogger } from '../../services/lib/log.ts';
import { ALL_ROLES, startSystem, systemEnv, type System } from '../helpers/system.ts';
import { getTestKafka, uniqueName, waitForValue, type TestKafka } from '../helpers/kafka.ts';

const SCHEMATHESIS = join(process.cwd(), '.cache', 'schemathesis', 'bin', 'schemathesis');
const SETTINGS = join(process.cwd(), 'test', 'schemathesis');
const REPORT_DIR = join(process.cwd(), '.scratch', 'schemathesis');
const SECRET = 'schemathesis-secret-0123456789-abcdefghijkl';
const skip = existsSync(SCHEMATHESIS) ? false : `no ${SCHEMATHESIS}: node scripts/schemathesis-setup.mjs installs it (needs python3 with venv)`;

const run = (args: string[], cwd: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> =>
  new Promise((resolve, reject) => {
    // cwd: a scratch directory, for anything Schemathesis writes beside it.
    const child = spawn(SCHEMATHESIS, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', SCHEMATHESIS_TELEMETRY: 'false', ...env } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, out }));
  });

describe('OpenAPI document vs the API (Schemathesis)', { skip, timeout: 600_000 }, () => {
  let kafka: TestKafka;
  let system: System;
  let base = '';
  let operator = '';
  let workDir = '';
  let logId = '';
  /** Records that exist (given to the hooks as TRUSTFOLD_ST_DATA), so the routes that read one answer 200 too, not only 404. */
  let known: Record<string, string | number> = {};
  const dirs: string[] = [];

  before(async () => {
    kafka = await getTestKafka();
    const id = uniqueName('schemathesis');
    const dataDir = mkdtempSync(join(tmpdir(), 'trustfold-schemathesis-'));
    dirs.push(dataDir);
    workDir = dataDir;
    const env = systemEnv(id, {
      secret: SECRET,
      dataDir,
      extra: {
        PORT: '0',
        // The document states this bound (maxItems of the OPA upload); Schemathesis then sends
        // uploads at and one over it, so a small bound keeps those requests small.
        TRUSTFOLD_OPA_MAX_EVENTS: '20',
      },
    });
    logId = `${id}.decisions/0`;
    system = await startSystem({ config: configFrom(env), roles: new Set(ALL_ROLES), brokers: kafka.brokers, logger: createLogger('schemathesis-test', 'silent', false), env });
    base = system.url ?? '';
    // A tenant's token with every scope. Not the operator token npm start prints: an
    // operator (tenant "*") must name the tenant on every tenant route, a rule of the
    // token the document states in words (each `tenant` parameter) but cannot
    // express as a schema, so Schemathesis would call every request without it valid.
    // The operator-only route (verify) answers this token 403, which it documents.
    operator = await mintToken({ sub: 'schemathesis', tenant: 'acme', scopes: SCOPES.filter((s) => s !== 'tenants:all') }, SECRET);

    // One session with a signal and a decision, stored, proven and folded before the run.
    const session = 'st-session';
    const chain = [{ kind: 'human', id: 'st-user' }, { kind: 'agent', id: 'st-agent' }];
    const at = new Date().toISOString();
    const signalId = randomUUID();
    const decisionId = randomUUID();
    const events = [
      { type: 'signal', kind: 'session_started', event_id: randomUUID(), tenant_id: 'acme', occurred_at: at, session_id: session, chain },
      { type: 'signal', kind: 'injection_detected', event_id: signalId, tenant_id: 'acme', occurred_at: at, session_id: session, signal_id: 'sig-1', severity: 'high', detector: 'schemathesis' },
      {
        type: 'decision', event_id: decisionId, tenant_id: 'acme', occurred_at: at, session_id: session, chain,
        request: { tool: 'git', action: 'push', resource: 'repo:R' },
        decision: { effect: 'deny', policy_id: 'P-1', rule_id: 'R-1', trust_version: 1, pdp_id: 'pdp-1' },
      },
    ];
    const auth = { authorization: `Bearer ${operator}` };
    const posted = await fetch(`${base}/v1/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(events) });
    const answer = (await posted.json()) as { accepted?: number };
    assert.equal(answer.accepted, events.length, `seed events not all accepted: ${JSON.stringify(answer)}`);
    const status = async (path: string): Promise<number> => (await fetch(`${base}${path}`, { headers: auth })).status;
    const trust = await waitForValue(
      'the seeded session folded',
      async () => {
        const r = await fetch(`${base}/v1/sessions/${session}/trust`, { headers: auth });
        return r.status === 200 ? ((await r.json()) as { version: number }) : undefined;
      },
      (v) => v !== undefined,
    );
    const version = trust?.version ?? 0;
    for (const path of [`/v1/audit/decisions/${decisionId}`, `/v1/audit/decisions/${decisionId}/proof`, `/v1/audit/signals/${signalId}/proof`, `/v1/audit/sessions/${session}/transitions/${version}/proof`]) {
      await waitForValue(`200 from ${path}`, () => status(path), (s) => s === 200);
    }
    // A log with a signed checkpoint (for the checkpoint and consistency routes) and a freeze to lift.
    const checkpoints = await waitForValue(
      'a signed checkpoint',
      async () => ((await (await fetch(`${base}/v1/audit/checkpoints`, { headers: auth })).json()) as { checkpoints?: { log_id: string; size: number }[] }).checkpoints ?? [],
      (c) => c.some((x) => x.size > 0),
    );
    const log = checkpoints.find((x) => x.size > 0);
    if (log !== undefined) logId = log.log_id;
    const freeze = await fetch(`${base}/v1/freezes`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ freeze_id: 'st-freeze', scope: { agent_id: 'st-agent' }, reason: 'schemathesis' }),
    });
    assert.equal(freeze.status, 201, `seed freeze: ${await freeze.text()}`);
    known = { session, user_id: 'st-user', decision_id: decisionId, signal_id: signalId, version, log_size: log?.size ?? 0, freeze_id: 'st-freeze' };
  });

  after(async () => {
    await system?.close();
    await kafka?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('schemathesis run: no failures', async () => {
    const { code, out } = await run(
      ['--config-file', join(SETTINGS, 'schemathesis.toml'), 'run', `${base}/docs/json`, '-H', `Authorization: Bearer ${operator}`, '--exclude-path', '/v1/trust/stream'],
      workDir,
      { SCHEMATHESIS_HOOKS: join(SETTINGS, 'hooks.py'), TRUSTFOLD_ST_LOG: logId, TRUSTFOLD_ST_DATA: JSON.stringify(known) },
    );
    mkdirSync(REPORT_DIR, { recursive: true });
    const report = join(REPORT_DIR, 'output.txt');
    writeFileSync(report, out);
    // The operations tested, the counts by check (`❌ ST103 Undocumented status code: 11`), the warnings, the cases and the last line.
    const summary = out.split('\n').filter((l) => /^\s*(Selected|Tested):|❌ ST\d+|⚠️|generated,|^=+ .* in [\d.]+s =+$/.test(l)).map((l) => l.trim()).join('\n');
    console.log(`FIGURE schemathesis: exit ${code}\n${summary}\n(full output: ${report})`);
    assert.equal(code, 0, `Schemathesis found failures:\n${summary}\nfull output: ${report}`);
    // A run that passed by testing nothing is not a pass: every selected operation was tested, with cases.
    const selected = /Selected: (\d+)\/\d+/.exec(out)?.[1];
    assert.ok(selected !== undefined && Number(selected) > 0, `no operations selected:\n${summary}`);
    assert.match(out, new RegExp(`Tested: ${selected}\\b`), `not every selected operation was tested:\n${summary}`);
    const generated = Number(/(\d+) generated/.exec(out)?.[1] ?? 0);
    assert.ok(generated >= 10 * Number(selected), `only ${generated} cases for ${selected} operations (fewer than ten each):\n${summary}`);
  });
});
