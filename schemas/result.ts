// Invalid input is a value, not an exception: a parse returns a Result, and the caller decides.
export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E };

export const ok = <T>(value: T): { ok: true; value: T } => ({ ok: true, value });
export const err = <E>(error: E): { ok: false; error: E } => ({ ok: false, error });

/** One problem with one field of an input: `path` names the field (`chain[0].id`), `message` says why. */
export type FieldError = { path: string; message: string };

export const formatPath = (path: readonly PropertyKey[]): string => {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(root)' : out;
};
