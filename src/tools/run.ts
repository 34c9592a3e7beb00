import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import { scrubErrorText } from '../http/log-errors.ts';
import { recordToolCall } from '../observability/metrics.ts';
import { endWithError, startSpan } from '../observability/tracing.ts';
import { ToolError, type Source, type Tool } from './types.ts';

/** What one tool call came to: the JSON text the model and the client see, and the pages it drew on. */
export interface ToolRun {
  status: 'completed' | 'failed';
  /** `{…result}` or `{error}`, as a JSON string of at most the configured length. */
  output: string;
  sources: Source[];
}

export interface RunOptions {
  /** Aborted when the client leaves or the server stops. */
  signal: AbortSignal;
  now: () => number;
  maxChars: number;
  log: FastifyBaseLogger;
}

const failed = (error: string, maxChars: number): ToolRun => ({ status: 'failed', output: capJson({ error }, maxChars), sources: [] });

/**
 * Runs one call of a server tool: checks the model's arguments, bounds its
 * time, turns every failure into an `{error}` the model can read (the
 * response goes on), and logs the call without its arguments or result.
 */
export async function runTool(tool: Tool, rawArguments: string, opts: RunOptions): Promise<ToolRun> {
  const started = performance.now();
  const span = startSpan('tool.call', { 'eugpt.tool': tool.name });
  const outcome = await attempt(tool, rawArguments, opts);
  const ms = performance.now() - started;
  opts.log.info({ tool: tool.name, status: outcome.status, duration_ms: Math.round(ms) }, 'tool call');
  recordToolCall(tool.name, outcome.status, ms / 1000);
  span.setAttribute('eugpt.outcome', outcome.status);
  if (outcome.status === 'failed') endWithError(span, 'tool_failed');
  else span.end();
  return outcome;
}

async function attempt(tool: Tool, rawArguments: string, opts: RunOptions): Promise<ToolRun> {
  let args: unknown;
  try {
    args = JSON.parse(rawArguments.trim() === '' ? '{}' : rawArguments);
  } catch {
    return failed('the arguments are not valid JSON', opts.maxChars);
  }
  const parsed = tool.input.safeParse(args);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length === 0 ? 'arguments' : issue.path.join('.');
    return failed(`invalid arguments: ${where}: ${issue.message}`, opts.maxChars);
  }
  if (opts.signal.aborted) return failed('the request ended before the tool ran', opts.maxChars);
  const timeout = AbortSignal.timeout(tool.timeoutMs);
  const signal = AbortSignal.any([opts.signal, timeout]);
  let onAbort: (() => void) | undefined;
  // A tool that does not watch its signal still cannot hold the response past its time.
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  stopped.catch(() => undefined);
  try {
    const result = await Promise.race([tool.run(parsed.data, { signal, now: opts.now }), stopped]);
    return { status: 'completed', output: capJson(result.result, opts.maxChars), sources: result.sources ?? [] };
  } catch (err) {
    if (timeout.aborted && !opts.signal.aborted) return failed(`the tool took longer than ${tool.timeoutMs} ms and was stopped`, opts.maxChars);
    if (opts.signal.aborted) return failed('the request ended before the tool finished', opts.maxChars);
    if (err instanceof ToolError) return failed(err.message, opts.maxChars);
    opts.log.warn({ tool: tool.name, error: scrubErrorText(err instanceof Error ? err.message : String(err)) }, 'tool failed unexpectedly');
    return failed('the tool failed unexpectedly', opts.maxChars);
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
  }
}

/**
 * JSON text of at most `maxChars` characters that is still valid JSON: the
 * longest strings are shortened (marked with an ellipsis) until it fits.
 */
export function capJson(value: unknown, maxChars: number): string {
  let text = JSON.stringify(value);
  for (let round = 0; text.length > maxChars && round < 64; round++) {
    const longest = longestString(value);
    if (longest === null || longest.value.length <= 16) break;
    const excess = text.length - maxChars;
    const keep = Math.max(0, longest.value.length - excess - 64);
    longest.set(`${Array.from(longest.value).slice(0, keep).join('')}…`);
    value = longest.root;
    text = JSON.stringify(value);
  }
  return text.length > maxChars ? JSON.stringify({ error: 'the result was too large to return' }) : text;
}

interface Found {
  value: string;
  root: unknown;
  set(v: string): void;
}

/** The longest string inside a JSON value, with a way to replace it (the value is copied first). */
function longestString(input: unknown): Found | null {
  const root: unknown = structuredClone(input);
  let best: Found | null = null;
  const visit = (node: unknown, set: (v: string) => void, depth: number) => {
    if (depth > 64) return;
    if (typeof node === 'string') {
      if (best === null || node.length > best.value.length) best = { value: node, root, set };
      return;
    }
    if (Array.isArray(node)) node.forEach((child, i) => visit(child, (v) => (node[i] = v), depth + 1));
    else if (node !== null && typeof node === 'object') {
      const obj = node as Record<string, unknown>;
      for (const key of Object.keys(obj)) visit(obj[key], (v) => (obj[key] = v), depth + 1);
    }
  };
  visit(root, () => undefined, 0);
  return best;
}

/** The JSON Schema a model is shown for a tool's arguments. */
export function parametersOf(tool: Tool): Record<string, unknown> {
  const schema = z.toJSONSchema(tool.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}
