import type { ProviderConfig } from '../router/catalog.ts';
import { jsonEvents, UpstreamHttp } from './http.ts';
import { StorableText } from './storable-text.ts';
import { ToolCallStream } from './tool-calls.ts';
import { UpstreamError, type ChatMessage, type ChatRequest, type FinishReason, type Provider, type UserPart } from './types.ts';

/**
 * Anthropic's Messages API, streamed: message_start (input usage),
 * content_block_start/delta/stop, message_delta (stop reason, output usage),
 * message_stop, ping and error events, mapped to the internal union.
 * `base_url` is the API root with its version, e.g. https://api.anthropic.com/v1.
 */

export const API_VERSION = '2023-06-01';

type Block =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: unknown }
  | { type: 'tool_result'; tool_use_id: string; content: string }
  | { type: 'image'; source: { type: 'base64'; media_type: string; data: string } };

interface AnthropicMessage {
  role: 'user' | 'assistant';
  /** Plain text as a string; blocks once a tool call or result is involved. */
  content: string | Block[];
}

/** The arguments a model wrote, as the object Anthropic wants back; what does not parse is sent as it was written. */
function inputOf(args: string): unknown {
  try {
    const value: unknown = JSON.parse(args === '' ? '{}' : args);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value;
  } catch {
    // fall through
  }
  return { arguments: args };
}

/** Anthropic's ids are letters, digits, `_` and `-`; ours already are, a client's may not be. */
const anthropicId = (id: string) => id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 128);

/** A user message's text and images as blocks; the API takes images as base64 sources. */
function userBlocks(parts: UserPart[]): Block[] {
  return parts.flatMap((p): Block[] => {
    if (p.type === 'text') return p.text === '' ? [] : [{ type: 'text', text: p.text }];
    return [{ type: 'image', source: { type: 'base64', media_type: p.mediaType, data: p.data } }];
  });
}

function toBlocks(content: string | Block[]): Block[] {
  if (typeof content !== 'string') return content;
  return content === '' ? [] : [{ type: 'text', text: content }];
}

/**
 * The Messages API refuses tool blocks in a request that defines no tools, so
 * without tools a call and its result are told as text.
 */
function messageOf(m: ChatMessage, withTools: boolean): AnthropicMessage {
  if (m.role === 'tool') {
    if (!withTools) return { role: 'user', content: `[tool result for ${m.callId}]\n${m.content}` };
    return { role: 'user', content: [{ type: 'tool_result', tool_use_id: anthropicId(m.callId), content: m.content }] };
  }
  if (m.role === 'assistant' && m.toolCalls !== undefined && m.toolCalls.length > 0 && !withTools) {
    const told = m.toolCalls.map((c) => `[called ${c.name} (${c.id}) with ${c.arguments}]`).join('\n');
    return { role: 'assistant', content: m.content === '' ? told : `${m.content}\n${told}` };
  }
  if (m.role === 'assistant' && m.toolCalls !== undefined && m.toolCalls.length > 0) {
    return {
      role: 'assistant',
      content: [...toBlocks(m.content), ...m.toolCalls.map((c): Block => ({ type: 'tool_use', id: anthropicId(c.id), name: c.name, input: inputOf(c.arguments) }))],
    };
  }
  if (m.role === 'user' && typeof m.content !== 'string') return { role: 'user', content: userBlocks(m.content) };
  return { role: m.role === 'assistant' ? 'assistant' : 'user', content: m.content as string };
}

/** Joins a message to the one before it of the same role; tool results stay first, as the API requires. */
function join(last: AnthropicMessage, next: AnthropicMessage): void {
  if (typeof last.content === 'string' && typeof next.content === 'string') {
    last.content += `\n\n${next.content}`;
    return;
  }
  const blocks = [...toBlocks(last.content), ...toBlocks(next.content)];
  last.content = [...blocks.filter((b) => b.type === 'tool_result'), ...blocks.filter((b) => b.type !== 'tool_result')];
}

/**
 * The Messages API takes the system prompt apart, and turns that alternate
 * and open with the user: system messages are gathered, neighbours of one
 * role are joined. Tool calls become `tool_use` blocks of the answer, their
 * results `tool_result` blocks of the next user turn.
 */
