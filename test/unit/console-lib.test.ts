// The console's logic without a browser: the band from transitions, the live
// list, the SSE framing, query strings from filters, routes, times, freezes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EFFECTS, TIERS, type SessionTrust } from '../../schemas/events.ts';
import { abilitiesOf, homeView } from '../../services/console/web/lib/access.ts';
import { bandInputOf, computeBand, type TimelineEntry, type Transition } from '../../services/console/web/lib/band.ts';
import { ago, count, localText, timeLeft, utcText } from '../../services/console/web/lib/format.ts';
import { describeFreeze, prepareFreeze } from '../../services/console/web/lib/freeze.ts';
import { applyState, liveView, matchesFilter, type LiveStore } from '../../services/console/web/lib/live.ts';
import { parseRoute, routeHref, signInHref, signInLink } from '../../services/console/web/lib/routes.ts';
import { chosenWindow, formOf, parseTimeInput, searchQuery, windowQuery } from '../../services/console/web/lib/search.ts';
import { createSseParser, type SseEvent } from '../../services/console/web/lib/sse.ts';
import { EFFECT_ORDER, TIER_ORDER, type Tier } from '../../services/console/web/lib/types.ts';

const T0 = Date.parse('2026-12-01T14:00:00Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();

const state = (o: Partial<SessionTrust> & { session_id: string }): SessionTrust => ({
  tenant_id: 'acme',
  version: 1,
  tier: 'trusted',
  causes: [],
  revoked_roles: [],
  consent_revoked: false,
  freezes: [],
  ended: false,
  updated_at: at(0),
  caused_by: '01976d2a-0000-7000-8000-000000000001',
  ...o,
});

test('the page keeps the contract’s tiers and effects, in the contract’s order', () => {
  assert.deepEqual(TIER_ORDER, TIERS);
  assert.deepEqual(EFFECT_ORDER, EFFECTS);
});

describe('band: the tier over time and the decisions on it', () => {
  // The incident: trusted at 14:00:00, restricted at 14:01:57, the delete at 14:03:11 denied.
  const entries: TimelineEntry[] = [
    { kind: 'trust', at: at(0), version: 1, tier: 'trusted' },
    { kind: 'decision', at: at(30), event_id: 'd-read', decision: { request: { action: 'read_file', resource: 'repo:R/README.md' }, decision: { effect: 'allow' } } },
    { kind: 'signal', at: at(117), event_id: 's-inj', signal: { kind: 'injection_detected', signal_id: 'SIG-INJ-8821' } },
    { kind: 'trust', at: at(117), version: 2, tier: 'restricted' },
    { kind: 'trust', at: at(150), version: 3, tier: 'restricted' },
    { kind: 'decision', at: at(191), event_id: 'd-del', decision: { request: { action: 'delete_file', resource: 'repo:R' }, decision: { effect: 'deny' } } },
  ];
  const band = computeBand(bandInputOf(entries));

  test('one segment per tier, a new version of the same tier is no new segment', () => {
    assert.deepEqual(
      band.segments.map((s) => [s.tier, Math.round(s.from - T0) / 1000, Math.round(s.to - T0) / 1000]),
      [
        ['trusted', 0, 117],
        ['restricted', 117, 196.73],
      ],
    );
    assert.equal(band.segments[0]?.x0, 0);
    assert.equal(band.segments.at(-1)?.x1, 1);
  });

  test('the drop is a change, with where it is on the axis', () => {
    assert.deepEqual(band.changes.map((c) => [c.from, c.to, c.at - T0]), [[null, 'trusted', 0], ['trusted', 'restricted', 117_000]]);
    assert.ok(Math.abs((band.changes[1]?.x ?? 0) - 117 / (191 * 1.03)) < 1e-9);
  });

  test('each decision is a mark at its time, with the tier it met', () => {
    assert.deepEqual(band.marks.map((m) => [m.eventId, m.effect, m.tier, m.label]), [
      ['d-read', 'allow', 'trusted', 'read_file repo:R/README.md'],
      ['d-del', 'deny', 'restricted', 'delete_file repo:R'],
    ]);
    const last = band.marks[1]?.x ?? 0;
    assert.ok(last > 0.95 && last < 1, 'the last decision is near the end, not on the edge');
    assert.deepEqual(band.ticks.map((t) => t.label), ['injection_detected SIG-INJ-8821']);
  });

  test('a live session runs to now; before its first state the tier is unknown', () => {
    const live = computeBand({ transitions: [{ at: T0 + 60_000, tier: 'degraded', version: 1 }], decisions: [{ at: T0, effect: 'step_up', eventId: 'x', label: 'x' }], until: T0 + 120_000 });
    assert.deepEqual(live.segments.map((s) => [s.tier, s.x0, s.x1]), [[null, 0, 0.5], ['degraded', 0.5, 1]]);
    assert.equal(live.marks[0]?.tier, null);
  });

  test('one instant still has a width, and nothing gives an empty band', () => {
    const one = computeBand({ transitions: [{ at: T0, tier: 'trusted', version: 1 }], decisions: [] });
    assert.equal(one.end - one.start, 10_000);
    assert.equal(one.start, T0, 'from the first entry');
    assert.equal(one.changes[0]?.x, 0);
    assert.deepEqual(computeBand({ transitions: [], decisions: [] }).segments, []);
  });

  test('out-of-order input is put in order; unparseable times are left out', () => {
    const b = computeBand(bandInputOf([entries[3], entries[0], { kind: 'trust', at: 'not a time', version: 9, tier: 'revoked' }].filter((e): e is TimelineEntry => e !== undefined)));
    assert.deepEqual(b.segments.map((s) => s.tier), ['trusted', 'restricted']);
  });
});

describe('band: change freezes as spans, raised → lifted or expired', () => {
  const f = (freeze_id: string, o: { since?: string; expires_at?: string } = {}) => ({ freeze_id, reason: `r ${freeze_id}`, ...o });
  const tr = (s: number, version: number, freezes: ReturnType<typeof f>[] | undefined, tier: Tier = 'trusted'): Transition => ({ at: T0 + s * 1000, version, tier, ...(freezes !== undefined ? { freezes } : {}) });
  const spans = (b: ReturnType<typeof computeBand>) => b.freezes.map((x) => [x.freezeId, (x.from - T0) / 1000, (x.to - T0) / 1000, x.end, x.lane]);

  test('from its since to the first state without it: lifted', () => {
    const b = computeBand({ transitions: [tr(0, 1, []), tr(100, 2, [f('INC-77', { since: at(95) })]), tr(200, 3, [])], decisions: [], until: T0 + 300_000 });
    assert.deepEqual(spans(b), [['INC-77', 95, 200, 'lifted', 0]]);
    assert.ok(Math.abs((b.freezes[0]?.x0 ?? 0) - 95 / 300) < 1e-9 && Math.abs((b.freezes[0]?.x1 ?? 0) - 200 / 300) < 1e-9);
  });

  test('an expiry before the next state ends it there: expired; one still held runs to the end: in force', () => {
    const b = computeBand({ transitions: [tr(0, 1, [f('F-exp', { expires_at: at(50) }), f('F-on')]), tr(120, 2, [f('F-on')])], decisions: [], until: T0 + 200_000 });
    assert.deepEqual(spans(b), [['F-exp', 0, 50, 'expired', 0], ['F-on', 0, 200, 'in_force', 1]]);
    const stillListed = computeBand({ transitions: [tr(0, 1, [f('F-exp', { expires_at: at(50) })])], decisions: [], until: T0 + 200_000 });
    assert.deepEqual(spans(stillListed), [['F-exp', 0, 50, 'expired', 0]], 'a state that still lists an expired freeze does not stretch it');
  });

  test('raised before the session: clamped to the chart; no since: from the first state that has it; lanes reused once free', () => {
    const b = computeBand({ transitions: [tr(10, 1, [f('OLD', { since: at(-3600) })]), tr(20, 2, []), tr(30, 3, [f('NEW')]), tr(40, 4, [])], decisions: [], until: T0 + 50_000 });
    assert.deepEqual(spans(b), [['OLD', -3600, 20, 'lifted', 0], ['NEW', 30, 40, 'lifted', 0]]);
    assert.equal(b.freezes[0]?.x0, 0);
  });

  test('states without freezes say nothing (the span goes on); out-of-order versions are put in order; a freeze raised again is a second span', () => {
    const b = computeBand({ transitions: [tr(30, 3, [f('F')]), tr(0, 1, [f('F')]), tr(10, 2, undefined), tr(20, 4, [])], decisions: [], until: T0 + 60_000 });
    // versions in order: 1 (F) → 2 (unknown) → 3 (F) at 30 → 4 (none) at 20: F from 0, lifted at 20.
    assert.deepEqual(spans(b).map((x) => x.slice(0, 4)), [['F', 0, 20, 'lifted']]);
    const again = computeBand({ transitions: [tr(0, 1, [f('F')]), tr(10, 2, []), tr(20, 3, [f('F')])], decisions: [], until: T0 + 30_000 });
    assert.deepEqual(spans(again), [['F', 0, 10, 'lifted', 0], ['F', 20, 30, 'in_force', 0]]);
  });

  test('from the timeline: the trust entries’ states give the spans; freeze signals are no ticks', () => {
    const entries: TimelineEntry[] = [
      { kind: 'trust', at: at(0), version: 1, tier: 'trusted', trust: { freezes: [] } },
      { kind: 'signal', at: at(60), event_id: 's-f', signal: { kind: 'change_freeze_raised', freeze_id: 'INC-77' } },
      { kind: 'trust', at: at(60), version: 2, tier: 'trusted', trust: { freezes: [f('INC-77', { since: at(60) })] } },
      { kind: 'signal', at: at(90), event_id: 's-i', signal: { kind: 'injection_detected', signal_id: 'SIG-1' } },
      { kind: 'trust', at: at(120), version: 3, tier: 'restricted', trust: { freezes: [] } },
    ];
    const b = computeBand(bandInputOf(entries, T0 + 200_000));
    assert.deepEqual(spans(b), [['INC-77', 60, 120, 'lifted', 0]]);
    assert.deepEqual(b.ticks.map((t) => t.label), ['injection_detected SIG-1']);
  });
});

describe('live sessions', () => {
  test('a push replaces an older version only; replays and stale pushes are ignored', () => {
    const store: LiveStore = new Map();
    assert.equal(applyState(store, state({ session_id: 'S-9', version: 2, tier: 'restricted' })), true);
    assert.equal(applyState(store, state({ session_id: 'S-9', version: 1 })), false);
    assert.equal(applyState(store, state({ session_id: 'S-9', version: 2 })), false);
    assert.equal(applyState(store, state({ session_id: 'S-9', tenant_id: 'other', version: 1 })), true, 'same id, another tenant: another session');
    assert.equal(store.size, 2);
    assert.equal([...store.values()][0]?.tier, 'restricted');
  });

  test('filters: tier exactly, delegator / agent / session by case-insensitive part; ended ones only when asked', () => {
    const s = state({ session_id: 'S-9', delegator: 'U-442', agent: 'A-17', tier: 'restricted' });
    assert.ok(matchesFilter(s, { tier: 'restricted', delegator: 'u-44', agent: ' a-17 ' }));
    assert.ok(!matchesFilter(s, { tier: 'trusted' }));
    assert.ok(!matchesFilter(s, { agent: 'A-18' }));
    assert.ok(!matchesFilter(state({ session_id: 'S-1' }), { delegator: 'U' }), 'no delegator matches no delegator filter');
    assert.ok(!matchesFilter({ ...s, ended: true }, {}));
    assert.ok(matchesFilter({ ...s, ended: true }, { ended: true }));
  });

  test('worst tier first, then the latest change; counts ignore the tier filter, the cap is said', () => {
    const rows = [
      state({ session_id: 'a', tier: 'trusted', updated_at: at(50) }),
      state({ session_id: 'b', tier: 'restricted', updated_at: at(10) }),
      state({ session_id: 'c', tier: 'restricted', updated_at: at(20) }),
      state({ session_id: 'd', tier: 'revoked', updated_at: at(0) }),
    ];
    assert.deepEqual(liveView([...rows].reverse(), {}, 10).rows.map((r) => r.session_id), ['d', 'c', 'b', 'a']);
    const v = liveView(rows, { tier: 'restricted' }, 1);
    assert.deepEqual(v.rows.map((r) => r.session_id), ['c']);
    assert.equal(v.matching, 2);
    assert.deepEqual(v.counts, { trusted: 1, degraded: 0, restricted: 2, revoked: 1 });
  });
});

describe('SSE framing', () => {
  const parse = (chunks: string[]): { events: SseEvent[] } => {
    const events: SseEvent[] = [];
    const p = createSseParser((e) => events.push(e));
    for (const c of chunks) p.feed(c);
    return { events };
  };

  test('events split anywhere across chunks, comments skipped, ids kept', () => {
    const stream = 'retry: 2000\n\n: heartbeat\n\nid: 1-1\nevent: trust\ndata: {"a":1}\n\nid: 1-2\nevent: trust\ndata: {"a":\ndata: 2}\n\n';
    for (const size of [1, 3, 7, stream.length]) {
      const chunks = stream.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g')) ?? [];
      const { events } = parse(chunks);
      assert.deepEqual(events, [
        { id: '1-1', event: 'trust', data: '{"a":1}' },
        { id: '1-2', event: 'trust', data: '{"a":\n2}' },
      ]);
    }
  });

  test('CRLF and CR line ends, a default event name, an event without data is none', () => {
    const { events } = parse(['data: x\r', '\n\r\nevent: token_expired\rdata: {}\r\r', 'event: nothing\n\n']);
    assert.deepEqual(events, [
      { id: undefined, event: 'message', data: 'x' },
      { id: undefined, event: 'token_expired', data: '{}' },
    ]);
  });
});

describe('routes and the sign-in link', () => {
  test('every view has a link that parses back to it', () => {
    for (const [view, id, params] of [
      ['session', 'S-9/x y', { tenant: 'acme' }],
      ['decision', '01976d2a-0000-7000-8000-000000000001', {}],
      ['delegator', 'U-442', { window: '7d' }],
      ['search', undefined, { agent: 'A-17', effect: 'deny' }],
      ['live', undefined, { tier: 'restricted' }],
      ['freezes', undefined, {}],
    ] as const) {
      const href = routeHref(view, id, params);
      assert.deepEqual(parseRoute(href), { view, ...(id !== undefined ? { id } : {}), params }, href);
    }
    assert.equal(routeHref('live', undefined, { tier: '', agent: undefined }), '#/live');
  });

  test('anything else is the live view', () => {
    for (const h of ['', '#', '#/nope', '#/session', '#/session/', '#/session/%E0%A4%A']) assert.deepEqual(parseRoute(h), { view: 'live', params: {} }, h);
  });

  test('#code= carries the one-time code and where to go; #token= is recognised only to be refused; nothing else is a sign-in link', () => {
    const code = 'a'.repeat(43);
    assert.deepEqual(signInLink(`#code=${code}`), { kind: 'code', code, next: '#/live' });
    assert.deepEqual(signInLink(`#code=${code}&next=${encodeURIComponent('#/session/S-9')}`), { kind: 'code', code, next: '#/session/S-9' });
    assert.deepEqual(signInLink('#code=c&next=https%3A%2F%2Fevil'), { kind: 'code', code: 'c', next: '#/live' }, 'next stays inside the console');
    assert.deepEqual(signInLink('#code=c&next=%E0%A4%A'), { kind: 'code', code: 'c', next: '#/live' }, 'a broken next: the default view');
    assert.deepEqual(signInLink('#token=eyJ.a.b&next=%23%2Flive'), { kind: 'token', next: '#/live' }, 'no token is taken from an address');
    assert.equal(signInLink('#/live'), undefined);
    assert.equal(signInLink('#code='), undefined);
    assert.equal(signInLink('#token='), undefined);
    assert.equal(signInHref('http://h/console', code, '#/freezes'), `http://h/console#code=${code}&next=%23%2Ffreezes`);
    assert.deepEqual(signInLink(new URL(signInHref('http://h/console', code, '#/freezes')).hash), { kind: 'code', code, next: '#/freezes' });
  });
});

describe('search query strings', () => {
  const now = T0;
  test('blanks left out, values trimmed, in the API’s filter order, times as RFC 3339', () => {
    const r = searchQuery({ agent: ' A-17 ', effect: 'deny', session: '', from: '-2h', to: '2026-12-01 14:30', order: 'asc' }, now, { tenant: 'acme' });
    assert.deepEqual(r, { ok: true, query: 'agent=A-17&effect=deny&from=2026-12-01T12%3A00%3A00.000Z&to=2026-12-01T14%3A30%3A00.000Z&tenant=acme' });
    assert.deepEqual(searchQuery({ order: 'desc', resource: 'repo:R x&y' }, now), { ok: true, query: 'resource=repo%3AR+x%26y&order=desc' });
  });

  test('a wrong time or window names the field', () => {
    assert.deepEqual(searchQuery({ from: 'yesterday' }, now), { ok: false, field: 'from', message: 'from: "yesterday" is not a time (2026-12-01T14:00:00Z, or -2h)' });
    assert.deepEqual(searchQuery({ from: '-1h', to: '-2h' }, now), { ok: false, field: 'from', message: 'from must be before to' });
  });

  test('time input forms', () => {
    assert.equal(parseTimeInput('2026-12-01T14:01:57+01:00', now), '2026-12-01T13:01:57.000Z');
    assert.equal(parseTimeInput('2026-12-01T14:01', now), '2026-12-01T14:01:00.000Z', 'a datetime-local value is UTC');
    assert.equal(parseTimeInput('-15m', now), '2026-12-01T13:45:00.000Z');
    assert.equal(parseTimeInput('-7d', now), '2026-11-24T14:00:00.000Z');
    assert.equal(parseTimeInput('2026-13-45T99:00Z', now), undefined);
    assert.equal(parseTimeInput('12', now), undefined);
  });

  test('the form from a route, and delegator windows', () => {
    assert.deepEqual(formOf({ agent: 'A-17', run: '1', tenant: 'acme' }), { agent: 'A-17', tenant: 'acme' });
    assert.deepEqual(windowQuery('1h', now), { from: '2026-12-01T13:00:00.000Z' });
    assert.deepEqual(windowQuery('all', now), {});
  });

  test('a delegator window: a preset, or from / to as chosen (either side open), validated with the field named', () => {
    assert.deepEqual(chosenWindow({}, now), { ok: true, query: { from: '2026-11-30T14:00:00.000Z' }, label: 'the last 24 h', preset: '24h' });
    assert.deepEqual(chosenWindow({ window: '7d' }, now), { ok: true, query: { from: '2026-11-24T14:00:00.000Z' }, label: 'the last 7 days', preset: '7d' });
    assert.deepEqual(chosenWindow({ window: 'all' }, now), { ok: true, query: {}, label: 'all time', preset: 'all' });
    assert.equal((chosenWindow({ window: 'bogus' }, now) as { preset: string }).preset, '24h');
    assert.deepEqual(chosenWindow({ window: '1h', from: '2026-12-01 13:30', to: '-10m' }, now), {
      ok: true, query: { from: '2026-12-01T13:30:00.000Z', to: '2026-12-01T13:50:00.000Z' }, label: '2026-12-01 13:30:00 UTC to 2026-12-01 13:50:00 UTC', preset: 'chosen',
    }, 'from / to win over the preset');
    assert.deepEqual(chosenWindow({ from: '-2h' }, now), { ok: true, query: { from: '2026-12-01T12:00:00.000Z' }, label: 'since 2026-12-01 12:00:00 UTC', preset: 'chosen' });
    assert.deepEqual(chosenWindow({ to: '2026-12-01T10:00:00+02:00', from: ' ' }, now), { ok: true, query: { to: '2026-12-01T08:00:00.000Z' }, label: 'until 2026-12-01 08:00:00 UTC', preset: 'chosen' });
    assert.deepEqual(chosenWindow({ from: 'yesterday' }, now), { ok: false, field: 'from', message: 'from: "yesterday" is not a time (2026-12-01T14:00:00Z, 2026-12-01 14:00 in UTC, or -2h)' });
    assert.deepEqual(chosenWindow({ from: '-1h', to: '13:00' }, now), { ok: false, field: 'to', message: 'to: "13:00" is not a time (2026-12-01T14:00:00Z, 2026-12-01 14:00 in UTC, or -2h)' });
    assert.deepEqual(chosenWindow({ from: '-1h', to: '-2h' }, now), { ok: false, field: 'from', message: 'from must be before to' });
  });
});

describe('times and numbers', () => {
  test('UTC and local side by side', () => {
    assert.equal(utcText('2026-12-01T14:01:57.123Z'), '2026-12-01 14:01:57');
    assert.equal(localText('2026-12-01T14:01:57Z', 'Europe/Berlin'), '2026-12-01 15:01:57 UTC+1');
    assert.equal(localText('2026-12-01T14:01:57Z', 'UTC'), '2026-12-01 14:01:57 UTC');
    assert.equal(utcText('garbage'), 'garbage');
  });
  test('ago, time left, counts', () => {
    assert.equal(ago(at(0), T0 + 500), 'now');
    assert.equal(ago(at(0), T0 + 42_000), '42 s ago');
    assert.equal(ago(at(0), T0 + 3 * 3600_000), '3 h ago');
    assert.equal(timeLeft(T0 + 59 * 60_000, T0), 'in 59 min');
    assert.equal(timeLeft(T0 - 1, T0), 'expired');
    assert.equal(count(10_000), '10 000');
    assert.equal(count(999), '999');
  });
});

describe('what a token may see', () => {
  test('views by scope; only freeze:write raises and lifts', () => {
    const soc = abilitiesOf({ sub: 'soc', tenant: 'acme', scopes: ['freeze:read', 'freeze:write', 'trust:read'], expires_at: at(3600) });
    assert.deepEqual([...soc.views].sort(), ['freezes', 'live', 'signin']);
    assert.ok(soc.raiseFreeze && soc.liftFreeze && !soc.operator);
    const auditor = abilitiesOf({ sub: 'a', tenant: '*', scopes: ['audit:read', 'tenants:all'], expires_at: at(3600) });
    assert.deepEqual([...auditor.views].sort(), ['decision', 'delegator', 'search', 'session', 'signin']);
    assert.ok(!auditor.raiseFreeze && auditor.operator);
    assert.equal(homeView(auditor), 'search');
    assert.equal(homeView(abilitiesOf({ sub: 'x', tenant: 't', scopes: ['events:write'], expires_at: at(1) })), 'signin');
  });
});

describe('freeze form', () => {
  const blank = { freeze_id: '', resource_prefix: '', actions: '', agent_id: '', reason: '', ticket: '', expires_in_minutes: '' };
  test('the body of POST /v1/freezes and the sentence the confirmation shows', () => {
    const p = prepareFreeze({ ...blank, freeze_id: 'INC-77', resource_prefix: 'repo:', actions: 'delete_file, force_push,delete_file', reason: ' ledger under investigation ', ticket: 'INC-77', expires_in_minutes: '90' }, 'acme', T0);
    assert.deepEqual(p, {
      ok: true,
      body: { freeze_id: 'INC-77', scope: { resource_prefix: 'repo:', actions: ['delete_file', 'force_push'] }, reason: 'ledger under investigation', ticket: 'INC-77', expires_at: '2026-12-01T15:30:00.000Z' },
      summary: 'Freeze (INC-77) delete_file, force_push on resources starting with "repo:" by any agent in tenant acme, until 2026-12-01 15:30:00 UTC.',
    });
  });
  test('an empty scope says it freezes everything; a missing reason or a bad expiry names the field', () => {
    assert.equal(describeFreeze({ scope: { agent_id: 'A-17' } }, 'acme'), 'Freeze every action on every resource by agent A-17 in tenant acme, until lifted.');
    assert.deepEqual(prepareFreeze(blank, 'acme', T0), { ok: false, field: 'reason', message: 'say why: the reason is shown to everyone the freeze stops' });
    const bad = prepareFreeze({ ...blank, reason: 'r', expires_in_minutes: '1.5' }, 'acme', T0);
    assert.equal(bad.ok ? undefined : bad.field, 'expires_in_minutes');
  });
});
