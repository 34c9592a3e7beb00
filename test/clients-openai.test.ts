import OpenAI from 'openai';
import type { ResponseFunctionToolCall, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { gate, offeredTools, resetUpstream, sentMessages, sentTranscript, startClientServer, WEATHER_PARAMETERS } from './helpers/clients.ts';
import { eventually, type Harness } from './helpers/harness.ts';
import { wireCallId } from '../src/providers/openai-compatible.ts';

/**
 * The official OpenAI SDK, configured with nothing but our base URL and an
 * API key, through every Responses route it has: create (JSON and SSE), the
 * stream helper, retrieve, delete, input items, cancel, a client function
 * tool round trip and conversations.
 */

let h: Harness;
let client: OpenAI;

beforeAll(async () => {
  h = await startClientServer();
  client = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key });
});
afterAll(async () => h.close());
beforeEach(() => resetUpstream(h));

const weatherTool = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'The current weather in a city',
  parameters: WEATHER_PARAMETERS,
  strict: true,
};

/** The text of each message item, as input items list them. */
const itemTexts = (items: { type: string; content?: unknown }[]) =>
  items.map((item) => (item.type === 'message' ? (item.content as { text: string }[]).map((p) => p.text).join('') : item.type));

describe('responses.create', () => {
  it('answers one JSON document when the request has no stream field, as the SDK expects', async () => {
    h.upstream.queue.push({ chunks: ['Plain ', 'JSON.'] });
    // The SDK leaves `stream` out and asks for application/json: it parses the body as one document.
    const { data, response } = await client.responses.create({ model: 'auto', input: 'Hello' }).withResponse();
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(data).toMatchObject({ object: 'response', status: 'completed', output_text: 'Plain JSON.' });
    expect(data.output).toEqual([expect.objectContaining({ type: 'message', role: 'assistant', status: 'completed' })]);
  });

  it('answers JSON with stream: false', async () => {
    h.upstream.queue.push({ chunks: ['Data ', 'sovereignty.'], usage: { prompt_tokens: 12, completion_tokens: 3 } });
    const res = await client.responses.create({ model: 'auto', input: 'What matters?', stream: false });
    expect(res).toMatchObject({ object: 'response', status: 'completed', output_text: 'Data sovereignty.' });
    expect(res.usage).toMatchObject({ input_tokens: 12, output_tokens: 3, total_tokens: 15 });
    expect(sentTranscript(h, 0).at(-1)).toEqual({ role: 'user', text: 'What matters?' });
  });

  it('streams events with stream: true, ending with the completed response', async () => {
    h.upstream.queue.push({ chunks: ['One', ' two'] });
    const stream = await client.responses.create({ model: 'auto', input: 'Count', stream: true });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events[0]!.type).toBe('response.created');
    expect(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta)).toEqual(['One', ' two']);
    const last = events.at(-1)!;
    expect(last.type).toBe('response.completed');
    expect(last.type === 'response.completed' && last.response).toMatchObject({ status: 'completed', output_text: 'One two' });
  });

  it('gives the final response through the responses.stream() helper', async () => {
    h.upstream.queue.push({ chunks: ['Streamed ', 'and ', 'gathered.'] });
    const stream = client.responses.stream({ model: 'auto', input: 'Hi' });
    const deltas: string[] = [];
    stream.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(deltas.join('')).toBe('Streamed and gathered.');
    expect(final).toMatchObject({ status: 'completed', output_text: 'Streamed and gathered.' });
    expect(await client.responses.retrieve(final.id)).toMatchObject({ id: final.id, status: 'completed', output_text: 'Streamed and gathered.' });
  });
});

