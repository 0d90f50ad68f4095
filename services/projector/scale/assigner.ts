// Scale-out: the partition assigner of the projector group. Co-partitioned —
// partition p of every input topic (decisions, signals) goes to one member, so
// a session's decisions and signals meet on one instance — and sticky: each
// member reports the partitions it owns in its subscription's userData, and
// the leader keeps them where they are as far as balance allows, so a
// failover moves only the dead member's partitions (kafkajs rebalances
// eagerly: every member rejoins, but a member keeps what it had).
import { AssignerProtocol, type GroupMemberAssignment, type PartitionAssigner } from 'kafkajs';

export const CO_PARTITIONED = 'TrustfoldCoPartitioned';

export type MemberClaim = { memberId: string; owned: readonly number[] };

/**
 * Pure: partitions 0..count-1 over the members, each within one of count /
 * members, keeping each member's claimed partitions first (members in id
 * order), then giving the free ones to the least loaded.
 */
export const assignCoPartitioned = (members: readonly MemberClaim[], count: number): Map<string, number[]> => {
  const out = new Map<string, number[]>();
  const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  if (sorted.length === 0) return out;
  const floor = Math.floor(count / sorted.length);
  let ceilSlots = count % sorted.length;
  const taken = new Set<number>();
  for (const m of sorted) {
    const cap = floor + (ceilSlots > 0 ? 1 : 0);
    const keep: number[] = [];
    for (const p of new Set(m.owned)) {
      if (keep.length >= cap) break;
      if (Number.isInteger(p) && p >= 0 && p < count && !taken.has(p)) {
        keep.push(p);
        taken.add(p);
      }
    }
    if (keep.length > floor) ceilSlots--;
    out.set(m.memberId, keep);
  }
  for (let p = 0; p < count; p++) {
    if (taken.has(p)) continue;
    let best: string | undefined;
    for (const m of sorted) if (best === undefined || (out.get(m.memberId)?.length ?? 0) < (out.get(best)?.length ?? 0)) best = m.memberId;
    if (best !== undefined) out.get(best)?.push(p);
  }
  for (const ps of out.values()) ps.sort((a, b) => a - b);
  return out;
};

/** What a member claims, from its subscription's userData (JSON list of partitions); nothing when unreadable. */
export const claimOf = (userData: Buffer | undefined | null): number[] => {
  if (userData === undefined || userData === null || userData.length === 0) return [];
  try {
    const v: unknown = JSON.parse(userData.toString('utf8'));
    return Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0) : [];
  } catch {
    return [];
  }
};

/**
 * The kafkajs assigner. `owned()` is read at every join (the partitions this
 * member holds now). Topics with fewer partitions than the first one get only
 * the partitions they have (co-partitioning needs equal counts: ensureTopics
 * creates them so).
 */
export const coPartitionedAssigner =
  (owned: () => readonly number[]): PartitionAssigner =>
  ({ cluster }) => ({
    name: CO_PARTITIONED,
    version: 0,
    async assign({ members, topics }): Promise<GroupMemberAssignment[]> {
      const counts = topics.map((t) => cluster.findTopicPartitionMetadata(t).length);
      const count = Math.max(0, ...counts);
      const claims = members.map((m) => ({ memberId: m.memberId, owned: claimOf(AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.userData) }));
      const plan = assignCoPartitioned(claims, count);
      return members.map(({ memberId }) => {
        const ps = plan.get(memberId) ?? [];
        const assignment: Record<string, number[]> = {};
        topics.forEach((t, i) => (assignment[t] = ps.filter((p) => p < (counts[i] ?? 0))));
        return { memberId, memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment, userData: Buffer.alloc(0) }) };
      });
    },
    protocol({ topics }) {
      return { name: CO_PARTITIONED, metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.from(JSON.stringify(owned())) }) };
    },
  });
