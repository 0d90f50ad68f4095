import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatTable, parseSince, runAuditCli, timelineRow } from '../../services/cli/audit.ts';

const now = new Date('2026-06-10T14:00:00.000Z');

describe('audit CLI', () => {
  test('--since: durations before now, or an instant; anything else refused', () => {
    assert.equal(parseSince('24h', now), '2026-06-09T14:00:00.000Z');
    assert.equal(parseSince('7d', now), '2026-06-03T14:00:00.000Z');
    assert.equal(parseSince('30m', now), '2026-06-10T13:30:00.000Z');
    assert.equal(parseSince('2026-06-09T14:03:11Z', now), '2026-06-09T14:03:11.000Z');
    assert.equal(parseSince('yesterday', now), undefined);
    assert.equal(parseSince('24x', now), undefined);
  });

  test('tables align their columns', () => {
    assert.equal(formatTable(['A', 'BB'], [['xxx', 'y']]), 'A    BB\n---  --\nxxx  y\n');
  });

  test('a timeline decision row names effect, agent, tool.action, resource and policy/rule', () => {
    const row = timelineRow({
      kind: 'decision',
      at: '2026-06-09T14:03:11.000Z',
      event_id: 'e1',
      decision: { chain: [{ kind: 'human', id: 'U-442' }, { kind: 'agent', id: 'A-17' }], request: { tool: 'git', action: 'delete_file', resource: 'repo:R' }, decision: { effect: 'deny', policy_id: 'P-risk-43', rule_id: 'r' } },
    });
    assert.deepEqual(row, ['2026-06-09 14:03:11Z', 'decision', 'DENY A-17 git.delete_file repo:R', 'P-risk-43/r  e1']);
  });

  test('session follows every page; delegator sends --since as from; errors exit 1 with the API message', async () => {
    const urls: string[] = [];
    let output = '';
    const pages: Record<string, unknown> = {
      first: { entries: [{ kind: 'trust', at: '2026-06-09T14:00:00.000Z', version: 1, tier: 'trusted', trust: { causes: [], freezes: [] } }], next_cursor: 'c2' },
      c2: { entries: [{ kind: 'signal', at: '2026-06-09T14:01:57.000Z', event_id: 'e3', signal: { kind: 'injection_detected', signal_id: 'SIG-INJ-8821', severity: 'high' } }], next_cursor: null },
    };
    const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      urls.push(url.pathname + url.search);
      assert.equal((init?.headers as Record<string, string>)['authorization'], 'Bearer tok');
      if (url.pathname.includes('/delegators/')) return new Response(JSON.stringify({ sessions: [], next_cursor: null }));
      if (url.pathname.includes('/decisions/')) return new Response(JSON.stringify({ error: { code: 'not_found', message: 'no decision x' } }), { status: 404 });
      return new Response(JSON.stringify(pages[url.searchParams.get('cursor') ?? 'first']));
    }) as typeof fetch;
    const opts = { baseUrl: 'http://api.test', token: 'tok', fetch: fakeFetch, out: (s: string) => void (output += s), err: (s: string) => void (output += s), now: () => now };

    assert.equal(await runAuditCli(['session', 'S-9'], opts), 0);
    assert.equal(urls.length, 2, 'followed next_cursor');
    assert.match(output, /TIME\s+KIND\s+WHAT/);
    assert.match(output, /injection_detected SIG-INJ-8821 \(high\)/);
    assert.match(output, /v1 trusted/);

    assert.equal(await runAuditCli(['delegator', 'U-442', '--since', '24h'], opts), 0);
    assert.match(urls[2] ?? '', /\/v1\/audit\/delegators\/U-442\/sessions\?from=2026-06-09T14%3A00%3A00.000Z/);

    assert.equal(await runAuditCli(['explain', 'x'], opts), 1);
    assert.match(output, /404 no decision x/);
    assert.equal(await runAuditCli(['frobnicate', 'x'], opts), 2);
    assert.equal(await runAuditCli(['delegator', 'U', '--since', 'soon'], opts), 2);
  });
});
