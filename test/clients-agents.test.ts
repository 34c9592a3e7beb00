import { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { offeredTools, resetUpstream, sentMessages, sentTranscript, startClientServer } from './helpers/clients.ts';
import type { Harness } from './helpers/harness.ts';

/**
 * The OpenAI Agents SDK on the Responses API, its OpenAI client configured
 * with nothing but our base URL and an API key. An agent with one function
 * tool runs a whole turn: the first model call asks for the tool, the SDK
 * runs it, and the second model call gives the final output.
 */

let h: Harness;

beforeAll(async () => {
  h = await startClientServer();
  // Traces would go to OpenAI's own servers; a self-hosted deployment sends none.
  setTracingDisabled(true);
  setDefaultOpenAIClient(new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key }));
  setOpenAIAPI('responses');
});
afterAll(async () => h.close());
beforeEach(() => resetUpstream(h));

describe('the Agents SDK', () => {
  it('runs an agent whose tool the model calls, and returns the final output', async () => {
    const ran: { city: string }[] = [];
    const getWeather = tool({
      name: 'get_weather',
      description: 'The current weather in a city',
      parameters: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        ran.push({ city });
        return `21 degrees and sunny in ${city}`;
      },
    });
    const agent = new Agent({ name: 'Weather assistant', instructions: 'Answer questions about the weather.', tools: [getWeather] });

    h.upstream.queue.push({ calls: [{ name: 'get_weather', arguments: '{"city":"Brussels"}' }], chunks: [] }, { chunks: ['It is 21 degrees and sunny in Brussels.'] });
    const result = await run(agent, 'What is the weather in Brussels?');

    expect(ran).toEqual([{ city: 'Brussels' }]);
    expect(result.finalOutput).toBe('It is 21 degrees and sunny in Brussels.');
    expect(h.upstream.requests).toHaveLength(2);

    // The first call carried the agent's instructions, the question and its one tool.
    expect(offeredTools(h, 0)).toEqual(['get_weather']);
    expect(sentTranscript(h, 0)).toEqual([
      { role: 'system', text: 'Answer questions about the weather.' },
      { role: 'user', text: 'What is the weather in Brussels?' },
    ]);
    // The second call got the model's call and the tool's result, paired by id.
    const sent = sentMessages(h, 1);
    expect(sent.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'tool']);
    const callId = sent[2]!.tool_calls?.[0]?.id;
    expect(sent[2]).toMatchObject({ tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Brussels"}' } }] });
    expect(sent[3]).toEqual({ role: 'tool', tool_call_id: callId, content: '21 degrees and sunny in Brussels' });
  });
});
