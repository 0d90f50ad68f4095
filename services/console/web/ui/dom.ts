// Elements built from data with text nodes and attributes only: nothing the
// server or a token says is ever parsed as HTML.
import { localText, utcText } from '../lib/format.ts';

export type Child = Node | string | number | null | undefined | false;
type Handlers = { [K in keyof HTMLElementEventMap]?: (e: HTMLElementEventMap[K]) => void };
export type Props = { class?: string; attrs?: Record<string, string | undefined | false>; on?: Handlers };

const append = (el: Element, children: readonly (Child | readonly Child[])[]): void => {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
};

const setAttrs = (el: Element, attrs: Record<string, string | number | undefined | false>): void => {
  for (const [k, v] of Object.entries(attrs)) {
    // Handlers are functions given in `on`, never attribute text.
    if (/^on/i.test(k)) throw new Error(`attribute ${k} is not allowed`);
    if (v !== undefined && v !== false) el.setAttribute(k, String(v));
  }
};

/** Replaces an element's children; blanks (null, false, undefined) are skipped. */
export const fill = (el: Element, ...children: (Child | readonly Child[])[]): void => {
  el.replaceChildren();
  append(el, children);
};

export const h = <K extends keyof HTMLElementTagNameMap>(tag: K, props: Props | null = null, ...children: (Child | readonly Child[])[]): HTMLElementTagNameMap[K] => {
  const el = document.createElement(tag);
  if (props?.class !== undefined) el.className = props.class;
  if (props?.attrs !== undefined) setAttrs(el, props.attrs);
  for (const [type, fn] of Object.entries(props?.on ?? {})) el.addEventListener(type, fn as EventListener);
  append(el, children);
  return el;
};

const SVG_NS = 'http://www.w3.org/2000/svg';
export const svg = <K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number | undefined | false> = {}, ...children: (Child | readonly Child[])[]): SVGElementTagNameMap[K] => {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
};

export const link = (href: string, text: string, cls?: string): HTMLAnchorElement => h('a', { attrs: { href }, ...(cls !== undefined ? { class: cls } : {}) }, text);

/** A time in UTC, with the reader's local time beside it. */
export const timeEl = (iso: string | undefined): HTMLElement | string => {
  if (iso === undefined || iso === '') return '—';
  return h('time', { attrs: { datetime: iso, title: `${utcText(iso)} UTC` } }, `${utcText(iso)} UTC`, h('small', { class: 'local' }, localText(iso)));
};

export const tierBadge = (tier: string | null | undefined): HTMLElement =>
  h('span', { class: `tier tier-${tier ?? 'unknown'}`, attrs: { 'data-tier': tier ?? 'unknown' } }, tier ?? 'unknown');

export const effectBadge = (effect: string): HTMLElement => h('span', { class: `effect effect-${effect}` }, effect.replace('_', '-'));

export const field = (label: string, input: HTMLElement, hint?: string): HTMLLabelElement =>
  h('label', { class: 'field' }, h('span', null, label), input, hint !== undefined ? h('small', null, hint) : null);

export const input = (name: string, value = '', attrs: Record<string, string | undefined> = {}): HTMLInputElement =>
  h('input', { attrs: { name, value, autocomplete: 'off', spellcheck: 'false', ...attrs } });

export const select = (name: string, options: readonly (readonly [string, string])[], value = ''): HTMLSelectElement =>
  h('select', { attrs: { name } }, options.map(([v, text]) => h('option', { attrs: { value: v, selected: v === value ? 'selected' : undefined } }, text)));

/** A line that says what is happening or what went wrong, for screen readers too. */
export const statusLine = (): { el: HTMLElement; set(text: string, kind?: 'info' | 'error' | 'busy'): void } => {
  const el = h('p', { class: 'status', attrs: { role: 'status', 'aria-live': 'polite' } });
  return {
    el,
    set(text, kind = 'info') {
      el.className = `status ${kind}`;
      el.textContent = text;
    },
  };
};

export const table = (headers: readonly string[], body: HTMLTableSectionElement, cls = ''): HTMLElement =>
  h('div', { class: 'table-wrap' }, h('table', { class: cls }, h('thead', null, h('tr', null, headers.map((t) => h('th', { attrs: { scope: 'col' } }, t)))), body));

/** Raw JSON for the curious: shown as text. */
export const rawJson = (value: unknown, summary = 'Raw record'): HTMLElement =>
  h('details', { class: 'raw' }, h('summary', null, summary), h('pre', null, JSON.stringify(value, null, 2)));
