// An audit log held in memory for unit tests: the store surface the routes
// and the prover read (leaves, stored nodes, checkpoints) and the records the
// reader returns, built through the same leaf rule, frontier and signer as
// the writer.
import type { LeafInput, LeafKind } from '../../schemas/audit-log/leaf.ts';
import type { App } from '../../services/lib/http.ts';
import { leafHashOf } from '../../schemas/audit-log/leaf.ts';
import { appendLeaf, emptyFrontier, frontierRoot, rootOfLeaves, type Frontier, type Hash, type NodeId } from '../../schemas/audit-log/merkle.ts';
import { formatCheckpoint, generateSignerKey, parseSignerKey, parseVerifierKey, signNote, verifierKey, type Signer, type Verifier } from '../../services/audit-log/note.ts';
import { leafKey } from '../../schemas/audit-log/records.ts';
import type { StoredCheckpoint, StoredLeaf } from '../../services/audit-log/store.ts';
import { originOf } from '../../services/audit-log/writer.ts';

export const ORIGIN_PREFIX = 'trustfold.test/audit';

export const testSigner = (name = 'trustfold-test'): { signer: Signer; verifier: Verifier; key: string } => {
  const s = parseSignerKey(generateSignerKey(name));
  if (!s.ok) throw new Error(s.reason);
  const key = verifierKey(s.signer);
  const v = parseVerifierKey(key);
  if (!v.ok) throw new Error(v.reason);
  return { signer: s.signer, verifier: v.verifier, key };
};

export const decisionLeaf = (tenant: string, eventId: string, at: { topic: string; partition: number; offset: number }, extra: Record<string, string> = {}): LeafInput => ({
  kind: 'decision',
  kafka: { topic: at.topic, partition: at.partition, offset: String(at.offset) },
  record: { type: 'decision', tenant_id: tenant, event_id: eventId, session_id: 'S-9', decision: { effect: 'deny', policy_id: 'P-risk-43' }, ...extra },
});

type MemLog = { leaves: StoredLeaf[]; inputs: LeafInput[]; frontier: Frontier };

export const createMemoryLog = (signer: Signer) => {
  const logs = new Map<string, MemLog>();
  const checkpoints: StoredCheckpoint[] = [];
  const logOf = (log: string): MemLog => {
    let l = logs.get(log);
    if (l === undefined) {
      l = { leaves: [], inputs: [], frontier: emptyFrontier() };
      logs.set(log, l);
    }
    return l;
  };

  const append = (input: LeafInput): StoredLeaf & { log: string } => {
    const log = `${input.kafka.topic}/${input.kafka.partition}`;
    const l = logOf(log);
    const hash = leafHashOf(input);
    const key = leafKey(input);
    const leaf: StoredLeaf = { index: l.frontier.size, hash, tenant: key.tenant, kind: input.kind, ref: key.ref, offset: input.kafka.offset };
    l.leaves.push(leaf);
    l.inputs.push(input);
    l.frontier = appendLeaf(l.frontier, hash, () => undefined);
    return { ...leaf, log };
  };

  const sign = (log: string): StoredCheckpoint => {
    const l = logOf(log);
    const origin = originOf(ORIGIN_PREFIX, log);
    const root = frontierRoot(l.frontier);
    const c: StoredCheckpoint = { log, origin, size: l.frontier.size, root, note: signNote(formatCheckpoint({ origin, size: l.frontier.size, root }), signer), signedAt: '2026-12-01T00:00:00.000Z' };
    checkpoints.push(c);
    return c;
  };

  let nodeReads = 0;
  const store = {
    nodes: async (log: string, ids: readonly NodeId[]): Promise<Map<string, Hash>> => {
      const hashes = logOf(log).leaves.map((x) => x.hash);
      nodeReads++;
      return new Map(ids.map((id) => [`${id.level}/${id.index}`, rootOfLeaves(hashes.slice(id.index * 2 ** id.level, (id.index + 1) * 2 ** id.level))]));
    },
    nodeFrom: (m: Map<string, Hash>) => (id: NodeId): Hash => {
      const h = m.get(`${id.level}/${id.index}`);
      if (h === undefined) throw new Error(`node ${id.level}/${id.index} was not fetched`);
      return h;
    },
    findLeaves: async (tenant: string | undefined, kind: LeafKind, ref: string) =>
      [...logs.entries()].flatMap(([log, l]) => l.leaves.filter((x) => x.kind === kind && x.ref === ref && (tenant === undefined || x.tenant === tenant)).map((x) => ({ ...x, log }))),
    latestCheckpoints: async (log?: string) => {
      const latest = new Map<string, StoredCheckpoint>();
      for (const c of checkpoints) if ((log === undefined || c.log === log) && (latest.get(c.log)?.size ?? -1) < c.size) latest.set(c.log, c);
      return [...latest.values()].sort((a, b) => a.log.localeCompare(b.log));
    },
    checkpointAt: async (log: string, size: number) => checkpoints.find((c) => c.log === log && c.size === size),
  };
  const reader = {
    recordAt: async (kind: LeafKind, at: { topic: string; partition: number; offset: string }, tenant: string | undefined): Promise<LeafInput | undefined> =>
      logs.get(`${at.topic}/${at.partition}`)?.inputs.find((i) => i.kind === kind && i.kafka.offset === at.offset && (tenant === undefined || leafKey(i).tenant === tenant)),
  };
  return { append, sign, store, reader, leavesOf: (log: string) => logOf(log).leaves, nodeReads: () => nodeReads };
};

/** A fetch that answers from an app through inject(), for CLI tests. */
export const injectFetch = (app: App): typeof fetch =>
  (async (url: URL, init: RequestInit) => {
    const res = await app.inject({ method: init.method as 'GET', url: `${url.pathname}${url.search}`, headers: init.headers as Record<string, string>, ...(init.body !== undefined ? { payload: String(init.body) } : {}) });
    return new Response(res.body, { status: res.statusCode, headers: { 'content-type': String(res.headers['content-type'] ?? 'application/json') } });
  }) as unknown as typeof fetch;
