import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';

let h: Harness;
let client: OpenAI;

beforeAll(async () => {
  h = await startHarness();
  client = new OpenAI({ apiKey: h.tenant.key, baseURL: `${h.origin}/v1`, maxRetries: 0 });
});
afterAll(async () => h.close());
beforeEach(() => {
  h.upstream.queue.length = 0;
  h.upstream.fallback = {};
});

describe('responses through the official OpenAI SDK', () => {
  it('creates a response with stream: false', async () => {
    h.upstream.queue.push({ chunks: ['Data ', 'sovereignty ', 'matters.'], usage: { prompt_tokens: 21, completion_tokens: 4 } });
    const res = await client.responses.create({ model: 'auto', input: 'What is data sovereignty?', stream: false });
    expect(res.object).toBe('response');
    expect(res.status).toBe('completed');
    expect(res.model).toBe('llama-small');
    expect(res.output_text).toBe('Data sovereignty matters.');
    expect(res.output).toHaveLength(1);
    expect(res.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    expect(res.usage).toEqual({
      input_tokens: 21,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 4,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 25,
    });
    const raw = res as unknown as Record<string, unknown>;
    expect(raw.conversation_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(raw.created_at).toBeGreaterThan(1_700_000_000_000);
    expect(raw.completed_at).toBeGreaterThanOrEqual(raw.created_at as number);
  });

  it('streams every event in order with gapless sequence numbers', async () => {
    h.upstream.queue.push({ chunks: ['One', ' two', ' three'] });
    const stream = await client.responses.create({ model: 'auto', input: 'Count', stream: true });
    const events: { type: string; sequence_number: number }[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const completed = events.at(-1) as unknown as { response: { output_text: string; status: string } };
    expect(completed.response).toMatchObject({ output_text: 'One two three', status: 'completed' });
  });

  it('gives the same document through responses.stream().finalResponse() as stream: false', async () => {
    h.upstream.queue.push({ chunks: ['Same', ' answer'] });
    const streamed = await client.responses.stream({ model: 'auto', input: 'Hi' }).finalResponse();
    h.upstream.queue.push({ chunks: ['Same', ' answer'] });
    const plain = await client.responses.create({ model: 'auto', input: 'Hi', stream: false });
    // Ids and times differ between two responses; `parsed` and `output_parsed` are the SDK's own additions.
    const strip = (r: object) => {
      const { id: _i, created_at: _c, completed_at: _d, conversation_id: _e, conversation: _f, output_parsed: _p, output, ...rest } = r as Record<string, unknown>;
      type Item = { id: string; content: Record<string, unknown>[] };
      return {
        ...rest,
        output: (output as Item[]).map(({ id: _x, content, ...item }) => ({ ...item, content: content.map(({ parsed: _q, ...part }) => part) })),
      };
    };
    expect(streamed.output_text).toBe('Same answer');
    expect(strip(streamed)).toEqual(strip(plain));
  });

  it('retrieves a stored response for its owner only', async () => {
    const created = await client.responses.create({ model: 'auto', input: 'Keep me', stream: false });
    const got = await client.responses.retrieve(created.id);
    expect(got).toEqual(created);

    const other = await (await import('./helpers/app.ts')).createTenant(h.app);
    const stranger = new OpenAI({ apiKey: other.key, baseURL: `${h.origin}/v1`, maxRetries: 0 });
    await expect(stranger.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('raises AuthenticationError for a bad key', async () => {
    const bad = new OpenAI({ apiKey: 'eugpt_nope', baseURL: `${h.origin}/v1`, maxRetries: 0 });
    await expect(bad.responses.create({ model: 'auto', input: 'x', stream: false })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(bad.responses.create({ model: 'auto', input: 'x', stream: true })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('raises NotFoundError for an unknown conversation, and for another user\'s', async () => {
    const unknown = client.responses.create({ model: 'auto', input: 'x', stream: false, conversation_id: crypto.randomUUID() } as never);
    await expect(unknown).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(unknown).rejects.toMatchObject({ code: 'conversation_not_found' });

    const mine = await client.responses.create({ model: 'auto', input: 'mine', stream: false });
    const other = await (await import('./helpers/app.ts')).createTenant(h.app);
    const stranger = new OpenAI({ apiKey: other.key, baseURL: `${h.origin}/v1`, maxRetries: 0 });
    const conversation_id = (mine as unknown as { conversation_id: string }).conversation_id;
    const theirs = stranger.responses.create({ model: 'auto', input: 'x', stream: false, conversation_id } as never);
    await expect(theirs).rejects.toMatchObject({ status: 404, code: 'conversation_not_found' });
  });

  it('aborts the upstream when the SDK stops reading mid-stream, and stores the response incomplete with usage', async () => {
    h.upstream.queue.push({ chunks: Array.from({ length: 300 }, (_, i) => `t${i} `), delayBetweenMs: 10 });
    const seen = h.upstream.requests.length;
    const stream = await client.responses.create({ model: 'auto', input: 'Tell me everything', stream: true });
    let id = '';
    for await (const event of stream) {
      if (event.type === 'response.created') id = event.response.id;
      if (event.type === 'response.output_text.delta') break; // leaving the loop aborts the request
    }
    const upstreamCall = h.upstream.requests[seen]!;
    await upstreamCall.closed;
    expect(upstreamCall.finished).toBe(false);
    // The response exists from admission on, in progress until the cut stream is stored.
    const stored = await eventually(async () => {
      const got = await client.responses.retrieve(id);
      return got.status === 'in_progress' ? undefined : got;
    });
    expect(stored.status).toBe('incomplete');
    expect(stored.incomplete_details).toEqual({ reason: 'client_disconnected' });
    expect(stored.usage!.output_tokens).toBeGreaterThan(0);
    expect(stored.usage!.input_tokens).toBeGreaterThan(0);
  });

  it('carries a three-turn conversation: history and instructions reach the upstream', async () => {
    h.upstream.queue.push({ chunks: ['Bonjour !'] }, { chunks: ['Paris.'] }, { chunks: ['Oui.'] });
    const first = await client.responses.create({
      model: 'auto',
      input: 'Hello',
      instructions: 'Always answer in French.',
      stream: false,
    });
    const conversation_id = (first as unknown as { conversation_id: string }).conversation_id;
    await client.responses.create({ model: 'auto', input: 'Capital of France?', conversation_id, stream: false } as never);
    // The third turn continues through previous_response_id, as the SDKs do.
    const seen = h.upstream.requests.length;
    const third = await client.responses.create({ model: 'auto', input: 'Sure?', previous_response_id: first.id, stream: false });
    expect((third as unknown as { conversation_id: string }).conversation_id).toBe(conversation_id);

    const sent = h.upstream.requests[seen]!.body.messages;
    expect(sent).toEqual([
      { role: 'system', content: 'Always answer in French.' },
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'Bonjour !' },
      { role: 'user', content: 'Capital of France?' },
      { role: 'assistant', content: 'Paris.' },
      { role: 'user', content: 'Sure?' },
    ]);
  });
});
