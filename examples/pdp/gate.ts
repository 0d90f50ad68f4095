// An example PDP: a tiny `tools/call` gate in front of an agent's tools,
// without the protocol. The real MCP gateway is `trustfold gate`
// (services/gate/); both judge with the same built-in rules
// (services/gate/rules.ts): trust unknown → destructive calls denied (fail
// closed); revoked → deny; destructive and tier ≥ restricted → deny;
// destructive under a matching freeze → deny; else allow. One decision event
// is emitted carrying the `trust_version` it used, so the audit can say which
// trust state the call met.
import { randomUUID } from 'node:crypto';
import type { Producer } from 'kafkajs';
import { createCodec, type Codec } from '../../schemas/codec.ts';
import type { ChainLink, DecisionEvent } from '../../schemas/events.ts';
import { DEFAULT_RULES, DESTRUCTIVE_ACTIONS, judgeCall, type Verdict } from '../../services/gate/rules.ts';
import type { Topics } from '../../services/lib/config.ts';
import { partitionKeyOf } from '../../services/lib/kafka.ts';
import type { TrustLookup } from '../../services/pdp-client/trust-view.ts';

export { DESTRUCTIVE_ACTIONS, type Verdict };

export type ToolCall = {
  tenant_id: string;
  session_id: string;
  tool: string;
  action: string;
  resource: string;
  /** Hashed into the decision's args_digest; never stored in clear. */
  args?: unknown;
  chain?: ChainLink[];
};

/** The decision itself: pure, from the trust lookup and the call. */
export const judge = (lookup: TrustLookup, call: ToolCall, destructive: ReadonlySet<string> = DESTRUCTIVE_ACTIONS): Verdict =>
  judgeCall(lookup, call, { ...DEFAULT_RULES, destructiveActions: destructive });

export type GateDeps = {
  view: { get(sessionId: string, tenantId: string): TrustLookup };
  emit: (decision: DecisionEvent) => Promise<void>;
  pdpId?: string;
  policy?: { id: string; version: string };
  destructive?: ReadonlySet<string>;
  now?: () => Date;
  newId?: () => string;
  digest?: (args: unknown) => string;
};

export type GateResult = Verdict & { decision: DecisionEvent };

export const createPdpGate = (deps: GateDeps) => {
  const now = deps.now ?? (() => new Date());
  const newId = deps.newId ?? randomUUID;
  const policy = deps.policy ?? { id: 'P-example-pdp', version: '1' };
  return {
    async callTool(call: ToolCall): Promise<GateResult> {
      const started = process.hrtime.bigint();
      const lookup = deps.view.get(call.session_id, call.tenant_id);
      const verdict = judge(lookup, call, deps.destructive);
      const chain: ChainLink[] =
        call.chain ??
        (lookup.known
          ? [
              ...(lookup.state.delegator !== undefined ? [{ kind: 'human' as const, id: lookup.state.delegator }] : []),
              { kind: 'agent' as const, id: lookup.state.agent ?? 'unknown-agent' },
            ]
          : [{ kind: 'agent', id: 'unknown-agent' }]);
      const decision: DecisionEvent = {
        type: 'decision',
        event_id: newId(),
        tenant_id: call.tenant_id,
        occurred_at: now().toISOString(),
        session_id: call.session_id,
        chain,
        request: {
          tool: call.tool,
          action: call.action,
          resource: call.resource,
          ...(call.args !== undefined && deps.digest !== undefined && { args_digest: deps.digest(call.args) }),
        },
        decision: {
          effect: verdict.effect,
          policy_id: policy.id,
          policy_version: policy.version,
          rule_id: verdict.rule_id,
          reasons: verdict.reasons,
          ...(verdict.trust_version !== undefined && { trust_version: verdict.trust_version }),
          pdp_id: deps.pdpId ?? 'pdp-example',
          latency_us: Number((process.hrtime.bigint() - started) / 1000n),
        },
        outcome: { status: verdict.effect === 'allow' ? 'executed' : 'blocked' },
      };
      await deps.emit(decision);
      return { ...verdict, decision };
    },
  };
};

/** Emits decisions straight to Kafka's decisions topic, Avro-encoded like every producer's. */
export const kafkaDecisionEmitter =
  (producer: Producer, topics: Pick<Topics, 'decisions'>, codec: Codec = createCodec()) =>
  async (d: DecisionEvent): Promise<void> => {
    await producer.send({ topic: topics.decisions, acks: -1, messages: [{ key: partitionKeyOf(d), value: codec.encodeEvent(d) }] });
  };

/** MCP JSON-RPC `tools/call` → the gate; a denied call answers with `isError` and the reasons, as MCP tools do. */
export const handleMcpToolsCall = async (
  gate: ReturnType<typeof createPdpGate>,
  ctx: { tenant_id: string; session_id: string; tool: string },
  req: { jsonrpc: '2.0'; id: number | string; method: string; params: { name: string; arguments?: Record<string, unknown> } },
): Promise<{ jsonrpc: '2.0'; id: number | string; result: { content: { type: 'text'; text: string }[]; isError: boolean; _meta: { trust_version?: number; rule_id: string } } }> => {
  const args = req.params.arguments ?? {};
  const resource = typeof args['resource'] === 'string' ? args['resource'] : '';
  const r = await gate.callTool({ ...ctx, action: req.params.name, resource, args });
  const text = r.effect === 'allow' ? `allowed: ${req.params.name} ${resource}` : `${r.effect}: ${r.reasons.join('; ')}`;
  return {
    jsonrpc: '2.0',
    id: req.id,
    result: {
      content: [{ type: 'text', text }],
      isError: r.effect !== 'allow',
      _meta: { rule_id: r.rule_id, ...(r.trust_version !== undefined && { trust_version: r.trust_version }) },
    },
  };
};
