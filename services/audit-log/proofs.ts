// Inclusion and consistency proofs of a stored log: the ranges RFC 9162 names
// (./merkle.ts), each split into its perfect subtrees, every stored hash they
// need fetched in one query (./store.ts), then hashed. O(log n) rows a proof.
import { consistencyRanges, hashRange, inclusionRanges, perfectNodes, type Hash, type NodeId, type Range } from '../../schemas/audit-log/merkle.ts';
import type { AuditLogStore } from './store.ts';

export type NodeSource = Pick<AuditLogStore, 'nodes' | 'nodeFrom'>;

export const createProver = (store: NodeSource) => {
  const hashesOf = async (log: string, ranges: readonly Range[]): Promise<Hash[]> => {
    const ids: NodeId[] = ranges.flatMap(perfectNodes);
    const read = store.nodeFrom(await store.nodes(log, ids));
    return ranges.map((r) => hashRange(r, read));
  };
  return {
    /** The audit path of leaf `index` in the tree of the first `size` leaves. */
    inclusion: (log: string, index: number, size: number): Promise<Hash[]> => hashesOf(log, inclusionRanges(index, size)),
    /** The proof that the tree of `from` leaves is a prefix of the tree of `to` (empty when equal). */
    consistency: (log: string, from: number, to: number): Promise<Hash[]> => hashesOf(log, consistencyRanges(from, to)),
    /** The root of the first `size` leaves. */
    root: async (log: string, size: number): Promise<Hash> => (await hashesOf(log, [{ begin: 0, end: size }]))[0] as Hash,
  };
};

export type Prover = ReturnType<typeof createProver>;
