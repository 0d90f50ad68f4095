// Walking and editing JSON values for the fast paths' equivalence tests:
// every path to a value inside one, and a copy with one path set or removed.
export type Json = Record<string, unknown> | unknown[];
export const isContainer = (v: unknown): v is Json => typeof v === 'object' && v !== null;

/** Every path to a value inside `v`. */
export const paths = (v: unknown, prefix: (string | number)[] = []): (string | number)[][] => {
  if (!isContainer(v)) return [];
  const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => [[...prefix, k], ...paths((v as Record<string | number, unknown>)[k], [...prefix, k])]);
};

/** A copy of `root` with `value` at `path` (or the entry removed). */
export const setAt = (root: unknown, path: (string | number)[], value: unknown, remove = false): unknown => {
  const copy = structuredClone(root);
  let node = copy as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (last === undefined) return copy;
  if (remove) {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else node[last] = value;
  return copy;
};
