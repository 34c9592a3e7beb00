import { StorableText } from './storable-text.ts';
import type { ProviderEvent } from './types.ts';

/**
 * Turns an upstream's tool-call pieces into start / arguments / end events.
 * Arguments are cleaned like text (no NUL, no lone surrogates), so what the
 * model wrote can always be stored and sent back. A piece may come before the
 * call's name (some servers send the name late): it is held until the start.
 */
export class ToolCallStream {
  private readonly calls = new Map<number, { name: string | undefined; text: StorableText; early: string; ended: boolean }>();

  /** Events for one piece of the call at `index`: its name and/or some of its arguments. */
  *piece(index: number, name: string | undefined, args: string | undefined): Generator<ProviderEvent> {
    let call = this.calls.get(index);
    if (call === undefined) {
      call = { name: undefined, text: new StorableText(), early: '', ended: false };
      this.calls.set(index, call);
    }
    if (call.ended) return;
    if (call.name === undefined && typeof name === 'string' && name !== '') {
      call.name = name;
      yield { type: 'tool_call_start', index, name };
      if (call.early !== '') yield { type: 'tool_call_delta', index, arguments: call.early };
      call.early = '';
    }
    if (typeof args !== 'string' || args === '') return;
    const clean = call.text.push(args);
    if (clean === '') return;
    if (call.name === undefined) call.early += clean;
    else yield { type: 'tool_call_delta', index, arguments: clean };
  }

  /** Ends the call at `index` (Anthropic ends each block on its own). */
  *end(index: number): Generator<ProviderEvent> {
    const call = this.calls.get(index);
    if (call === undefined || call.ended || call.name === undefined) return;
    call.ended = true;
    const rest = call.text.flush();
    if (rest !== '') yield { type: 'tool_call_delta', index, arguments: rest };
    yield { type: 'tool_call_end', index };
  }

  /** Ends every call still open, in order (OpenAI-style streams end them all with the finish reason). */
  *endAll(): Generator<ProviderEvent> {
    for (const index of [...this.calls.keys()].sort((a, b) => a - b)) yield* this.end(index);
  }
}

/**
 * Arguments as upstreams accept them back: a model may have written JSON that
 * does not parse (or been cut off mid-arguments), and servers that parse
 * history (vLLM) fail the whole request on it. What does not parse to an
 * object is sent wrapped, so nothing the model wrote is lost.
 */
export function wireArguments(args: string): string {
  try {
    const value: unknown = JSON.parse(args === '' ? '{}' : args);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return args === '' ? '{}' : args;
  } catch {
    // wrapped below
  }
  return JSON.stringify({ arguments: args });
}
