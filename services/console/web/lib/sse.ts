// Server-sent events from a fetch body (EventSource cannot send a bearer
// header): the text/event-stream framing, chunk by chunk.
export type SseEvent = { id: string | undefined; event: string; data: string };

export type SseParser = { feed(chunk: string): void };

export const createSseParser = (onEvent: (e: SseEvent) => void): SseParser => {
  let buffer = '';
  let lastId: string | undefined;
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  const line = (l: string): void => {
    if (l === '') {
      if (data.length > 0) {
        if (id !== undefined) lastId = id;
        onEvent({ id: id ?? lastId, event: event === '' ? 'message' : event, data: data.join('\n') });
      }
      data = [];
      event = '';
      id = undefined;
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    const value = colon < 0 ? '' : l.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
  };
  return {
    feed(chunk) {
      buffer += chunk;
      // One pass over the chunk, one slice at the end: a snapshot of 10 000
      // states arrives in large chunks, and cutting the buffer at every line
      // would copy it over and over.
      const eol = /\r\n|\r|\n/g;
      let start = 0;
      for (let m = eol.exec(buffer); m !== null; m = eol.exec(buffer)) {
        // A lone \r at the end may be the first half of \r\n: wait for more.
        if (m[0] === '\r' && m.index === buffer.length - 1) break;
        line(buffer.slice(start, m.index));
        start = m.index + m[0].length;
      }
      buffer = buffer.slice(start);
    },
  };
};
