// What the PDP knew against what was true, in one line for the decision view:
// "PDP decided on v1 (trusted) while v3 (restricted) was in force, 2 versions
// / 74 s behind". From the explain route's `trust.pdp_used`, `trust.in_force`,
// `trust.lag` and `trust.finding` (services/query/explain.ts, story.ts).
import type { Tier } from './types.ts';

export type TrustSummary = { version: number; tier: Tier; updated_at: string; causes: { kind: string; ref: string }[]; freezes: { freeze_id: string }[] };

export type TrustLag =
  | { status: 'current'; pdp_version: number; in_force_version: number; versions_behind: 0; ms_behind: 0 }
  | { status: 'stale'; pdp_version: number; in_force_version: number; versions_behind: number; ms_behind: number; stale_since: string }
  | { status: 'ahead'; pdp_version: number; in_force_version: number | null; latest_recorded_version: number | null; recorded: boolean }
  | { status: 'unknown'; pdp_version: number | null; in_force_version: number | null };

export type TrustBasis = { pdp_used: TrustSummary | null; in_force: TrustSummary | null; lag: TrustLag; finding?: 'allowed_on_stale_trust' };

/** 74_000 → "74 s"; under 10 s with a tenth; minutes and hours past two of each. */
export const duration = (ms: number): string => {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
};

const version = (v: number, s: TrustSummary | null): string => `v${v}${s !== null && s.version === v ? ` (${s.tier})` : ''}`;
const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;

/** The sentence, and the tone it is shown in: `bad` when the PDP's view was behind. */
export const lagLine = (t: TrustBasis): { text: string; tone: 'ok' | 'bad' | 'note' } => {
  const lag = t.lag;
  switch (lag.status) {
    case 'current':
      return { text: `PDP decided on ${version(lag.pdp_version, t.pdp_used)}, the version in force at the time`, tone: 'ok' };
    case 'stale':
      return {
        text: `PDP decided on ${version(lag.pdp_version, t.pdp_used)} while ${version(lag.in_force_version, t.in_force)} was in force, ${plural(lag.versions_behind, 'version')} / ${duration(lag.ms_behind)} behind`,
        tone: 'bad',
      };
    case 'ahead':
      if (!lag.recorded) {
        return {
          text: `PDP decided on v${lag.pdp_version}, which no recorded transition of the session has${lag.latest_recorded_version !== null ? ` (latest recorded: v${lag.latest_recorded_version})` : ''}`,
          tone: 'note',
        };
      }
      return {
        text: `PDP decided on ${version(lag.pdp_version, t.pdp_used)}, recorded only after the call${lag.in_force_version !== null ? ` (${version(lag.in_force_version, t.in_force)} was in force at its time)` : ''}`,
        tone: 'note',
      };
    case 'unknown':
      return {
        text: lag.pdp_version === null ? 'The decision names no trust version: what the PDP knew is not recorded' : `PDP decided on v${lag.pdp_version}; no trust transition of the session is recorded`,
        tone: 'note',
      };
  }
};

export const FINDING_TEXT: Readonly<Record<'allowed_on_stale_trust', string>> = {
  allowed_on_stale_trust: 'Finding: allowed on stale trust — the state in force was stricter than the one the PDP decided on.',
};
