// The one error vocabulary (services/lib/errors.ts): closed lists, and the
// retry-or-set-aside rule every consumer asks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecodeErrorCode } from '../../schemas/codec.ts';
import { codeOf, DEAD_LETTER_REASONS, ERROR_CODES, isErrorCode, isRetriable, TrustfoldError, type DeadLetterReason } from '../../services/lib/errors.ts';
import { codeOfStatus } from '../../services/lib/http.ts';

// Compile-time: every decode failure of the contract is a dead-letter reason.
const decodeReasons: Record<DecodeErrorCode, DeadLetterReason> = { bad_framing: 'bad_framing', unknown_schema: 'unknown_schema', bad_avro: 'bad_avro', invalid_event: 'invalid_event' };

describe('error vocabulary', () => {
  test('a TrustfoldError says itself whether a retry helps; of other errors only Kafka transient ones are retriable', () => {
    assert.equal(isRetriable(new TrustfoldError('kafka_timeout', 'no ack', true)), true);
    assert.equal(isRetriable(new TrustfoldError('invalid_event', 'bad', false)), false);
    assert.equal(isRetriable(Object.assign(new Error('NOT_LEADER_FOR_PARTITION'), { retriable: true })), true);
    assert.equal(isRetriable(new Error('Broker not connected')), true);
    assert.equal(isRetriable(new Error('boom')), false);
    assert.equal(isRetriable('boom'), false);
  });

  test('codes: ours pass, others are named by status', () => {
    assert.equal(codeOf(new TrustfoldError('kafka_timeout', 'x', true), 'kafka_unavailable'), 'kafka_timeout');
    assert.equal(codeOf(new Error('x'), 'kafka_unavailable'), 'kafka_unavailable');
    assert.equal(isErrorCode('ambiguous_tenant'), true);
    assert.equal(isErrorCode('FST_ERR_CTP_INVALID_CONTENT_LENGTH'), false);
    assert.equal(codeOfStatus(400), 'bad_request');
    assert.equal(codeOfStatus(404), 'not_found');
    assert.equal(codeOfStatus(405), 'method_not_allowed');
    assert.equal(codeOfStatus(418), 'bad_request');
    for (const s of [400, 401, 403, 404, 405, 413, 415, 429, 503, 500]) assert.ok(isErrorCode(codeOfStatus(s)));
  });

  test('the lists have no duplicates, and decode failures are dead-letter reasons', () => {
    assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
    assert.equal(new Set(DEAD_LETTER_REASONS).size, DEAD_LETTER_REASONS.length);
    for (const r of Object.values(decodeReasons)) assert.ok((DEAD_LETTER_REASONS as readonly string[]).includes(r));
  });
});
