// Kafka record keys: part of the wire contract (compaction and partitioning
// depend on them), so they live with the schemas. Pure: no Kafka client here.
import type { TrustfoldEvent } from './events.ts';

/**
 * Keys are unambiguous tuples, so tenant "a/b" + session "c" never collides
 * with tenant "a" + session "b/c" — on a compacted topic a collision would
 * overwrite another session's state.
 */
export const tupleKey = (...parts: string[]): string => JSON.stringify(parts);

export const sessionKey = (tenantId: string, sessionId: string): string => tupleKey(tenantId, 'session', sessionId);

/**
 * Every event of one session shares a key, so it stays in order on one
 * partition. Signals that address a user or a freeze are keyed by that
 * subject; the projector broadcasts those to every instance (README, "Scaling").
 */
export const partitionKeyOf = (e: TrustfoldEvent): string => {
  if (e.type === 'decision') return sessionKey(e.tenant_id, e.session_id);
  switch (e.kind) {
    case 'role_revoked':
    case 'role_granted':
    case 'consent_revoked':
    case 'consent_granted':
      return tupleKey(e.tenant_id, 'user', e.user_id);
    case 'change_freeze_raised':
    case 'change_freeze_lifted':
      return tupleKey(e.tenant_id, 'freeze', e.freeze_id);
    case 'token_issued':
      return e.session_id !== undefined ? sessionKey(e.tenant_id, e.session_id) : tupleKey(e.tenant_id, 'user', e.user_id);
    default:
      return sessionKey(e.tenant_id, e.session_id);
  }
};

