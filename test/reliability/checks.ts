// The closing checks the broker scenarios share: every acknowledged decision
// stored exactly once in ClickHouse, and the published trust equal to a fresh
// fold of what the topics hold. Each returns what it counted, for the FIGURE
// line, and fails naming what it found missing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import type { SessionTrust, TrustfoldEvent } from '../../schemas/events.ts';
import { createClickHouse } from '../../services/lib/clickhouse.ts';
import { waitUntil } from './harness.ts';
import { freshFold, latestTrust, readEvents, trustDifferences } from './topics.ts';

export type StoredDecisions = { stored: number; duplicatedRows: number; waitedMs: number };

/** Waits (up to `timeoutMs`) until every id in `decisions` is in the embedded ClickHouse under `dataDir`; counts rows stored twice. */
export const checkStoredDecisions = async (o: { dataDir: string; database: string; decisions: readonly string[]; timeoutMs: number }): Promise<StoredDecisions> => {
  const ch = createClickHouse({ kind: 'embedded', path: join(o.dataDir, 'clickhouse'), database: o.database });
  let stored = 0;
  let duplicatedRows = 0;
  try {
    const waitedMs = await waitUntil('the sink stored every acknowledged decision', async () => {
      const rs = await ch.query({ query: `SELECT toString(event_id) AS id FROM ${o.database}.decisions FINAL`, format: 'TabSeparated' });
      const rows = (await rs.text()).split('\n').filter((x) => x !== '');
      const ids = new Set(rows);
      duplicatedRows = rows.length - ids.size;
      stored = o.decisions.filter((id) => ids.has(id)).length;
      return stored === o.decisions.length;
    }, o.timeoutMs, 1_000).catch((e: unknown) => assert.fail(`${stored} of ${o.decisions.length} acknowledged decisions in ClickHouse: ${(e as Error).message}`));
    return { stored, duplicatedRows, waitedMs };
  } finally {
    await ch.close();
  }
};

export type TrustCheck = { finalEvents: TrustfoldEvent[]; expected: Map<string, SessionTrust>; published: Map<string, SessionTrust>; equalToFold: number };

/**
 * Waits (up to `timeoutMs`) until the latest state per session on `trustTopic`
 * equals a fresh fold of the event topics as they are now (sends refused while
 * a broker was down may have landed since), then counts the sessions equal to
 * the fold — counted, not assumed.
 */
export const checkTrustEqualsFold = async (kafka: Kafka, o: { eventTopics: string[]; trustTopic: string; timeoutMs: number }): Promise<TrustCheck> => {
  let finalEvents: TrustfoldEvent[] = [];
  let expected = new Map<string, SessionTrust>();
  let published = new Map<string, SessionTrust>();
  let diff: string[] = [];
  await waitUntil('trust = fresh fold', async () => {
    finalEvents = await readEvents(kafka, o.eventTopics);
    expected = freshFold(finalEvents);
    published = (await latestTrust(kafka, o.trustTopic)).latest;
    diff = trustDifferences(published, expected);
    return diff.length === 0;
  }, o.timeoutMs, 1_000).catch(() => {
    const show = (k: string): string => {
      const p = published.get(k);
      const e = expected.get(k);
      return `${k}: published v${p?.version} ${p?.tier} ${p?.caused_by}, fold v${e?.version} ${e?.tier} ${e?.caused_by}`;
    };
    assert.fail(`${diff.length} sessions differ from the fresh fold: ${diff.slice(0, 4).map(show).join(' | ')}`);
  });
  const differing = new Set(diff);
  const equalToFold = [...expected.keys()].filter((k) => published.has(k) && !differing.has(k)).length;
  return { finalEvents, expected, published, equalToFold };
};
