// Counters both adapters share. Looked up before created, so the Cerbos role
// and the OPA routes can live in one process and one registry.
import { Counter, type Registry } from 'prom-client';
import type { Engine, Mapped } from './mapping.ts';

export type AdapterMetrics = {
  decisions: Counter<'engine'>;
  partial: Counter<'engine'>;
  unmapped: Counter<'engine' | 'field'>;
  entries: Counter<'engine' | 'result'>;
  deadLetters: Counter<'engine' | 'reason'>;
  /** Counts what a batch of mapped decisions says about the mapping. */
  observe(engine: Engine, mapped: readonly Mapped[]): void;
};

const counter = <L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> =>
  (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });

export const adapterMetrics = (registry: Registry): AdapterMetrics => {
  const decisions = counter(registry, 'trustfold_adapter_decisions_total', 'Decisions produced from policy-engine logs', ['engine'] as const);
  const partial = counter(
    registry,
    'trustfold_adapter_partial_decisions_total',
    'Decisions stored with fields the mapping could not find (listed in reasons as trustfold:unmapped=...)',
    ['engine'] as const,
  );
  const unmapped = counter(registry, 'trustfold_adapter_unmapped_fields_total', 'Fields the mapping could not find, by field', ['engine', 'field'] as const);
  const entries = counter(registry, 'trustfold_adapter_entries_total', 'Policy-engine log entries seen, by what became of them', ['engine', 'result'] as const);
  const deadLetters = counter(registry, 'trustfold_adapter_dead_letters_total', 'Log entries set aside on the dead-letter topic, by reason', ['engine', 'reason'] as const);
  return {
    decisions,
    partial,
    unmapped,
    entries,
    deadLetters,
    observe(engine, mapped) {
      decisions.inc({ engine }, mapped.length);
      for (const m of mapped) {
        if (m.missing.length === 0) continue;
        partial.inc({ engine });
        for (const field of m.missing) unmapped.inc({ engine, field });
      }
    },
  };
};
