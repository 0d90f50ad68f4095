// Polling for a scenario's condition. A probe that asks Kafka (an admin's
// offsets, a group's description) can fail once on a loaded host — a request
// timeout, kafkajs's "Broker not connected" race after a connection dropped —
// while the system under test is fine; that failure is not the scenario's
// verdict. Such an error counts as "not yet" for at most `probeErrorGraceMs`
// in a row (then it is thrown, with what was awaited); any other error is
// thrown at once, and the condition itself is never relaxed.
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A probe error that says the broker could not be asked this time (kafkajs's own errors, and its pool's "Broker not connected"). */
export const isTransientProbeError = (e: unknown): boolean => e instanceof Error && (e.name.startsWith('KafkaJS') || e.message === 'Broker not connected');

export const waitUntil = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100, probeErrorGraceMs = 60_000): Promise<number> => {
  const started = Date.now();
  let failingSince: number | undefined;
  let lastError: unknown;
  for (;;) {
    let done = false;
    try {
      done = await cond();
      failingSince = undefined;
    } catch (e) {
      if (!isTransientProbeError(e)) throw e;
      lastError = e;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > probeErrorGraceMs) {
        throw new Error(`waiting for ${what}: the probe failed for ${Date.now() - failingSince} ms in a row: ${(e as Error).message}`, { cause: e });
      }
    }
    if (done) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      const probe = failingSince !== undefined && lastError instanceof Error ? ` (the probe failing: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${probe}`);
    }
    await sleep(everyMs);
  }
};
