// The APIs the console reads, with the signed-in token. A 401 anywhere (an
// expired token, a revoked key) ends the sign-in and says why.
import { createSseParser, type SseEvent } from '../lib/sse.ts';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type StreamOptions = { signal: AbortSignal; onStatus(text: string, kind: 'info' | 'error' | 'busy'): void; onOpen?(): void };

export type Api = {
  get<T>(path: string, signal?: AbortSignal): Promise<T>;
  send<T>(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<T>;
  download(path: string, accept: string): Promise<Blob>;
  /**
   * Follows an SSE stream until `signal` aborts. A reconnect asks for the
   * snapshot again rather than resuming by Last-Event-ID: the states of a
   * snapshot all carry one id, so a stream cut in the middle of its snapshot
   * could not be resumed without losing the rest. Callers keep the newest
   * version per session, so states seen twice change nothing.
   */
  stream(path: string, onEvent: (e: SseEvent) => void, o: StreamOptions): Promise<void>;
};

const errorOf = async (res: Response): Promise<ApiError> => {
  let code = 'http_error';
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (typeof body.error?.code === 'string') code = body.error.code;
    if (typeof body.error?.message === 'string') message = body.error.message;
  } catch {
    // not our error body: the status line says enough
  }
  return new ApiError(res.status, code, message);
};

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

export const createApi = (token: () => string | undefined, onUnauthorized: (message: string) => void): Api => {
  const request = async (method: string, path: string, init: { body?: unknown; accept?: string; signal?: AbortSignal | undefined; headers?: Record<string, string> } = {}): Promise<Response> => {
    const headers: Record<string, string> = { authorization: `Bearer ${token() ?? ''}`, accept: init.accept ?? 'application/json', ...init.headers };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(path, {
      method,
      headers,
      cache: 'no-store',
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      ...(init.signal !== undefined ? { signal: init.signal } : {}),
    });
    if (res.ok) return res;
    const e = await errorOf(res);
    if (e.status === 401) onUnauthorized(e.message);
    throw e;
  };
  return {
    async get<T>(path: string, signal?: AbortSignal) {
      return (await (await request('GET', path, { signal })).json()) as T;
    },
    async send<T>(method: 'POST' | 'DELETE', path: string, body?: unknown) {
      return (await (await request(method, path, { body })).json()) as T;
    },
    async download(path, accept) {
      return (await request('GET', path, { accept })).blob();
    },
    async stream(path, onEvent, o) {
      while (!o.signal.aborted) {
        try {
          o.onStatus('connecting to the trust stream…', 'busy');
          const res = await request('GET', path, { accept: 'text/event-stream', signal: o.signal });
          const reader = res.body?.getReader();
          if (reader === undefined) throw new Error('the stream has no body');
          o.onOpen?.();
          const decoder = new TextDecoder();
          let expired = false;
          const parser = createSseParser((e) => {
            if (e.event === 'token_expired') expired = true;
            else onEvent(e);
          });
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            parser.feed(decoder.decode(value, { stream: true }));
            if (expired) break;
          }
          if (expired) {
            onUnauthorized('token expired');
            return;
          }
          if (!o.signal.aborted) o.onStatus('the trust stream ended; reconnecting…', 'busy');
        } catch (e) {
          if (o.signal.aborted) return;
          if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
            o.onStatus(`trust stream: ${e.message}`, 'error');
            return;
          }
          o.onStatus(`trust stream: ${e instanceof Error ? e.message : String(e)}; retrying in 2 s`, 'error');
        }
        await sleep(2_000, o.signal);
      }
    },
  };
};
