// Transactional delivery: a group's states (session-trust topic), the records
// the fold wrote (changelog topic) and the consumed offsets commit together in
// one Kafka transaction, or not at all.
import { offsetsByTopic, type Group, type OutMessage, type Sealed } from '../group.ts';
import { runTransaction } from '../transaction.ts';
import type { DeliveryContext, GroupDelivery } from './types.ts';

export const createTransactionalDelivery = (ctx: DeliveryContext): GroupDelivery => {
  const { groupId, timing } = ctx;

  const transact = async (g: Group, sealed: Sealed): Promise<void> => {
    const producer = ctx.producer();
    if (producer === undefined) throw new Error('projector not started');
    const topicMessages: { topic: string; messages: OutMessage[] }[] = [];
    if (sealed.states.length > 0) topicMessages.push({ topic: ctx.sessionTrustTopic, messages: sealed.states });
    const changelog = [...sealed.sessions, ...sealed.facts];
    if (changelog.length > 0) topicMessages.push({ topic: ctx.changelogTopic, messages: changelog });
    const offsets = offsetsByTopic(sealed.offsets);
    if (topicMessages.length === 0 && offsets.length === 0) return;
    const steps = await runTransaction(producer, groupId, topicMessages, offsets);
    timing.transactions++;
    timing.beginMs += steps.beginMs;
    timing.sendMs += steps.sendMs;
    timing.offsetsMs += steps.offsetsMs;
    timing.commitMs += steps.commitMs;
    timing.maxMs = Math.max(timing.maxMs, steps.beginMs + steps.sendMs + steps.offsetsMs + steps.commitMs);
    timing.batches += g.offsets.size;
    ctx.acknowledged(g);
  };

  return {
    deliver: transact,
    backlog: () => 0,
    full: () => false,
    tail: () => undefined,
    reset: () => undefined,
  };
};
