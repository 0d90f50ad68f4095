// A detection as an ordinary trustfold signal: `injection_detected` with the
// rule as detector and ids derived from (rule, tenant, session, the decision
// that fired it), so folding the same decisions again after a crash yields
// the same signal and event ids, which ingest, the fold and the audit treat
// as one. Pure.
import { createHash } from 'node:crypto';
import { LIMITS, type SEVERITIES } from '../../schemas/events.ts';
import type { Detection } from './rules.ts';

export type Severity = (typeof SEVERITIES)[number];

const uuidOf = (h: string): string =>
  `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;

/** The decision whose arrival fired the detection: the newest it names. */
const triggerOf = (d: Detection): string => d.event_ids[d.event_ids.length - 1] ?? '';

export const detectionIds = (d: Detection): { event_id: string; signal_id: string } => {
  const h = createHash('sha256').update(JSON.stringify(['trustfold-detect', d.detector, d.tenant_id, d.session_id, triggerOf(d)])).digest('hex');
  return { event_id: uuidOf(h), signal_id: `${d.detector}:${h.slice(0, 24)}` };
};

/** `detail`: the reason, then the decisions that caused it (as many as fit the field). */
export const detailOf = (d: Detection): string => {
  let s = `${d.reason ?? d.detector}; decisions: `;
  for (const [i, id] of d.event_ids.entries()) {
    const next = `${i === 0 ? '' : ','}${id}`;
    if (s.length + next.length > LIMITS.text - 16) return `${s} (+${d.event_ids.length - i} more)`;
    s += next;
  }
  return s;
};

/** The raw signal ingest's admission parses (emitted_by is stamped there from the caller's sub). */
export const signalOf = (d: Detection, severity: Severity): Record<string, unknown> => ({
  type: 'signal',
  kind: 'injection_detected',
  ...detectionIds(d),
  tenant_id: d.tenant_id,
  // 1 ms after the decision that fired it: a detection cannot be known before
  // that decision, so the trust change it causes must not count as in force
  // at that decision's own time (stale-pdp, explain). Derived, not the wall
  // clock, so a re-emission after a crash is the same event, not a conflict.
  occurred_at: new Date(Date.parse(d.at) + 1).toISOString(),
  session_id: d.session_id,
  severity,
  detector: d.detector,
  detail: detailOf(d),
});
