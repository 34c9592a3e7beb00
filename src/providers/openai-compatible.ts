import { createHash } from 'node:crypto';
import type { ProviderConfig } from '../router/catalog.ts';
import { DONE, jsonEvents, UpstreamHttp } from './http.ts';
import { StorableText } from './storable-text.ts';
import { ToolCallStream, wireArguments } from './tool-calls.ts';
import {
  UpstreamError,
  type ChatMessage,
  type ChatRequest,
  type FinishReason,
  type Provider,
  type ProviderEvent,
  type ResponseFormat,
  type UpstreamUsage,
} from './types.ts';

/**
 * Chat completions, streamed, for vLLM, Ollama, Mistral, llama.cpp and other
 * OpenAI-compatible servers. Always asks for the usage chunk.
 */

interface ToolCallPiece {
  index?: number;
  id?: string;
  function?: { name?: string | null; arguments?: string | null };
}

interface ChatChunk {
  choices?: { delta?: { content?: string | null; tool_calls?: ToolCallPiece[] | null }; finish_reason?: string | null }[];
  usage?: {
    prompt_tokens?: number;
    completion_tokens?: number;
    prompt_tokens_details?: { cached_tokens?: number } | null;
    completion_tokens_details?: { reasoning_tokens?: number } | null;
  } | null;
  error?: { message?: string; code?: string | number } | string;
}

function responseFormat(format: ResponseFormat | undefined) {
  if (format === undefined) return undefined;
  if (format.type === 'json_object') return { type: 'json_object' };
  const { name, schema, strict, description } = format;
  return { type: 'json_schema', json_schema: { name, schema, ...(strict === undefined ? {} : { strict }), ...(description === undefined ? {} : { description }) } };
}

/**
 * The id a call goes by upstream. Some servers accept only their own shape
 * (Mistral: exactly 9 letters and digits), so every call id is mapped to one,
 * the same way for the call and its result; clients keep seeing `call_…`.
 */
export function wireCallId(id: string): string {
  const digest = createHash('sha256').update(id).digest();
  let out = '';
  for (let i = 0; out.length < 9; i++) out += BASE62[digest[i]! % 62];
  return out;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** The chat-completions form of a message: tool calls on the assistant message, results as `tool` messages. */
function wireMessage(m: ChatMessage) {
  if (m.role === 'tool') return { role: 'tool', tool_call_id: wireCallId(m.callId), content: m.content };
  if (m.role === 'assistant' && m.toolCalls !== undefined && m.toolCalls.length > 0) {
    return {
      role: 'assistant',
      content: m.content === '' ? null : m.content,
      tool_calls: m.toolCalls.map((c) => ({ id: wireCallId(c.id), type: 'function', function: { name: c.name, arguments: wireArguments(c.arguments) } })),
    };
  }
  if (m.role === 'user' && typeof m.content !== 'string') {
    // Images go as data URLs: the upstream never fetches an address a user chose.
    const parts = m.content.map((p) =>
      p.type === 'text' ? { type: 'text', text: p.text } : { type: 'image_url', image_url: { url: `data:${p.mediaType};base64,${p.data}`, detail: p.detail } },
    );
    return { role: 'user', content: parts };
  }
  return { role: m.role, content: m.content };
}

function toolFields(request: ChatRequest) {
  if (request.tools === undefined || request.tools.length === 0) return {};
  const choice = request.toolChoice;
  return {
    tools: request.tools.map((t) => ({
      type: 'function',
      function: { name: t.name, description: t.description, parameters: t.parameters, ...(t.strict === undefined ? {} : { strict: t.strict }) },
    })),
    ...(choice === undefined ? {} : { tool_choice: typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } } }),
    // Sent only to turn it off: servers that do not know the field would otherwise refuse every request.
    ...(request.parallelToolCalls === false ? { parallel_tool_calls: false } : {}),
  };
}

