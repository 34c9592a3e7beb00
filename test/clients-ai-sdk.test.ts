import { createOpenAI, type OpenAIProvider } from '@ai-sdk/openai';
import { generateText, stepCountIs, streamText, tool, type ModelMessage } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { resetUpstream, sentMessages, sentTranscript, startClientServer } from './helpers/clients.ts';
import type { Harness } from './helpers/harness.ts';

/**
 * The Vercel AI SDK's OpenAI provider, configured with nothing but our base
 * URL and an API key. Its default model speaks the Responses API; it leaves
 * `stream` out of non-streaming calls, and with its default `store: true` it
 * sends earlier answers back as item references instead of their text.
 */

let h: Harness;
let openai: OpenAIProvider;

beforeAll(async () => {
  h = await startClientServer();
  openai = createOpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key });
});
afterAll(async () => h.close());
beforeEach(() => resetUpstream(h));

describe('the AI SDK', () => {
  it('generates text (a request without a stream field gets JSON)', async () => {
    h.upstream.queue.push({ chunks: ['Brussels ', 'is the capital.'], usage: { prompt_tokens: 9, completion_tokens: 4 } });
    const result = await generateText({ model: openai('auto'), prompt: 'What is the capital of Belgium?' });
    expect(result.text).toBe('Brussels is the capital.');
    expect(result.finishReason).toBe('stop');
    expect(result.usage).toMatchObject({ inputTokens: 9, outputTokens: 4, totalTokens: 13 });
    expect(result.response.modelId).toBe('llama-small');
    expect(sentTranscript(h, 0)).toEqual([{ role: 'user', text: 'What is the capital of Belgium?' }]);
  });

  it('streams text', async () => {
    h.upstream.queue.push({ chunks: ['One, ', 'two, ', 'three.'] });
    const errors: unknown[] = [];
    const result = streamText({ model: openai('auto'), prompt: 'Count to three', onError: ({ error }) => void errors.push(error) });
    const deltas: string[] = [];
    for await (const delta of result.textStream) deltas.push(delta);
    expect(errors).toEqual([]);
    expect(deltas.join('')).toBe('One, two, three.');
    expect(await result.text).toBe('One, two, three.');
    expect(await result.finishReason).toBe('stop');
  });

  it('runs a multi-step turn: the model calls a tool, the SDK runs it, the model answers', async () => {
    const ran: { city: string }[] = [];
    const getWeather = tool({
      description: 'The current weather in a city',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        ran.push({ city });
        return { city, temp: 21 };
      },
    });
    h.upstream.queue.push({ calls: [{ name: 'get_weather', arguments: '{"city":"Brussels"}' }], chunks: [] }, { chunks: ['It is 21 degrees in Brussels.'] });

    const result = await generateText({
      model: openai('auto'),
      tools: { get_weather: getWeather },
      stopWhen: stepCountIs(3),
      prompt: 'What is the weather in Brussels?',
    });
    expect(ran).toEqual([{ city: 'Brussels' }]);
    expect(result.text).toBe('It is 21 degrees in Brussels.');
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0]!.toolCalls).toEqual([expect.objectContaining({ toolName: 'get_weather', input: { city: 'Brussels' } })]);

    // The SDK declared its tool; the model was offered that one only.
    expect((h.upstream.requests[0]!.body.tools as { function: { name: string } }[]).map((t) => t.function.name)).toEqual(['get_weather']);
    // Step 2 reached the model with the call and the SDK's result of it.
    const sent = sentMessages(h, 1);
    expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    const callId = sent[1]!.tool_calls?.[0]?.id;
    expect(sent[1]).toMatchObject({ role: 'assistant', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Brussels"}' } }] });
    expect(sent[2]).toEqual({ role: 'tool', tool_call_id: callId, content: JSON.stringify({ city: 'Brussels', temp: 21 }) });
  });

  it('carries a two-turn conversation whose earlier answer it sends as an item reference', async () => {
    h.upstream.queue.push({ chunks: ['Nice to meet you, Ada.'] }, { chunks: ['Your name is Ada.'] });
    const question: ModelMessage = { role: 'user', content: 'My name is Ada.' };
    const first = await generateText({ model: openai('auto'), messages: [question] });
    expect(first.text).toBe('Nice to meet you, Ada.');
    // The answer carries the server's item id, so the next request names it instead of repeating it.
    const answer = first.response.messages[0]!;
    expect(answer.role).toBe('assistant');
    const parts = answer.content as { type: string; providerOptions?: { openai?: { itemId?: unknown } } }[];
    expect(parts[0]!.providerOptions?.openai?.itemId).toEqual(expect.stringMatching(/\S/));

    const second = await generateText({
      model: openai('auto'),
      messages: [question, ...first.response.messages, { role: 'user', content: 'What is my name?' }],
    });
    expect(second.text).toBe('Your name is Ada.');
    expect(sentTranscript(h, 1)).toEqual([
      { role: 'user', text: 'My name is Ada.' },
      { role: 'assistant', text: 'Nice to meet you, Ada.' },
      { role: 'user', text: 'What is my name?' },
    ]);
  });
});
