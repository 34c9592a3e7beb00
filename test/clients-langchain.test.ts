import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { offeredTools, resetUpstream, sentMessages, sentTranscript, startClientServer } from './helpers/clients.ts';
import type { Harness } from './helpers/harness.ts';

/**
 * LangChain's ChatOpenAI on the Responses API, configured with nothing but our
 * base URL and an API key: invoke, stream, and a tool round trip in which the
 * application runs the tool and sends its result back as a ToolMessage.
 */

let h: Harness;
let model: ChatOpenAI;

beforeAll(async () => {
  h = await startClientServer();
  model = new ChatOpenAI({ model: 'auto', apiKey: h.tenant.key, configuration: { baseURL: `${h.origin}/v1` }, useResponsesApi: true });
});
afterAll(async () => h.close());
beforeEach(() => resetUpstream(h));

describe('LangChain ChatOpenAI with useResponsesApi', () => {
  it('invokes the model', async () => {
    h.upstream.queue.push({ chunks: ['Bonjour ', 'Ada.'], usage: { prompt_tokens: 7, completion_tokens: 2 } });
    const answer = await model.invoke([new HumanMessage('Say hello to Ada in French.')]);
    expect(answer).toBeInstanceOf(AIMessage);
    expect(answer.text).toBe('Bonjour Ada.');
    expect(answer.tool_calls).toEqual([]);
    expect(answer.usage_metadata).toMatchObject({ input_tokens: 7, output_tokens: 2, total_tokens: 9 });
    expect(sentTranscript(h, 0)).toEqual([{ role: 'user', text: 'Say hello to Ada in French.' }]);
  });

  it('streams the answer in chunks', async () => {
    h.upstream.queue.push({ chunks: ['One, ', 'two, ', 'three.'] });
    const pieces: string[] = [];
    for await (const chunk of await model.stream('Count to three')) if (chunk.text !== '') pieces.push(chunk.text);
    expect(pieces).toEqual(['One, ', 'two, ', 'three.']);
  });

  it('binds a tool: the call comes back as tool_calls, its ToolMessage reaches the model, the model answers', async () => {
    const ran: string[] = [];
    const getWeather = tool(
      async ({ city }) => {
        ran.push(city);
        return JSON.stringify({ city, temp: 21 });
      },
      { name: 'get_weather', description: 'The current weather in a city', schema: z.object({ city: z.string() }) },
    );
    const withTools = model.bindTools([getWeather]);

    h.upstream.queue.push({ calls: [{ name: 'get_weather', arguments: '{"city":"Brussels"}' }], chunks: [] });
    const messages: BaseMessage[] = [new HumanMessage('What is the weather in Brussels?')];
    const call = await withTools.invoke(messages);
    expect(offeredTools(h, 0)).toEqual(['get_weather']);
    expect(call.tool_calls).toEqual([{ type: 'tool_call', name: 'get_weather', args: { city: 'Brussels' }, id: expect.any(String) }]);

    // The application runs the tool; invoking a LangChain tool with the call gives the ToolMessage.
    const result: unknown = await getWeather.invoke(call.tool_calls![0]!);
    expect(result).toBeInstanceOf(ToolMessage);
    expect(ran).toEqual(['Brussels']);

    h.upstream.queue.push({ chunks: ['It is 21 degrees in Brussels.'] });
    const final = await withTools.invoke([...messages, call, result as ToolMessage]);
    expect(final.text).toBe('It is 21 degrees in Brussels.');
    expect(final.tool_calls).toEqual([]);

    const sent = sentMessages(h, 1);
    expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    const callId = sent[1]!.tool_calls?.[0]?.id;
    expect(sent[1]).toMatchObject({ tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Brussels"}' } }] });
    expect(sent[2]).toEqual({ role: 'tool', tool_call_id: callId, content: JSON.stringify({ city: 'Brussels', temp: 21 }) });
  });
});
