/** `['input', 0, 'content']` → `input[0].content`: the form OpenAI uses for `param`, and ours for config entries. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
}