export function toAnthropic(messages: ChatMessage[], withTools = false): { system: string | undefined; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const out: AnthropicMessage[] = [];
  for (const m of messages) {
    if (m.role === 'system') {
      system.push(m.content);
      continue;
    }
    const next = messageOf(m, withTools);
    const last = out.at(-1);
    if (last?.role === next.role) join(last, next);
    else out.push(next);
  }
  if (out[0]?.role === 'assistant') out.unshift({ role: 'user', content: '(continuing the conversation)' });
  return { system: system.length > 0 ? system.join('\n\n') : undefined, messages: out };
}

function toolFields(request: ChatRequest) {
  if (request.tools === undefined || request.tools.length === 0) return {};
  const choice = request.toolChoice ?? 'auto';
  const type = typeof choice === 'object' ? { type: 'tool', name: choice.name } : { type: choice === 'required' ? 'any' : choice };
  return {
    tools: request.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.parameters })),
    tool_choice: { ...type, ...(request.parallelToolCalls === false && type.type !== 'none' ? { disable_parallel_tool_use: true } : {}) },
  };
}

export function messagesBody(request: ChatRequest): string {
  const { system, messages } = toAnthropic(request.messages, (request.tools?.length ?? 0) > 0);
  return JSON.stringify({
    model: request.model,
    max_tokens: request.maxOutputTokens,
    ...(system === undefined ? {} : { system }),
    messages,
    ...toolFields(request),
    stream: true,
    ...(request.temperature === undefined ? {} : { temperature: Math.min(1, request.temperature) }),
    ...(request.topP === undefined ? {} : { top_p: request.topP }),
  });
}

const STOP: Record<string, FinishReason> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

interface AnthropicEvent {
  type: string;
  index?: number;
  message?: { usage?: Record<string, number | undefined> };
  content_block?: { type?: string; name?: string };
  delta?: { type?: string; text?: string; partial_json?: string; stop_reason?: string | null };
  usage?: { output_tokens?: number };
  error?: { type?: string; message?: string };
}

const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);

export function createAnthropicProvider(config: ProviderConfig): Provider {
  const http = new UpstreamHttp(config);
  const path = http.path('messages');
  const headers = {
    'anthropic-version': API_VERSION,
    ...config.headers,
    ...(config.apiKey === undefined ? {} : { 'x-api-key': config.apiKey }),
  };

  return {
    async *stream(request) {
      const call = await http.post(path, headers, messagesBody(request), request.signal, request.onSent);
      let input = 0;
      let cached = 0;
      const text = new StorableText();
      const calls = new ToolCallStream();
      for await (const batch of jsonEvents(call)) {
        for (const { data } of batch) {
          const event = data as AnthropicEvent;
          // Held-back text belongs before whatever ends its block or the message.
          if (event.type === 'content_block_stop' || event.type === 'message_delta' || event.type === 'message_stop') {
            const rest = text.flush();
            if (rest !== '') yield { type: 'text', text: rest };
          }
          switch (event.type) {
            case 'message_start': {
              const u = event.message?.usage ?? {};
              cached = n(u.cache_read_input_tokens);
              input = n(u.input_tokens) + n(u.cache_creation_input_tokens) + cached;
              break;
            }
            case 'content_block_start':
              if (event.content_block?.type === 'tool_use') yield* calls.piece(n(event.index), event.content_block.name, undefined);
              break;
            case 'content_block_delta':
              if (event.delta?.type === 'text_delta' && typeof event.delta.text === 'string' && event.delta.text !== '') {
                const clean = text.push(event.delta.text);
                if (clean !== '') yield { type: 'text', text: clean };
              } else if (event.delta?.type === 'input_json_delta') {
                yield* calls.piece(n(event.index), undefined, event.delta.partial_json);
              }
              break;
            case 'content_block_stop':
              yield* calls.end(n(event.index));
              break;
            case 'message_delta':
              yield* calls.endAll();
              if (typeof event.delta?.stop_reason === 'string') yield { type: 'finish', reason: STOP[event.delta.stop_reason] ?? 'other' };
              yield { type: 'usage', usage: { inputTokens: input, outputTokens: n(event.usage?.output_tokens), cachedTokens: cached, reasoningTokens: 0 } };
              break;
            case 'message_stop':
              return;
            case 'error':
              throw new UpstreamError('protocol', `upstream sent an error event: ${event.error?.type ?? 'unknown'}: ${event.error?.message ?? ''}`);
            default:
              break; // ping, and event types added later
          }
        }
      }
      throw new UpstreamError('protocol', 'upstream stream ended before message_stop');
    },
    close: () => http.close(),
  };
}