describe('stored responses', () => {
  it('retrieves a response as it was created', async () => {
    h.upstream.queue.push({ chunks: ['Keep me.'] });
    const created = await client.responses.create({ model: 'auto', input: 'Store this', stream: false });
    expect(await client.responses.retrieve(created.id)).toEqual(created);
  });

  it("deletes a response with OpenAI's deletion object; it is gone afterwards", async () => {
    h.upstream.queue.push({ chunks: ['Short-lived.'] });
    const created = await client.responses.create({ model: 'auto', input: 'Forget this', stream: false });
    // The SDK types the result as void, but the body is the deletion object.
    const { data, response } = await client.responses.delete(created.id).withResponse();
    expect(response.status).toBe(200);
    expect(data as unknown).toEqual({ id: created.id, object: 'response', deleted: true });
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.inputItems.list(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('is 404 for ids that do not exist, whatever their form', async () => {
    await expect(client.responses.retrieve('resp_abc')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.retrieve(crypto.randomUUID())).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.delete('resp_abc')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.inputItems.list('resp_abc')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.cancel('resp_abc')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.create({ model: 'auto', input: 'Go on', previous_response_id: 'resp_abc', stream: false })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    // Nothing was sent to the model for a turn that continues nothing.
    expect(h.upstream.requests).toHaveLength(0);
  });
});

describe('responses.inputItems.list', () => {
  const input = [
    { role: 'user' as const, content: 'First question' },
    { role: 'assistant' as const, content: 'First answer' },
    { role: 'user' as const, content: 'Second question' },
    { role: 'assistant' as const, content: 'Second answer' },
    { role: 'user' as const, content: 'Third question' },
  ];
  const texts = input.map((m) => m.content);
  let id: string;

  beforeEach(async () => {
    h.upstream.queue.push({ chunks: ['Noted.'] });
    id = (await client.responses.create({ model: 'auto', input, stream: false })).id;
  });

  it('lists the input items newest first by default, as messages with ids', async () => {
    const page = await client.responses.inputItems.list(id);
    expect(itemTexts(page.data)).toEqual([...texts].reverse());
    expect(page.has_more).toBe(false);
    expect(page.data.map((item) => item.type)).toEqual(Array(5).fill('message'));
    expect(page.data.map((item) => (item as { role: string }).role)).toEqual(['user', 'assistant', 'user', 'assistant', 'user']);
    const ids = page.data.map((item) => item.id);
    expect(new Set(ids).size).toBe(5);
    for (const itemId of ids) expect(itemId).toEqual(expect.any(String));
  });

  it("answers OpenAI's list envelope", async () => {
    // The raw body: the SDK's page object keeps only `data` and `has_more`.
    const raw = await client.responses.inputItems.list(id, { order: 'asc', limit: 2 }).asResponse();
    expect(raw.status).toBe(200);
    const body = (await raw.json()) as { data: { id: string }[] };
    expect(body.data).toHaveLength(2);
    expect(body).toMatchObject({ object: 'list', has_more: true, first_id: body.data[0]!.id, last_id: body.data[1]!.id });
  });

  it('pages through the items with limit and after, in either order', async () => {
    const first = await client.responses.inputItems.list(id, { order: 'asc', limit: 2 });
    expect(itemTexts(first.data)).toEqual(texts.slice(0, 2));
    expect(first.has_more).toBe(true);
    const second = await first.getNextPage();
    expect(itemTexts(second.data)).toEqual(texts.slice(2, 4));
    const third = await second.getNextPage();
    expect(itemTexts(third.data)).toEqual(texts.slice(4));
    expect(third.has_more).toBe(false);
    expect(third.hasNextPage()).toBe(false);

    // `after` by hand: everything after the first item, oldest first.
    const after = await client.responses.inputItems.list(id, { order: 'asc', after: first.data[0]!.id });
    expect(itemTexts(after.data)).toEqual(texts.slice(1));
    // Newest first, after the newest.
    const newest = await client.responses.inputItems.list(id, { order: 'desc', limit: 1 });
    expect(itemTexts(newest.data)).toEqual(['Third question']);
    const older = await client.responses.inputItems.list(id, { order: 'desc', after: newest.data[0]!.id, limit: 2 });
    expect(itemTexts(older.data)).toEqual(['Second answer', 'Second question']);
    expect(older.has_more).toBe(true);

    // The SDK's auto-pagination walks every page.
    const all: string[] = [];
    for await (const item of client.responses.inputItems.list(id, { order: 'asc', limit: 2 })) all.push(...itemTexts([item]));
    expect(all).toEqual(texts);
  });

  it('lists a string input as one user message', async () => {
    h.upstream.queue.push({ chunks: ['Yes.'] });
    const created = await client.responses.create({ model: 'auto', input: 'Just this', stream: false });
    const page = await client.responses.inputItems.list(created.id);
    expect(page.data).toEqual([expect.objectContaining({ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Just this' }] })]);
  });
});

describe('responses.cancel', () => {
  it('stops a streamed response in flight: the stream ends, the model call is closed, the response is cancelled', async () => {
    const held = gate();
    // The fake sends the first chunk, then holds the stream open until the test lets it go.
    h.upstream.queue.push({ chunks: ['Partial ', 'never sent'], hold: held.promise });
    try {
      const stream = await client.responses.create({ model: 'auto', input: 'Write a long essay', stream: true });
      let id = '';
      let cancelled: OpenAI.Responses.Response | undefined;
      const events: ResponseStreamEvent[] = [];
      // The loop must end on its own once the response is cancelled, without an error.
      for await (const event of stream) {
        events.push(event);
        if (event.type === 'response.created') id = event.response.id;
        if (event.type === 'response.output_text.delta' && cancelled === undefined) cancelled = await client.responses.cancel(id);
      }
      // The cancel answers with the response object: incomplete, for the reason that it was cancelled (README, "Cancel").
      expect(cancelled).toMatchObject({ id, object: 'response', status: 'incomplete', incomplete_details: { reason: 'cancelled' } });
      expect(events.some((e) => e.type === 'response.completed' && e.response.status === 'completed')).toBe(false);
      expect(events.at(-1)).toMatchObject({ type: 'response.completed', response: { status: 'incomplete' } });
      expect(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta)).toEqual(['Partial ']);

      const upstreamCall = h.upstream.requests[0]!;
      await upstreamCall.closed;
      expect(upstreamCall.finished).toBe(false);
      const stored = await eventually(async () => {
        const got = await client.responses.retrieve(id);
        return got.status === 'in_progress' ? undefined : got;
      });
      expect(stored).toMatchObject({ id, status: 'incomplete', incomplete_details: { reason: 'cancelled' }, output_text: 'Partial ' });
    } finally {
      held.open();
    }
  });
});

describe('a client function tool', () => {
  it('ends the response with the call, and the next turn gives the model the call and its output', async () => {
    h.upstream.queue.push({ calls: [{ name: 'get_weather', arguments: '{"city":"Brussels"}' }], chunks: [] });
    const first = await client.responses.create({ model: 'auto', input: 'What is the weather in Brussels?', tools: [weatherTool], stream: false });
    expect(first.status).toBe('completed');
    const call = first.output.find((item): item is ResponseFunctionToolCall => item.type === 'function_call');
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', arguments: '{"city":"Brussels"}' });
    expect(call!.call_id).toEqual(expect.any(String));
    // The model was offered the client's function and nothing else, as declared.
    expect(offeredTools(h, 0)).toEqual(['get_weather']);
    expect(h.upstream.requests[0]!.body.tools).toEqual([
      { type: 'function', function: expect.objectContaining({ name: 'get_weather', parameters: WEATHER_PARAMETERS, strict: true }) },
    ]);

    h.upstream.queue.push({ chunks: ['It is 21 degrees.'] });
    const second = await client.responses.create({
      model: 'auto',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call!.call_id, output: '{"temp":21}' }],
      tools: [weatherTool],
      stream: false,
    });
    expect(second).toMatchObject({ status: 'completed', output_text: 'It is 21 degrees.', previous_response_id: first.id });

    const sent = sentMessages(h, 1);
    expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(sentTranscript(h, 1)[0]).toEqual({ role: 'user', text: 'What is the weather in Brussels?' });
    expect(sent[1]).toMatchObject({
      role: 'assistant',
      // Upstream, each call goes by a short id of its own (the same for the call and its output).
      tool_calls: [{ id: wireCallId(call!.call_id), type: 'function', function: { name: 'get_weather', arguments: '{"city":"Brussels"}' } }],
    });
    expect(sent[2]).toEqual({ role: 'tool', tool_call_id: wireCallId(call!.call_id), content: '{"temp":21}' });

    // The second response's input is the tool output the client sent.
    const items = await client.responses.inputItems.list(second.id);
    expect(items.data).toEqual([expect.objectContaining({ type: 'function_call_output', call_id: call!.call_id, output: '{"temp":21}' })]);
  });
});

describe('conversations', () => {
  it('continues a conversation named by its id, as a string and as {id}', async () => {
    h.upstream.queue.push({ chunks: ['Hello Ada.'] }, { chunks: ['You are Ada.'] }, { chunks: ['Still Ada.'] });
    const first = await client.responses.create({ model: 'auto', input: 'My name is Ada.', stream: false });
    const conversation = first.conversation!.id;
    expect(conversation).toEqual(expect.any(String));

    const second = await client.responses.create({ model: 'auto', input: 'What is my name?', conversation, stream: false });
    expect(second.conversation).toEqual({ id: conversation });
    expect(sentTranscript(h, 1)).toEqual([
      { role: 'user', text: 'My name is Ada.' },
      { role: 'assistant', text: 'Hello Ada.' },
      { role: 'user', text: 'What is my name?' },
    ]);

    const third = await client.responses.create({ model: 'auto', input: 'Sure?', conversation: { id: conversation }, stream: false });
    expect(third.conversation).toEqual({ id: conversation });
    expect(sentTranscript(h, 2)).toEqual([
      { role: 'user', text: 'My name is Ada.' },
      { role: 'assistant', text: 'Hello Ada.' },
      { role: 'user', text: 'What is my name?' },
      { role: 'assistant', text: 'You are Ada.' },
      { role: 'user', text: 'Sure?' },
    ]);
  });

  it('is 404 for a conversation that does not exist', async () => {
    await expect(client.responses.create({ model: 'auto', input: 'Hi', conversation: 'conv_abc', stream: false })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.create({ model: 'auto', input: 'Hi', conversation: { id: crypto.randomUUID() }, stream: false })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    expect(h.upstream.requests).toHaveLength(0);
  });
});
