// The one interface both delivery modes implement (README, "Delivery modes"):
// the runtime seals a group and hands it over; the mode writes it.
import type { Producer } from 'kafkajs';
import type { Logger } from '../../lib/log.ts';
import type { Group, Sealed } from '../group.ts';
import type { TransactionTiming } from '../timing.ts';

export type DeliveryContext = {
  groupId: string;
  sessionTrustTopic: string;
  changelogTopic: string;
  logger: Logger;
  timing: TransactionTiming;
  /** The states' producer (transactional mode: the transactional one); undefined while torn down. */
  producer: () => Producer | undefined;
  /** A group's states were acknowledged by the session-trust topic. */
  acknowledged: (g: Group) => void;
};

export type GroupDelivery = {
  /**
   * Starts writing a group sealed at this instant. Resolves when the next
   * group may start (transactional: this one committed; idempotent: its states
   * were published or failed to be — a failure is reported by the mode
   * itself); rejects when the group's transaction failed.
   */
  deliver(g: Group, sealed: Sealed): Promise<void>;
  /** Whether delivered groups still wait for work behind them (idempotent: recording). */
  backlog(): number;
  /** Whether that backlog is at its bound: no new group starts until it shrinks. */
  full(): boolean;
  /** The work running behind the delivered groups, if any (idempotent: the recorder). */
  tail(): Promise<void> | undefined;
  /** Forgets the backlog (after a teardown). */
  reset(): void;
};