export function chatBody(request: ChatRequest): string {
  return JSON.stringify({
    model: request.model,
    messages: request.messages.map(wireMessage),
    ...toolFields(request),
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: request.maxOutputTokens,
    ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
    ...(request.topP === undefined ? {} : { top_p: request.topP }),
    ...(request.responseFormat === undefined ? {} : { response_format: responseFormat(request.responseFormat) }),
  });
}

const FINISH: Record<string, FinishReason> = {
  stop: 'stop',
  length: 'length',
  content_filter: 'content_filter',
  tool_calls: 'tool_calls',
  function_call: 'tool_calls',
};

const count = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0);

function usageOf(u: NonNullable<ChatChunk['usage']>): UpstreamUsage {
  return {
    inputTokens: count(u.prompt_tokens),
    outputTokens: count(u.completion_tokens),
    cachedTokens: count(u.prompt_tokens_details?.cached_tokens),
    reasoningTokens: count(u.completion_tokens_details?.reasoning_tokens),
  };
}

/**
 * Which call a piece belongs to. Most servers number calls with `index`;
 * those that do not send one call per chunk, and a new `id` starts the next.
 */
class CallKeys {
  private last = -1;
  private readonly byId = new Map<string, number>();

  of(piece: ToolCallPiece): number {
    if (typeof piece.index === 'number') return piece.index;
    if (typeof piece.id === 'string' && piece.id !== '') {
      let key = this.byId.get(piece.id);
      if (key === undefined) {
        key = this.last + 1;
        this.byId.set(piece.id, key);
      }
      this.last = key;
      return key;
    }
    return Math.max(0, this.last);
  }
}

/** Events of one parsed chunk. */
function* eventsOf(chunk: ChatChunk, calls: ToolCallStream, keys: CallKeys): Generator<ProviderEvent> {
  if (chunk.error !== undefined) {
    const message = typeof chunk.error === 'string' ? chunk.error : (chunk.error.message ?? 'unknown');
    throw new UpstreamError('protocol', `upstream sent an error event: ${message}`);
  }
  const choice = chunk.choices?.[0];
  const text = choice?.delta?.content;
  if (typeof text === 'string' && text !== '') yield { type: 'text', text };
  const pieces = choice?.delta?.tool_calls;
  if (Array.isArray(pieces)) {
    for (const piece of pieces) yield* calls.piece(keys.of(piece), piece.function?.name ?? undefined, piece.function?.arguments ?? undefined);
  }
  if (typeof choice?.finish_reason === 'string') {
    yield* calls.endAll();
    yield { type: 'finish', reason: FINISH[choice.finish_reason] ?? 'other' };
  }
  if (chunk.usage) yield { type: 'usage', usage: usageOf(chunk.usage) };
}

export function createOpenAICompatibleProvider(config: ProviderConfig): Provider {
  const http = new UpstreamHttp(config);
  const path = http.path('chat/completions');
  const headers = {
    ...config.headers,
    ...(config.apiKey === undefined ? {} : { authorization: `Bearer ${config.apiKey}` }),
  };

  return {
    async *stream(request) {
      const call = await http.post(path, headers, chatBody(request), request.signal, request.onSent);
      let finished = false;
      const text = new StorableText();
      const calls = new ToolCallStream();
      const keys = new CallKeys();
      reading: for await (const batch of jsonEvents(call)) {
        for (const { data } of batch) {
          if (data === DONE) {
            finished = true;
            break reading;
          }
          for (const event of eventsOf(data as ChatChunk, calls, keys)) {
            if (event.type === 'text') {
              const clean = text.push(event.text);
              if (clean !== '') yield { type: 'text', text: clean };
              continue;
            }
            const rest = text.flush();
            if (rest !== '') yield { type: 'text', text: rest };
            if (event.type === 'finish') finished = true;
            yield event;
          }
        }
      }
      // A stream cut short looks like a clean end; only a finish reason or [DONE] says the answer is whole.
      if (!finished) throw new UpstreamError('protocol', 'upstream stream ended before the answer finished');
      const rest = text.flush();
      if (rest !== '') yield { type: 'text', text: rest };
      yield* calls.endAll();
    },
    close: () => http.close(),
  };
}
