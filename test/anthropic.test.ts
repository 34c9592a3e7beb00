import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toAnthropic } from '../src/providers/anthropic.ts';
import { bearer } from './helpers/app.ts';
import { startFakeAnthropic } from './helpers/fake-anthropic.ts';
import { startFakeUpstream } from './helpers/fake-openai.ts';
import type { FakeUpstream } from './helpers/fake-server.ts';
import { startServer, writeConfigFile, type TestServer } from './helpers/harness.ts';

let anthropic: FakeUpstream;
let openai: FakeUpstream;
let viaAnthropic: TestServer;
let viaOpenAI: TestServer;

const modelFor = (provider: string) => ({ id: 'the-model', provider, upstream_model: 'up-model', context_window: 8192, max_output_tokens: 1024 });

beforeAll(async () => {
  anthropic = await startFakeAnthropic();
  openai = await startFakeUpstream();
  viaAnthropic = await startServer(
    writeConfigFile({
      providers: [{ id: 'claude', type: 'anthropic', base_url: anthropic.url, api_key_env: 'FAKE_UPSTREAM_KEY' }],
      models: [modelFor('claude')],
      router: { breaker: { failures: 1000 } },
    }),
  );
  viaOpenAI = await startServer(
    writeConfigFile({ providers: [{ id: 'oai', type: 'openai-compatible', base_url: openai.url }], models: [modelFor('oai')] }),
  );
});
afterAll(async () => {
  await viaAnthropic.close();
  await viaOpenAI.close();
  await anthropic.close();
  await openai.close();
});

const client = (s: TestServer) => new OpenAI({ apiKey: s.tenant.key, baseURL: `${s.origin}/v1`, maxRetries: 0 });

async function events(s: TestServer, input: string, instructions?: string) {
  const stream = await client(s).responses.create({ model: 'auto', input, stream: true, ...(instructions ? { instructions } : {}) });
  const out: Record<string, unknown>[] = [];
  for await (const e of stream) out.push(e as unknown as Record<string, unknown>);
  return out;
}

/** Ids and times differ between any two responses; the rest must not. */
function comparable(e: Record<string, unknown>): unknown {
  return JSON.parse(
    JSON.stringify(e, (key, value: unknown) =>
      ['id', 'item_id', 'created_at', 'completed_at', 'conversation_id'].includes(key) ? '*' : key === 'conversation' ? { id: '*' } : value,
    ),
  );
}

describe('the Anthropic adapter', () => {
  it('speaks the Messages API: key and version headers, system apart, max_tokens, streaming', async () => {
    anthropic.queue.push({ chunks: ['Bonjour', ' !'] });
    const res = await client(viaAnthropic).responses.create({ model: 'auto', input: 'Salut', instructions: 'Réponds en français.', stream: false, max_output_tokens: 200 });
    expect(res.output_text).toBe('Bonjour !');
    expect(res.model).toBe('the-model');
    const seen = anthropic.requests.at(-1)!;
    expect(seen.url).toBe('/v1/messages');
    expect(seen.headers['x-api-key']).toBe('sk-upstream-secret');
    expect(seen.headers['anthropic-version']).toBe('2023-06-01');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.body).toEqual({
      model: 'up-model',
      max_tokens: 200,
      system: 'Réponds en français.',
      messages: [{ role: 'user', content: 'Salut' }],
      stream: true,
    });
  });

  it('gives the same event sequence as the OpenAI-compatible adapter for the same answer', async () => {
    const script = { chunks: ['The', ' same', ' answer.'], usage: { prompt_tokens: 17, completion_tokens: 3 } };
    anthropic.queue.push(script);
    openai.queue.push(script);
    const a = await events(viaAnthropic, 'Same question');
    const o = await events(viaOpenAI, 'Same question');
    expect(a.map(comparable)).toEqual(o.map(comparable));
    expect(a.at(-1)).toMatchObject({ type: 'response.completed', response: { usage: { input_tokens: 17, output_tokens: 3 } } });
  });

  it('maps max_tokens to an incomplete answer', async () => {
    anthropic.queue.push({ chunks: ['cut'], finish: 'length' });
    const res = await client(viaAnthropic).responses.create({ model: 'auto', input: 'x', stream: false });
    expect(res.status).toBe('incomplete');
    expect(res.incomplete_details).toEqual({ reason: 'max_output_tokens' });
  });

  it('turns an overloaded upstream (529) into a plain 502 before the stream, and a dropped stream into an error event', async () => {
    anthropic.queue.push({ status: 529, errorBody: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' });
    const before = await viaAnthropic.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(viaAnthropic.tenant.key), payload: { input: 'x' } });
    expect(before.statusCode).toBe(502);
    expect(before.body).not.toContain('Overloaded');

    anthropic.queue.push({ chunks: ['a', 'b', 'c'], dropAfter: 2 });
    const during = await viaAnthropic.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(viaAnthropic.tenant.key), payload: { input: 'x' } });
    expect(during.statusCode).toBe(200);
    expect(during.body.trim().split('\n\n').at(-1)).toMatch(/"type":"error"/);
  });
});

describe('toAnthropic', () => {
  it('gathers system messages, joins neighbours of one role, and opens with the user', () => {
    expect(
      toAnthropic([
        { role: 'system', content: 'Be brief.' },
        { role: 'assistant', content: 'Earlier answer' },
        { role: 'user', content: 'One' },
        { role: 'user', content: 'Two' },
        { role: 'system', content: 'And kind.' },
      ]),
    ).toEqual({
      system: 'Be brief.\n\nAnd kind.',
      messages: [
        { role: 'user', content: '(continuing the conversation)' },
        { role: 'assistant', content: 'Earlier answer' },
        { role: 'user', content: 'One\n\nTwo' },
      ],
    });
  });
});

describe('two providers, one OpenAI-compatible and one Anthropic', () => {
  it('sends chatty prompts to the fast model and hard ones to the reasoning model, and says which answered', async () => {
    const fast = await startFakeUpstream({ chunks: ['Hi!'] });
    const deep = await startFakeAnthropic({ chunks: ['Suppose √2 = p/q…'] });
    const server = await startServer(
      writeConfigFile({
        providers: [
          { id: 'local', type: 'openai-compatible', base_url: fast.url },
          { id: 'claude', type: 'anthropic', base_url: deep.url, api_key_env: 'FAKE_UPSTREAM_KEY' },
        ],
        models: [
          { id: 'small', provider: 'local', upstream_model: 'llama3.2:3b', categories: ['fast', 'general'], price: { input: 0.1, output: 0.3 } },
          { id: 'thinker', provider: 'claude', upstream_model: 'claude-x', categories: ['reasoning'], context_window: 200000, max_output_tokens: 8192, price: { input: 3, output: 15 } },
        ],
      }),
    );
    try {
      const c = client(server);
      const chat = await c.responses.create({ model: 'auto', input: 'Hey, how is it going?', stream: false });
      expect(chat.model).toBe('small');
      const hard = await c.responses.create({ model: 'auto', input: 'Prove step by step that √2 is irrational.', stream: false });
      expect(hard.model).toBe('thinker');
      expect(hard.output_text).toBe('Suppose √2 = p/q…');
      expect(fast.requests).toHaveLength(1);
      expect(deep.requests).toHaveLength(1);
      const models = await c.models.list();
      expect(models.data.map((m) => m.id)).toEqual(['auto', 'small', 'thinker']);
    } finally {
      await server.close();
      await fast.close();
      await deep.close();
    }
  });
});
