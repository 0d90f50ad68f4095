// Step-up approvals, honoured once. When the policy answers step_up the
// gateway issues an approval request (`step_up_requested`) bound to the call:
// tenant, session, the tool the agent called and the digest of its arguments.
// A human answers with `step_up_resolved` (through ingest, onto the signals
// topic, which the gateway reads from the moment it started). The agent retries
// the same call with `_meta["trustfold/step_up"]` = the request id; the retry
// is allowed once if the request was granted, is this call, and has not
// expired. Pure bookkeeping, no I/O: the clock is an argument.
//
// What it does not cover: a request lives in the memory of the gateway that
// issued it, so a retry that reaches another gateway instance, or this one
// after a restart, finds no request and is judged as a new call (a new step-up,
// never an allow). Single use is per gateway instance for the same reason.
import type { SignalEvent } from '../../schemas/events.ts';

/** What an approval request is bound to. */
export type StepUpCall = { tenant: string; session: string; tool: string; argsDigest: string };

export type StepUpRequest = StepUpCall & { requestId: string; scope: string; issuedAt: number };

export type StepUpResolution = { requestId: string; tenant: string; session: string; granted: boolean; approver?: string };

/** Why a presented request id does not allow this call. */
export type Unredeemable = 'unknown' | 'pending' | 'refused' | 'expired' | 'used' | 'other_call';

export type Redemption = { ok: true; request: StepUpRequest; approver?: string } | { ok: false; reason: Unredeemable; request?: StepUpRequest };

export type StepUps = {
  /** The gateway issued this request (its step_up_requested was stored). */
  requested(r: StepUpRequest): void;
  /** A step_up_resolved from the signals topic; one for a request this gateway did not issue, or for another session, is ignored. */
  resolved(r: StepUpResolution): void;
  /** Whether `requestId` allows `call` now; a grant is used up by the answer that says ok. */
  redeem(requestId: string, call: StepUpCall, nowMs: number): Redemption;
  readonly size: number;
};

export type StepUpOptions = {
  /** How long after it was issued a request can be redeemed. */
  ttlMs: number;
  /** Requests remembered at most (oldest forgotten first). Default 10,000. */
  maxRequests?: number;
};

type Entry = { request: StepUpRequest; resolution?: StepUpResolution; used: boolean };

export const createStepUps = (o: StepUpOptions): StepUps => {
  const max = o.maxRequests ?? 10_000;
  const entries = new Map<string, Entry>();
  return {
    requested(request) {
      entries.set(request.requestId, { request, used: false });
      while (entries.size > max) {
        const oldest = entries.keys().next();
        if (oldest.done === true) break;
        entries.delete(oldest.value);
      }
    },
    resolved(r) {
      const e = entries.get(r.requestId);
      if (e === undefined || e.used || e.resolution !== undefined) return; // the first answer stands
      if (e.request.tenant !== r.tenant || e.request.session !== r.session) return;
      e.resolution = r;
    },
    redeem(requestId, call, nowMs) {
      const e = entries.get(requestId);
      if (e === undefined) return { ok: false, reason: 'unknown' };
      const { request } = e;
      if (request.tenant !== call.tenant) return { ok: false, reason: 'unknown' }; // another tenant's id names nothing here
      if (request.session !== call.session || request.tool !== call.tool || request.argsDigest !== call.argsDigest) return { ok: false, reason: 'other_call', request };
      if (e.used) return { ok: false, reason: 'used', request };
      if (nowMs >= request.issuedAt + o.ttlMs) return { ok: false, reason: 'expired', request };
      if (e.resolution === undefined) return { ok: false, reason: 'pending', request };
      if (!e.resolution.granted) return { ok: false, reason: 'refused', request };
      e.used = true;
      return { ok: true, request, ...(e.resolution.approver !== undefined && { approver: e.resolution.approver }) };
    },
    get size() {
      return entries.size;
    },
  };
};

/** A step_up_resolved signal as a resolution, else undefined. */
export const resolutionOf = (s: SignalEvent): StepUpResolution | undefined =>
  s.kind === 'step_up_resolved'
    ? { requestId: s.request_id, tenant: s.tenant_id, session: s.session_id, granted: s.granted, ...(s.approver !== undefined && { approver: s.approver }) }
    : undefined;
