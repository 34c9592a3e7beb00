import { z } from 'zod';

/**
 * PostgreSQL's text and jsonb cannot hold U+0000, and jsonb refuses a UTF-16
 * surrogate without its partner. Text that reaches storage is checked when it
 * arrives, so a bad character is the client's 400 instead of a failed insert
 * after the model has already answered.
 */

export const INVALID_TEXT = 'invalid_text';

const REPLACEMENT = '\ufffd';

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/** True when PostgreSQL can store the string: no U+0000, no unpaired surrogate. */
export function isStorable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || isLow(c)) return false;
    if (isHigh(c)) {
      if (!isLow(s.charCodeAt(i + 1))) return false;
      i++;
    }
  }
  return true;
}

/** The string with every U+0000 and unpaired surrogate replaced by U+FFFD. */
export function toStorable(s: string): string {
  if (isStorable(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isHigh(c) && isLow(s.charCodeAt(i + 1))) {
      out += s.slice(i, i + 2);
      i++;
    } else {
      out += c === 0 || isHigh(c) || isLow(c) ? REPLACEMENT : s[i];
    }
  }
  return out;
}

/** The message of an `invalid_text` rejection. */
export function textProblem(param: string, inKey: boolean): string {
  const what = inKey ? `a key of ${param || 'the body'}` : param || 'the body';
  return `${what} contains a character that cannot be stored (U+0000 or an unpaired surrogate)`;
}

const MESSAGE = 'contains a character that cannot be stored (U+0000 or an unpaired surrogate)';

/** Adds the storable check to a string schema (an email, say); its issue wins over the schema's others when reported. */
export function storable<T extends z.ZodType<string>>(schema: T): T {
  return schema.refine(isStorable, { error: MESSAGE, params: { code: INVALID_TEXT, key: false }, abort: true });
}

/** A string that must be storable, checked before any length or blank check chained after it. */
export const storableString = () => storable(z.string());

interface Visit {
  value: unknown;
  at: string | number | undefined;
  parent: Visit | undefined;
  depth: number;
}

const pathOf = (v: Visit): (string | number)[] => {
  const path: (string | number)[] = [];
  for (let n: Visit | undefined = v; n?.at !== undefined; n = n.parent) path.push(n.at);
  return path.reverse();
};

/**
 * Free-form JSON deeper than this is refused: no real schema or tool choice
 * needs it, and the copies and serialisations on its way to storage recurse.
 */
export const MAX_JSON_DEPTH = 128;

export type JsonProblem = { type: 'text' | 'key'; path: (string | number)[] } | { type: 'depth'; path: [] };

/** The first problem of a JSON value on its way to storage: an unstorable value or key (then `path` is its object's), or too deep a nesting. */
export function jsonProblem(value: unknown): JsonProblem | null {
  // An explicit stack, and paths built only for the culprit: a deeply nested body costs neither stack nor quadratic time.
  const stack: Visit[] = [{ value, at: undefined, parent: undefined, depth: 0 }];
  while (stack.length > 0) {
    const visit = stack.pop()!;
    const v = visit.value;
    if (typeof v === 'string') {
      if (!isStorable(v)) return { type: 'text', path: pathOf(visit) };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (visit.depth >= MAX_JSON_DEPTH) return { type: 'depth', path: [] };
    const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x as unknown]) : Object.entries(v);
    if (!Array.isArray(v) && entries.some(([k]) => !isStorable(k as string))) return { type: 'key', path: pathOf(visit) };
    for (let i = entries.length - 1; i >= 0; i--) stack.push({ value: entries[i]![1], at: entries[i]![0], parent: visit, depth: visit.depth + 1 });
  }
  return null;
}

/** Adds the storable check to a schema of free-form JSON: keys and strings at any depth, and the depth itself. */
export function storableJson<T extends z.ZodType>(schema: T): T {
  return schema.check((ctx) => {
    const found = jsonProblem(ctx.value);
    if (found === null) return;
    if (found.type === 'depth') {
      ctx.issues.push({ code: 'custom', input: ctx.value, path: [], message: `nested deeper than ${MAX_JSON_DEPTH} levels` });
      return;
    }
    const key = found.type === 'key';
    ctx.issues.push({
      code: 'custom',
      input: ctx.value,
      path: found.path,
      message: key ? `has a key that ${MESSAGE}` : MESSAGE,
      params: { code: INVALID_TEXT, key },
    });
  });
}

/** The storable-text problem an issue reports, if it is one; record keys are reported by zod as `invalid_key`. */
export function textIssueOf(issue: { code: string; path: readonly PropertyKey[]; params?: unknown; issues?: unknown }): { path: PropertyKey[]; key: boolean } | null {
  const params = issue.params as { code?: unknown; key?: unknown } | undefined;
  if (issue.code === 'custom' && params?.code === INVALID_TEXT) return { path: [...issue.path], key: params.key === true };
  if (issue.code === 'invalid_key' && Array.isArray(issue.issues)) {
    const inner = (issue.issues as { code: string; path: PropertyKey[]; params?: unknown }[])[0];
    if (inner !== undefined && textIssueOf(inner) !== null) return { path: issue.path.slice(0, -1), key: true };
  }
  return null;
}
