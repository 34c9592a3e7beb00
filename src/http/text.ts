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
}

const pathOf = (v: Visit): (string | number)[] => {
  const path: (string | number)[] = [];
  for (let n: Visit | undefined = v; n?.at !== undefined; n = n.parent) path.push(n.at);
  return path.reverse();
};

/** Where the first unstorable string of a JSON value is: a key (then `path` is its object's) or a value. */
export function findUnstorable(value: unknown): { path: (string | number)[]; key: boolean } | null {
  // An explicit stack, and paths built only for the culprit: a deeply nested body costs neither stack nor quadratic time.
  const stack: Visit[] = [{ value, at: undefined, parent: undefined }];
  while (stack.length > 0) {
    const visit = stack.pop()!;
    const v = visit.value;
    if (typeof v === 'string') {
      if (!isStorable(v)) return { path: pathOf(visit), key: false };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i] as unknown, at: i, parent: visit });
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      if (entries.some(([k]) => !isStorable(k))) return { path: pathOf(visit), key: true };
      for (let i = entries.length - 1; i >= 0; i--) stack.push({ value: entries[i]![1], at: entries[i]![0], parent: visit });
    }
  }
  return null;
}

/** Adds the storable check to a schema of free-form JSON (keys and strings at any depth). */
export function storableJson<T extends z.ZodType>(schema: T): T {
  return schema.check((ctx) => {
    const found = findUnstorable(ctx.value);
    if (found === null) return;
    ctx.issues.push({
      code: 'custom',
      input: ctx.value,
      path: found.path,
      message: found.key ? `has a key that ${MESSAGE}` : MESSAGE,
      params: { code: INVALID_TEXT, key: found.key },
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
