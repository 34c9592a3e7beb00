import type { ChatRequest, FinishReason, Provider, ProviderEvent } from '../providers/types.ts';
import { countTokens } from '../tokens.ts';
import type { ResponseBuilder } from './builder.ts';
import type { ResponseEvent } from './events.ts';

export interface EngineRun {
  builder: ResponseBuilder;
  provider: Provider;
  chat: Omit<ChatRequest, 'signal'>;
  /** Aborts the upstream call: the client went away, or the failover deadline passed. */
  signal: AbortSignal;
  /** True when the abort was the client's leaving (the response is then incomplete, not failed). */
  clientGone: () => boolean;
  /** Sent as `response.routing.completed` when the request asked for it. */
  routing?: { model_id: string; category: string; reason: string } | undefined;
  /** Tokens of the prompt as sent, for usage when the upstream reports none. */
  promptTokens: number;
  now: () => number;
  /** Called with the error behind a failed response, for the log. */
  onUpstreamError?: (err: unknown) => void;
}

/** The client-facing words for a failure after the stream started (code upstream_error). */
const UPSTREAM_FAILED = 'the model server failed while answering; the partial answer is kept';

const INCOMPLETE: Partial<Record<FinishReason, string>> = { length: 'max_output_tokens', content_filter: 'content_filter' };

/**
 * An upstream that ignores max_tokens must not grow our memory without end:
 * past this many characters per output token asked for, the answer is cut as if at max_output_tokens.
 */
const MAX_CHARS_PER_TOKEN = 32;

/**
 * One response as its sequence of events. Nothing is yielded until the
 * upstream's first event arrives (the commit point of issue 3): a failure
 * before it throws, so the route can answer with a plain HTTP error. After
 * it, a failure becomes the terminal `error` event, and a client abort ends
 * the generator without a terminal event. Either way the builder holds the
 * outcome and the usage.
 */
export async function* runResponse(run: EngineRun): AsyncGenerator<ResponseEvent> {
  const { builder: b } = run;
  const upstream = run.provider.stream({ ...run.chat, signal: run.signal })[Symbol.asyncIterator]();
  let finish: FinishReason | undefined;
  let done = false;

  const settleUsage = () => {
    // Upstream counts win; without them (no usage chunk, a cut stream) we count ourselves.
    b.usage ??= { inputTokens: run.promptTokens, outputTokens: countTokens(b.outputText), cachedTokens: 0, reasoningTokens: 0 };
  };
  const fail = (err: unknown, beforeAnyOutput = false) => {
    // An upstream that failed before sending anything produced nothing to count.
    if (beforeAnyOutput) b.usage ??= { inputTokens: 0, outputTokens: 0, cachedTokens: 0, reasoningTokens: 0 };
    settleUsage();
    if (run.clientGone()) {
      b.incompleteReason = 'client_disconnected';
      b.finish('incomplete', run.now());
    } else {
      run.onUpstreamError?.(err);
      b.error = { code: 'upstream_error', message: UPSTREAM_FAILED };
      b.finish('failed', run.now());
    }
  };

  let next: IteratorResult<ProviderEvent>;
  try {
    next = await upstream.next();
  } catch (err) {
    done = true;
    fail(err, true);
    throw err;
  }

  const maxChars = Math.max(1 << 16, run.chat.maxOutputTokens * MAX_CHARS_PER_TOKEN);
  let seq = 0;
  const { item, index } = b.addMessage();
  const at = { item_id: item.id, output_index: index, content_index: 0 };
  const part = item.content[0]!;
  try {
    yield { type: 'response.created', sequence_number: seq++, response: emptySnapshot(b) };
    yield { type: 'response.in_progress', sequence_number: seq++, response: emptySnapshot(b) };
    if (run.routing !== undefined) yield { type: 'response.routing.completed', sequence_number: seq++, ...run.routing };
    yield { type: 'response.output_item.added', sequence_number: seq++, output_index: index, item: { ...item, content: [] } };
    yield { type: 'response.content_part.added', sequence_number: seq++, ...at, part: { ...part } };

    try {
      while (!next.done) {
        const event = next.value;
        if (event.type === 'text') {
          if (part.text.length + event.text.length > maxChars) {
            finish = 'length';
            await upstream.return?.();
            break;
          }
          b.firstTokenAt ??= run.now();
          part.text += event.text;
          yield { type: 'response.output_text.delta', sequence_number: seq++, ...at, delta: event.text, logprobs: [] };
        } else if (event.type === 'usage') {
          b.usage = event.usage;
        } else {
          finish = event.reason;
        }
        next = await upstream.next();
      }
      done = true;
    } catch (err) {
      done = true;
      fail(err);
      if (b.status === 'failed') yield errorEvent(seq++);
      return;
    }

    settleUsage();
    const reason = finish === undefined ? undefined : INCOMPLETE[finish];
    if (reason !== undefined) b.incompleteReason = reason;
    b.finish(reason === undefined ? 'completed' : 'incomplete', run.now());
    yield { type: 'response.output_text.done', sequence_number: seq++, ...at, text: part.text, logprobs: [] };
    yield { type: 'response.content_part.done', sequence_number: seq++, ...at, part: { ...part } };
    yield { type: 'response.output_item.done', sequence_number: seq++, output_index: index, item: structuredClone(item) };
    // The docs promise response.completed or error as the last event; a truncated answer says so in status.
    yield { type: 'response.completed', sequence_number: seq++, response: b.snapshot() };
  } finally {
    // The consumer stopped early (client gone): stop the upstream too, and record what was made.
    if (!done) {
      await upstream.return?.();
      if (b.status === 'in_progress') {
        settleUsage();
        b.incompleteReason = 'client_disconnected';
        b.finish('incomplete', run.now());
      }
    }
  }
}

/** Lifecycle snapshot before any output (`output: []`, `usage: null`). */
function emptySnapshot(b: ResponseBuilder) {
  return { ...b.snapshot(), output: [], output_text: '' };
}

function errorEvent(seq: number): ResponseEvent {
  const error = { type: 'upstream_error', code: 'upstream_error', message: UPSTREAM_FAILED, param: null };
  return { type: 'error', sequence_number: seq, code: error.code, message: error.message, param: null, error };
}
