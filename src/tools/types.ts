import type { z } from 'zod';

/**
 * A server-side tool: the model calls it by name with JSON arguments, the
 * server runs it, and the result (a JSON object) goes back to the model and
 * into the response's `function_call` item. See docs/tools.md.
 */

/** The names of the built-in tools; they appear in `function_call` items that clients read. */
export const TOOL_NAMES = ['web_search', 'web_fetch', 'calculator', 'current_datetime', 'file_search'] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export interface ToolRunContext {
  /** Aborted when the tool's time is up, the client left or the server is shutting down: stop at once. */
  signal: AbortSignal;
  /** The clock (tests move it). */
  now: () => number;
}

/** A web page a result points at: becomes a `url_citation` when the answer cites it. */
export interface Source {
  url: string;
  title: string;
}

export interface ToolOutcome {
  /** The result the model sees, as a JSON object (never `{error}`: failures throw ToolError). */
  result: Record<string, unknown>;
  /** Pages the result came from, for citations. */
  sources?: Source[];
}

export interface Tool<Input = unknown> {
  name: ToolName;
  /** What the model is told the tool does. */
  description: string;
  /** Validates the model's arguments; its JSON Schema is what the model is shown. */
  input: z.ZodType<Input>;
  /** How long one call may run before it is stopped with a timeout error. */
  timeoutMs: number;
  run(input: Input, context: ToolRunContext): Promise<ToolOutcome>;
}

/**
 * A failure the model should read and may work around (a bad expression, an
 * unknown time zone, a blocked address, a page that is not text). Its message
 * goes to the model as `{error}` and into the item's output, so it never holds
 * secrets, stack traces or internal addresses.
 */
export class ToolError extends Error {
  override name = 'ToolError';
}
