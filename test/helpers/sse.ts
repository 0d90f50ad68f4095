// A minimal server-sent-events reader for tests: frames and comments as they arrive.
export type SseFrame = { id?: string; event?: string; data?: string; comment?: string };

export type SseConnection = {
  status: number;
  frames: SseFrame[];
  /** Resolves once `pred` holds for the frames so far (checked as frames arrive). */
  until(pred: (frames: SseFrame[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
};

export const openSse = async (url: string, headers: Record<string, string>): Promise<SseConnection> => {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  const frames: SseFrame[] = [];
  const waiters = new Set<() => void>();
  if (res.body !== null && res.status === 200) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const f: SseFrame = {};
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) f.comment = line.slice(1).trim();
              else {
                const c = line.indexOf(':');
                const k = line.slice(0, c);
                const v = line.slice(c + 1).replace(/^ /, '');
                if (k === 'id' || k === 'event' || k === 'data') f[k] = v;
              }
            }
            frames.push(f);
            for (const w of waiters) w();
          }
        }
      } catch {
        // aborted
      }
    })();
  }
  return {
    status: res.status,
    frames,
    until: (pred, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pred(frames)) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`SSE condition not met after ${timeoutMs} ms; frames: ${JSON.stringify(frames)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    close: () => ac.abort(),
  };
};
