// Whether a freeze listed on a session applies to one call. The projector lists
// a freeze on every session of the tenant it could reach (matching the agent
// when known); the resource and the action are properties of each call, so
// they are matched here, at decision time.
import type { ActiveFreeze, SessionTrust } from '../../schemas/events.ts';

export type CallFacts = { action: string; resource: string; agent?: string | undefined };

/** Every field the scope sets must match; a scope with no fields freezes everything in the tenant. */
export const freezeMatchesCall = (freeze: Pick<ActiveFreeze, 'scope'>, call: CallFacts): boolean => {
  const { resource_prefix, actions, agent_id } = freeze.scope;
  if (resource_prefix !== undefined && !call.resource.startsWith(resource_prefix)) return false;
  if (actions !== undefined && !actions.includes(call.action)) return false;
  if (agent_id !== undefined && call.agent !== undefined && agent_id !== call.agent) return false;
  return true;
};

/** The freezes of a session's state that apply to this call. */
export const matchingFreezes = (state: Pick<SessionTrust, 'freezes' | 'agent'>, call: CallFacts): ActiveFreeze[] =>
  state.freezes.filter((f) => freezeMatchesCall(f, { ...call, agent: call.agent ?? state.agent }));
