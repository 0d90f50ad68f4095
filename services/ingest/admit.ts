// Which events of a request go to Kafka: parse each with zod, check its tenant
// against the caller's, stamp `emitted_by`, and skip ids already seen in this
// request or recently acknowledged by this instance. Pure but for `recent`.
import { parseEvent } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import type { FieldError } from '../../schemas/result.ts';
import { canAccessTenant, type Caller } from '../lib/auth.ts';
import type { RecentIds } from './recent-ids.ts';

export type Rejection = { index: number; event_id?: string; errors: FieldError[] };
export type RejectReason = 'invalid' | 'tenant_mismatch';

export type Admission = {
  events: TrustfoldEvent[];
  /** Position in the request of each entry of `events`. */
  indices: number[];
  rejected: Rejection[];
  reasons: RejectReason[];
  duplicatesInRequest: number;
  duplicatesRecent: number;
};

const eventIdOf = (raw: unknown): string | undefined => {
  if (raw === null || typeof raw !== 'object') return undefined;
  const id = (raw as { event_id?: unknown }).event_id;
  return typeof id === 'string' && id.length <= 256 ? id : undefined;
};

export const admitEvents = (raw: readonly unknown[], caller: Caller, recent: RecentIds): Admission => {
  const out: Admission = { events: [], indices: [], rejected: [], reasons: [], duplicatesInRequest: 0, duplicatesRecent: 0 };
  const inRequest = new Set<string>();
  for (let index = 0; index < raw.length; index++) {
    const item = raw[index];
    const parsed = parseEvent(item);
    if (!parsed.ok) {
      const event_id = eventIdOf(item);
      out.rejected.push(event_id === undefined ? { index, errors: parsed.error } : { index, event_id, errors: parsed.error });
      out.reasons.push('invalid');
      continue;
    }
    const e = parsed.value;
    if (!canAccessTenant(caller, e.tenant_id)) {
      out.rejected.push({
        index,
        event_id: e.event_id,
        errors: [{ path: 'tenant_id', message: `the token may write tenant "${caller.tenant}" only, not "${e.tenant_id}"` }],
      });
      out.reasons.push('tenant_mismatch');
      continue;
    }
    if (inRequest.has(e.event_id)) {
      out.duplicatesInRequest++;
      continue;
    }
    inRequest.add(e.event_id);
    if (recent.has(e.event_id)) {
      out.duplicatesRecent++;
      continue;
    }
    e.emitted_by = caller.sub;
    out.events.push(e);
    out.indices.push(index);
  }
  return out;
};
