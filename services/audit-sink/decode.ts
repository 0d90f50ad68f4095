// The sink's decoder: Avro through the contract's codec, then only the checks
// Avro cannot make. The codec decodes with `validate: false`; a decision is
// then held to the contract's bounds by ./contract.ts (no zod), and anything
// that fails those checks — or any other record kind, which are few next to
// decisions — is parsed by the contract's zod schema, so a poison message is
// refused with the same code and the same field-naming message as the
// validating codec gives (schemas/codec.ts).
import { createCodec, zodIssues, type CodecKey, type DecodeError } from '../../schemas/codec.ts';
import { decisionEventSchema, sessionTrustSchema, signalSchemas, type SessionTrust, type TrustfoldEvent } from '../../schemas/events.ts';
import { err, ok, type Result } from '../../schemas/result.ts';
import type { z } from 'zod';
import { decisionWithinContract } from './contract.ts';

/** What the sink needs of a codec: ../../schemas/codec.ts's Codec satisfies it, with zod on every record. */
export type SinkDecoder = {
  decodeEvent(bytes: Buffer): Result<TrustfoldEvent, DecodeError>;
  decodeTrust(bytes: Buffer): Result<SessionTrust, DecodeError>;
};

const validators: Record<CodecKey, z.ZodType> = {
  decision: decisionEventSchema,
  session_trust: sessionTrustSchema,
  ...signalSchemas,
};

export const createSinkDecoder = (): SinkDecoder => {
  const avro = createCodec({ validate: false, compiledReaders: true });
  const checked = (bytes: Buffer): Result<{ key: CodecKey; value: unknown }, DecodeError> => {
    const r = avro.decode(bytes);
    if (!r.ok) return r;
    const { key, value } = r.value;
    if (key === 'decision' && decisionWithinContract(value)) return r;
    const parsed = validators[key].safeParse(value);
    if (parsed.success) return ok({ key, value: parsed.data });
    const errors = zodIssues(parsed.error);
    return err({ code: 'invalid_event', message: `decoded ${key} violates the contract: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, errors });
  };
  return {
    decodeEvent: (bytes) => {
      const r = checked(bytes);
      if (!r.ok) return r;
      if (r.value.key === 'session_trust') return err({ code: 'unknown_schema', message: 'expected an event, got a session-trust record' });
      return ok(r.value.value as TrustfoldEvent);
    },
    decodeTrust: (bytes) => {
      const r = checked(bytes);
      if (!r.ok) return r;
      if (r.value.key !== 'session_trust') return err({ code: 'unknown_schema', message: `expected a session-trust record, got ${r.value.key}` });
      return ok(r.value.value as SessionTrust);
    },
  };
};
