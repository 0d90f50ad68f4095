// What a stream has to send and has not settled yet, in order, and the Kafka
// position that may be committed: the offset of the first trust record whose
// SETs are not all settled (delivered, refused for good, or acknowledged by a
// poller). Pure bookkeeping, no I/O: the caller commits what `settle` returns.
export type OutboxItem = {
  jti: string;
  set: string;
  eventType: string;
  /** The trust record it came from; none for verification and stream-updated events. */
  source?: { partition: number; offset: bigint };
  /** When the thing it reports happened, for the delivery lag (ms): the trust record's Kafka timestamp, a control event's creation. */
  createdAt?: number;
  /** When a poller was last handed it (ms), for re-delivery of what it did not acknowledge. */
  handedAt?: number;
};

type Slot = { offset: bigint; open: number };

export type Commit = { partition: number; offset: bigint };

export type Outbox = {
  /** Registers a consumed trust record with the items it produced (possibly none). Returns a commit when nothing is open before it. */
  add(source: { partition: number; offset: bigint }, items: Omit<OutboxItem, 'source'>[]): Commit | undefined;
  /** An item not tied to the trust topic (verification, stream-updated). */
  addFree(item: Omit<OutboxItem, 'source'>): void;
  /** Items in order. */
  items(): readonly OutboxItem[];
  size(): number;
  /** Settles by jti; returns the commits this allows (one per partition that moved). */
  settle(jtis: Iterable<string>): Commit[];
  /** Drops everything but what `keep` holds on to (a disabled stream holds nothing but the news that it is disabled). */
  clear(keep?: (item: OutboxItem) => boolean): Commit[];
};

export const createOutbox = (): Outbox => {
  const queue: OutboxItem[] = [];
  const slots = new Map<number, Slot[]>();
  const committed = new Map<number, bigint>();

  const advance = (partition: number): Commit | undefined => {
    const list = slots.get(partition) ?? [];
    let next: bigint | undefined;
    while (list.length > 0 && list[0]!.open === 0) next = list.shift()!.offset + 1n;
    if (next === undefined || committed.get(partition) === next) return undefined;
    committed.set(partition, next);
    return { partition, offset: next };
  };

  const settleOne = (item: OutboxItem, touched: Set<number>): void => {
    if (item.source === undefined) return;
    const slot = slots.get(item.source.partition)?.find((s) => s.offset === item.source?.offset);
    if (slot !== undefined) slot.open--;
    touched.add(item.source.partition);
  };

  const commitsOf = (touched: Set<number>): Commit[] => [...touched].map(advance).filter((c): c is Commit => c !== undefined);

  return {
    add(source, items) {
      let list = slots.get(source.partition);
      if (list === undefined) slots.set(source.partition, (list = []));
      list.push({ offset: source.offset, open: items.length });
      for (const i of items) queue.push({ ...i, source });
      return items.length === 0 ? advance(source.partition) : undefined;
    },
    addFree(item) {
      queue.push(item);
    },
    items: () => queue,
    size: () => queue.length,
    settle(jtis) {
      const wanted = new Set(jtis);
      const touched = new Set<number>();
      for (let i = queue.length - 1; i >= 0; i--) {
        const item = queue[i]!;
        if (!wanted.has(item.jti)) continue;
        queue.splice(i, 1);
        settleOne(item, touched);
      }
      return commitsOf(touched);
    },
    clear(keep) {
      const touched = new Set<number>();
      const kept: OutboxItem[] = [];
      for (const item of queue.splice(0)) {
        if (item.source === undefined && keep?.(item) === true) kept.push(item);
        else settleOne(item, touched);
      }
      queue.push(...kept);
      return commitsOf(touched);
    },
  };
};
