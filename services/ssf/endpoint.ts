// Where a push stream may send: a receiver names its `endpoint_url`, and
// trustfold then makes POST requests there from inside its own network — a
// server-side request forgery vector if any URL were taken. By default only
// https URLs whose host resolves to public addresses are accepted: loopback,
// link-local (cloud metadata at 169.254.169.254), private, carrier-grade NAT,
// multicast, reserved and unspecified ranges are refused, in IPv4 and IPv6
// (IPv4-mapped and NAT64 addresses are judged by the IPv4 address inside).
// The check runs when the stream is created or changed (a 400 naming
// `delivery.endpoint_url`) and again on every connection the push makes (the
// resolver the socket uses refuses such an address), so a DNS name that later
// resolves to 127.0.0.1 (rebinding) is refused at send time too.
// `allowPrivate` (TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS) lifts both rules for
// local development and tests.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

const FORBIDDEN: readonly [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'carrier-grade NAT'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.0.0.0', 24, 'ipv4', 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'ipv4', 'documentation'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['198.18.0.0', 15, 'ipv4', 'benchmarking'],
  ['198.51.100.0', 24, 'ipv4', 'documentation'],
  ['203.0.113.0', 24, 'ipv4', 'documentation'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['fc00::', 7, 'ipv6', 'unique local (private)'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fec0::', 10, 'ipv6', 'site-local'],
  ['ff00::', 8, 'ipv6', 'multicast'],
  ['2001:db8::', 32, 'ipv6', 'documentation'],
];

const lists = FORBIDDEN.map(([net, prefix, family, name]) => {
  const b = new BlockList();
  b.addSubnet(net, prefix, family);
  return { b, family, name };
});

/** The IPv4 address an IPv6 address carries (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96), if any. */
const embeddedV4 = (ip: string): string | undefined => {
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(ip);
  if (m === null) return undefined;
  if (m[1] !== undefined) return m[1];
  const hi = parseInt(m[2] ?? '0', 16);
  const lo = parseInt(m[3] ?? '0', 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
};

/** Why an address may not be pushed to (the range's name), or undefined when it is public. */
export const forbiddenRange = (address: string): string | undefined => {
  const ip = address.replace(/^\[|\]$/g, '');
  const v = isIP(ip);
  if (v === 0) return 'not an IP address';
  if (v === 6) {
    const v4 = embeddedV4(ip);
    if (v4 !== undefined) return forbiddenRange(v4);
  }
  const family = v === 4 ? 'ipv4' : 'ipv6';
  return lists.find((l) => l.family === family && l.b.check(ip, family))?.name;
};

export type Resolve = (host: string) => Promise<string[]>;

const systemResolve: Resolve = (host) =>
  new Promise((resolve, reject) => dnsLookup(host, { all: true }, (e, addrs: LookupAddress[]) => (e !== null ? reject(e) : resolve(addrs.map((a) => a.address)))));

export type EndpointPolicy = { allowPrivate: boolean; resolve?: Resolve };

/** Whether a push endpoint_url is acceptable: undefined when it is, else why not (said of the field). */
export const endpointProblem = async (raw: string, p: EndpointPolicy): Promise<string | undefined> => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'https:' && !(p.allowPrivate && url.protocol === 'http:')) return `must be an https URL (got ${url.protocol.replace(/:$/, '')})`;
  if (url.username !== '' || url.password !== '') return 'must not carry credentials (use authorization_header)';
  if (p.allowPrivate) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = await (p.resolve ?? systemResolve)(host);
    } catch (e) {
      return `host ${host} does not resolve (${(e as { code?: string }).code ?? (e as Error).message})`;
    }
  }
  if (addresses.length === 0) return `host ${host} does not resolve`;
  for (const a of addresses) {
    const range = forbiddenRange(a);
    if (range !== undefined) return `host ${host} resolves to ${a}, a ${range} address; refused (set TRUSTFOLD_SSF_ALLOW_PRIVATE_ENDPOINTS=true for local development)`;
  }
  return undefined;
};

/** A resolver for sockets that refuses forbidden addresses at connect time (DNS rebinding). */
export const guardedLookup =
  (resolve: Resolve = systemResolve): LookupFunction =>
  (hostname, options, callback) => {
    resolve(hostname).then(
      (all) => {
        const bad = all.map((a) => [a, forbiddenRange(a)] as const).find(([, r]) => r !== undefined);
        if (bad !== undefined || all.length === 0) {
          const e = Object.assign(new Error(bad !== undefined ? `${hostname} resolves to ${bad[0]}, a ${bad[1]} address; refused` : `${hostname} does not resolve`), { code: 'ERR_SSF_FORBIDDEN_ADDRESS' });
          callback(e, '', 0);
          return;
        }
        const list = all.map((a) => ({ address: a, family: isIP(a) }));
        if (options.all === true) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
        else callback(null, list[0]?.address ?? '', list[0]?.family ?? 4);
      },
      (e: unknown) => callback(e as NodeJS.ErrnoException, '', 0),
    );
  };

export type PushResponse = { status: number; body: string };
export type PushTransport = (url: string, headers: Record<string, string>, body: string, timeoutMs: number) => Promise<PushResponse>;

const MAX_ANSWER_BYTES = 65_536;

/**
 * POSTs one SET. With `allowPrivate` false every connection goes through
 * `guardedLookup`; an IP-literal URL is checked here, since sockets do not
 * resolve those. The answer's body is read up to 64 KiB (it only carries an
 * `err`).
 */
export const createPushTransport =
  (p: EndpointPolicy): PushTransport =>
  async (raw, headers, body, timeoutMs) => {
    const url = new URL(raw);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (!p.allowPrivate) {
      if (url.protocol !== 'https:') throw new Error(`refusing to push over ${url.protocol}`);
      const range = isIP(host) !== 0 ? forbiddenRange(host) : undefined;
      if (range !== undefined) throw new Error(`refusing to push to ${host}, a ${range} address`);
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const options: RequestOptions = {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      timeout: timeoutMs,
      ...(p.allowPrivate ? {} : { lookup: guardedLookup(p.resolve) }),
    };
    return new Promise<PushResponse>((resolve, reject) => {
      const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      const req = send(url, options, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(deadline);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (e) => {
          clearTimeout(deadline);
          reject(e);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (e) => {
        clearTimeout(deadline);
        reject(e);
      });
      req.end(body);
    });
  };
