// One id, one spelling: a UUID is case-insensitive (RFC 9562), and the
// ClickHouse UUID column already stores `0190A8C2-…` and `0190a8c2-…` as the
// same value. Every parse of the contract therefore writes ids in lower case,
// so the write-once index, the projector's duplicate check and ingest's see
// one id — before, a copy under the id in upper case was a second event to all
// of them (a forged copy stored beside the first, a signal folded twice).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createCodec } from '../../schemas/codec.ts';
import { eventSchema, sessionTrustSchema, type DecisionEvent, type SessionTrust } from '../../schemas/events.ts';
import { decisionWithinContract } from '../../services/audit-sink/contract.ts';
import { compileFastParse } from '../../services/ingest/fast-parse.ts';
import { decisionFixture, signalFixtures } from '../fixtures/events.ts';

const lower = decisionFixture.event_id;
const upper = lower.toUpperCase();
const mixed = `${upper.slice(0, 18)}${lower.slice(18)}`;

describe('event ids are written in lower case wherever the contract is parsed', () => {
  test('zod and the ingest fast path give the lower-case id for an id in upper or mixed case', () => {
    const fast = compileFastParse(eventSchema);
    assert.ok(fast !== undefined);
    for (const id of [upper, mixed, lower]) {
      const parsed = eventSchema.parse({ ...decisionFixture, event_id: id });
      assert.equal(parsed.event_id, lower);
      assert.deepEqual(fast({ ...decisionFixture, event_id: id }), parsed);
    }
    const signal = Object.values(signalFixtures)[0];
    assert.ok(signal !== undefined);
    assert.equal(eventSchema.parse({ ...signal, event_id: signal.event_id.toUpperCase() }).event_id, signal.event_id.toLowerCase());
  });

  test('a trust state: caused_by, every cause and every freeze event id', () => {
    const state = {
      session_id: 'S-9',
      tenant_id: 'acme',
      version: 2,
      tier: 'degraded',
      causes: [{ kind: 'injection_detected', ref: 'SIG-1', event_id: upper, since: '2026-06-09T14:03:11.000Z', tier: 'degraded' }],
      revoked_roles: [],
      consent_revoked: false,
      freezes: [{ freeze_id: 'INC-77', scope: {}, reason: 'incident', event_id: mixed }],
      ended: false,
      updated_at: '2026-06-09T14:03:11.000Z',
      caused_by: upper,
    };
    const parsed: SessionTrust = sessionTrustSchema.parse(state);
    assert.equal(parsed.caused_by, lower);
    assert.equal(parsed.causes[0]?.event_id, lower);
    assert.equal(parsed.freezes[0]?.event_id, lower);
  });

  test('from Kafka: the sink\'s fast contract check leaves an id in upper case to zod, and the codec returns it in lower case', () => {
    const codec = createCodec();
    const event = eventSchema.parse(decisionFixture) as DecisionEvent;
    assert.equal(decisionWithinContract(event), true);
    const shouted: DecisionEvent = { ...event, event_id: upper };
    assert.equal(decisionWithinContract(shouted), false, 'not within the fast check: zod decides and normalises');
    // A producer writing to Kafka directly, past ingest: the bytes carry the id as sent.
    const decoded = codec.decodeEvent(codec.encodeEvent(shouted));
    assert.ok(decoded.ok);
    assert.equal(decoded.value.event_id, lower);
  });
});
