// The tools the gateway offers: every upstream's tools under one name space,
// each with its policy settings and the digest of what the upstream last
// said the tool is. Pure: listings in, a catalog and its changes out.
import { hash } from 'node:crypto';
import { LIMITS } from '../../schemas/events.ts';

/** A tool as an upstream lists it; every field is kept and passed on as is. */
export type UpstreamTool = { name: string; description?: string; inputSchema?: unknown } & Record<string, unknown>;

export type ToolPolicy = {
  /** The action judged and audited; default the upstream's tool name. */
  action?: string | undefined;
  /** Overrides the rules' destructive action list for this tool. */
  destructive?: boolean | undefined;
  /** `{arg}` placeholders filled from the call's arguments, e.g. `repo:{repo}/{path}`. */
  resource?: string | undefined;
  /** Scopes a caller needs, besides mcp:tools:*, to see and call this tool. */
  requiresScopes?: readonly string[] | undefined;
  /** Roles the tool exercises; revoked for the delegator → the call is denied. */
  requiresRoles?: readonly string[] | undefined;
  /** Never offered, never forwarded. */
  hidden?: boolean | undefined;
};

export type CatalogEntry = {
  /** The name agents see. */
  name: string;
  upstream: string;
  tool: UpstreamTool;
  policy: ToolPolicy;
  /** sha256 of the tool's name, description and input schema, as last listed. */
  digest: string;
};

/** JSON with object keys sorted, so equal values digest equally whatever their key order. */
export const canonicalJson = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x === undefined ? null : x)).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
};

export const sha256 = (s: string): string => `sha256:${hash('sha256', s, 'hex')}`;

/** What a tool *is* to an agent: the name, the words it reads and the schema it fills. */
export const toolSchemaDigest = (t: Pick<UpstreamTool, 'name' | 'description' | 'inputSchema'>): string =>
  sha256(canonicalJson({ name: t.name, description: t.description ?? null, inputSchema: t.inputSchema ?? null }));

/** The audit keeps arguments as a digest only. */
export const argsDigest = (args: unknown): string => sha256(canonicalJson(args ?? {}));

/** With several upstreams every name is `<upstream><sep><tool>`; a single upstream's names are left alone. */
export const exposedName = (upstream: string, tool: string, namespaced: boolean, separator: string): string =>
  namespaced ? `${upstream}${separator}${tool}` : tool;

const PLACEHOLDER = /\{([A-Za-z0-9_.-]+)\}/g;

const argText = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '');

/**
 * The resource a call touches: the tool's template filled from the arguments
 * (a missing argument fills in empty), else a `resource` argument, else
 * `mcp:<upstream>/<tool>` — never empty, so a freeze on a prefix cannot be
 * dodged by leaving an argument out of a template-less tool.
 */
export const resourceOf = (entry: Pick<CatalogEntry, 'upstream' | 'tool' | 'policy'>, args: Readonly<Record<string, unknown>>): string => {
  const template = entry.policy.resource;
  const r =
    template !== undefined
      ? template.replace(PLACEHOLDER, (_, key: string) => argText(args[key]))
      : typeof args['resource'] === 'string'
        ? args['resource']
        : `mcp:${entry.upstream}/${entry.tool.name}`;
  return r.slice(0, LIMITS.text);
};

export type Listing = { upstream: string; tools: readonly UpstreamTool[] };
export type ToolChange = { upstream: string; tool: string; name: string; before: string; after: string };

export type Catalog = { entries: ReadonlyMap<string, CatalogEntry> };

/**
 * Builds the catalog from every upstream's listing. `policies` are keyed by
 * the exposed name. Two upstreams exposing one name is a configuration error
 * only when namespacing is off, which `buildCatalog` is never asked to do
 * with more than one upstream.
 */
export const buildCatalog = (
  listings: readonly Listing[],
  policies: Readonly<Record<string, ToolPolicy>>,
  opts: { separator: string; namespaced: boolean },
): Catalog => {
  const entries = new Map<string, CatalogEntry>();
  for (const { upstream, tools } of listings) {
    for (const tool of tools) {
      const name = exposedName(upstream, tool.name, opts.namespaced, opts.separator);
      entries.set(name, { name, upstream, tool, policy: policies[name] ?? {}, digest: toolSchemaDigest(tool) });
    }
  }
  return { entries };
};

/** Tools whose name, description or input schema changed between two catalogs (the "rug pull"). Added and removed tools are not changes. */
export const changedTools = (before: Catalog, after: Catalog): ToolChange[] => {
  const out: ToolChange[] = [];
  for (const [name, e] of after.entries) {
    const old = before.entries.get(name);
    if (old !== undefined && old.digest !== e.digest) out.push({ upstream: e.upstream, tool: e.tool.name, name, before: old.digest, after: e.digest });
  }
  return out;
};

/** Whether a caller may ever call this tool: not hidden, and holding the tool's extra scopes. */
export const mayCall = (entry: Pick<CatalogEntry, 'policy'>, scopes: ReadonlySet<string>): boolean =>
  entry.policy.hidden !== true && (entry.policy.requiresScopes ?? []).every((s) => scopes.has(s));
