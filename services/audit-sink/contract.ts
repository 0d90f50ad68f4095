// What the contract asks of a decoded decision beyond what its Avro schema
// already proves, checked without zod on the sink's hot path.
//
// A value the codec decoded with `validate: false` has every required field,
// no other field, the right types, and only known enum symbols: Avro's reader
// guarantees all of that. It does not know the contract's bounds: string
// lengths (ids 1..256, texts ≤ 4096), UUID syntax, a chain of 1..16 links,
// lists of at most 64, non-negative safe integers, timestamps a reader can
// write back (Avro's long may be any instant), and `type: 'decision'` (a
// string on the wire). `decisionWithinContract` checks exactly those, and it
// only ever says yes when zod's decisionEventSchema would accept the value too
// (test/unit/audit-sink-contract.test.ts holds the two against each other). When it
// says no, the caller asks zod, which either accepts after all or names the
// fields at fault for the dead letter.
import { LIMITS, type DecisionEvent } from '../../schemas/events.ts';

// zod's own UUID pattern (z.uuid(): RFC 9562 versions 1-8, variant 10xx, or the nil and max UUIDs),
// lower case only: the contract normalises an id in upper case to lower case (schemas/events.ts `uuid`),
// so one in upper case is left to zod, whose output is what gets stored.
const UUID = /^([0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$/;

const isId = (v: unknown): boolean => typeof v === 'string' && v.length >= 1 && v.length <= LIMITS.id;
const isOptId = (v: unknown): boolean => v === undefined || isId(v);
const isText = (v: unknown): boolean => typeof v === 'string' && v.length <= LIMITS.text;
const isOptText = (v: unknown): boolean => v === undefined || isText(v);
const isOptDigest = (v: unknown): boolean => v === undefined || (typeof v === 'string' && v.length <= LIMITS.id);
const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isOptCount = (v: unknown): boolean => v === undefined || isCount(v);

/**
 * A timestamp as the codec reads one (`new Date(ms).toISOString()`), in the
 * 24-character form the contract's ISO check accepts and normalises to
 * itself: years 0000-9999 only (outside them toISOString writes ±YYYYYY).
 */
export const isTimestamp = (v: unknown): boolean => typeof v === 'string' && v.length === 24 && isIsoMillis(v);

// Without Date: `YYYY-MM-DDTHH:MM:SS.sssZ` with a real calendar day (proleptic Gregorian, as Date), hours
// 00-23, minutes and seconds 00-59 — exactly the 24-character strings for which
// `new Date(Date.parse(v)).toISOString() === v` (test/unit/audit-sink-contract.test.ts holds the two
// against each other); three of these per decision made a Date, a parse and a string each.
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const digit = (s: string, i: number): number => {
  const d = s.charCodeAt(i) - 48;
  return d >= 0 && d <= 9 ? d : NaN; // a field with a non-digit is NaN, and fails every range test below
};
const isIsoMillis = (s: string): boolean => {
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 84 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58 || s.charCodeAt(19) !== 46 || s.charCodeAt(23) !== 90) return false;
  const year = digit(s, 0) * 1000 + digit(s, 1) * 100 + digit(s, 2) * 10 + digit(s, 3);
  const month = digit(s, 5) * 10 + digit(s, 6);
  const day = digit(s, 8) * 10 + digit(s, 9);
  const hour = digit(s, 11) * 10 + digit(s, 12);
  const minute = digit(s, 14) * 10 + digit(s, 15);
  const second = digit(s, 17) * 10 + digit(s, 18);
  const ms = digit(s, 20) * 100 + digit(s, 21) * 10 + digit(s, 22);
  if (!(year >= 0 && month >= 1 && month <= 12 && day >= 1 && hour >= 0 && hour <= 23 && minute >= 0 && minute <= 59 && second >= 0 && second <= 59 && ms >= 0)) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : (DAYS[month - 1] ?? 0));
};
const isOptTimestamp = (v: unknown): boolean => v === undefined || isTimestamp(v);

const idsUpTo = (v: unknown, max: number): boolean => Array.isArray(v) && v.length <= max && v.every(isId);

type Loose = Record<string, unknown>;
const obj = (v: unknown): Loose | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Loose) : undefined);

const chainOk = (v: unknown): boolean =>
  Array.isArray(v) &&
  v.length >= 1 &&
  v.length <= LIMITS.chain &&
  v.every((l) => {
    const o = obj(l);
    return o !== undefined && isId(o['id']) && isOptId(o['version']) && isOptId(o['owner']);
  });

const tokenOk = (v: unknown): boolean => {
  if (v === undefined) return true;
  const t = obj(v);
  return (
    t !== undefined &&
    isId(t['jti']) &&
    idsUpTo(t['scopes'], LIMITS.list) &&
    isOptId(t['audience']) &&
    isOptTimestamp(t['issued_at']) &&
    isOptTimestamp(t['expires_at']) &&
    isOptId(t['consent_ref']) &&
    isOptId(t['policy_version'])
  );
};

const optional = (v: unknown, ok: (o: Loose) => boolean): boolean => {
  if (v === undefined) return true;
  const o = obj(v);
  return o !== undefined && ok(o);
};

/**
 * True only if the Avro-decoded value meets every bound of the decision
 * contract (and then zod would return it unchanged). False means "ask zod".
 */
export const decisionWithinContract = (value: unknown): value is DecisionEvent => {
  const e = obj(value);
  if (e === undefined || e['type'] !== 'decision') return false;
  if (typeof e['event_id'] !== 'string' || !UUID.test(e['event_id'])) return false;
  if (!isId(e['tenant_id']) || !isTimestamp(e['occurred_at']) || !isOptId(e['emitted_by']) || !isId(e['session_id'])) return false;
  if (!chainOk(e['chain']) || !tokenOk(e['token'])) return false;
  if (!optional(e['intent'], (i) => isOptId(i['task_class']) && isOptText(i['statement']))) return false;
  const r = obj(e['request']);
  if (r === undefined || !isId(r['tool']) || !isId(r['action']) || !isText(r['resource']) || !isOptDigest(r['args_digest'])) return false;
  const d = obj(e['decision']);
  if (d === undefined || !isId(d['policy_id']) || !isOptId(d['policy_version']) || !isOptId(d['rule_id']) || !isOptId(d['pdp_id'])) return false;
  // `reasons` has a zod default ([]) but is required on the wire: absent, zod would add it, so ask zod.
  const reasons = d['reasons'];
  if (!Array.isArray(reasons) || reasons.length > LIMITS.list || !reasons.every(isText)) return false;
  if (!isOptCount(d['trust_version']) || !isOptCount(d['latency_us'])) return false;
  if (!optional(e['outcome'], (o) => isOptText(o['detail']))) return false;
  return optional(
    e['provenance'],
    (p) => isOptId(p['model']) && isOptDigest(p['prompt_digest']) && isOptDigest(p['output_digest']) && isOptDigest(p['tool_schema_digest']),
  );
};
