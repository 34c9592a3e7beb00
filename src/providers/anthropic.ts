import type { ProviderConfig } from '../router/catalog.ts';
import { jsonEvents, UpstreamHttp } from './http.ts';
import { StorableText } from './storable-text.ts';
import { UpstreamError, type ChatMessage, type ChatRequest, type FinishReason, type Provider } from './types.ts';

/**
 * Anthropic's Messages API, streamed: message_start (input usage),
 * content_block_start/delta/stop, message_delta (stop reason, output usage),
 * message_stop, ping and error events, mapped to the internal union.
 * `base_url` is the API root with its version, e.g. https://api.anthropic.com/v1.
 */

const API_VERSION = '2023-06-01';

interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: string;
}

/**
 * The Messages API takes the system prompt apart, and turns that alternate
 * and open with the user: system messages are gathered, neighbours of one
 * role are joined.
 */
export function toAnthropic(messages: ChatMessage[]): { system: string | undefined; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const out: AnthropicMessage[] = [];
  for (const m of messages) {
    if (m.role === 'system') {
      system.push(m.content);
      continue;
    }
    const last = out.at(-1);
    if (last?.role === m.role) last.content += `\n\n${m.content}`;
    else out.push({ role: m.role, content: m.content });
  }
  if (out[0]?.role === 'assistant') out.unshift({ role: 'user', content: '(continuing the conversation)' });
  return { system: system.length > 0 ? system.join('\n\n') : undefined, messages: out };
}

export function messagesBody(request: ChatRequest): string {
  const { system, messages } = toAnthropic(request.messages);
  return JSON.stringify({
    model: request.model,
    max_tokens: request.maxOutputTokens,
    ...(system === undefined ? {} : { system }),
    messages,
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
  message?: { usage?: Record<string, number | undefined> };
  delta?: { type?: string; text?: string; stop_reason?: string | null };
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
      for await (const { data } of jsonEvents(call)) {
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
          case 'content_block_delta':
            if (event.delta?.type === 'text_delta' && typeof event.delta.text === 'string' && event.delta.text !== '') {
              const clean = text.push(event.delta.text);
              if (clean !== '') yield { type: 'text', text: clean };
            }
            break;
          case 'message_delta':
            if (typeof event.delta?.stop_reason === 'string') yield { type: 'finish', reason: STOP[event.delta.stop_reason] ?? 'other' };
            yield { type: 'usage', usage: { inputTokens: input, outputTokens: n(event.usage?.output_tokens), cachedTokens: cached, reasoningTokens: 0 } };
            break;
          case 'message_stop':
            return;
          case 'error':
            throw new UpstreamError('protocol', `upstream sent an error event: ${event.error?.type ?? 'unknown'}: ${event.error?.message ?? ''}`);
          default:
            break; // ping, content_block_start/stop, and event types added later
        }
      }
      throw new UpstreamError('protocol', 'upstream stream ended before message_stop');
    },
    close: () => http.close(),
  };
}
