import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { ADMIN_TOKEN, bearer, createTenant } from './helpers/app.ts';
import { openSecondHandle } from './helpers/db.ts';
import { startHarness, writeConfig, type Harness } from './helpers/harness.ts';
import { wireCallId } from '../src/providers/openai-compatible.ts';

/**
 * Client function tools and the input items that continue them, item
 * references, `conversation`, stream negotiation, and the routes around a
 * stored response: delete, input items, cancel.
 */

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ model: { capabilities: ['json', 'tools'] }, env: { EUGPT_CHECKPOINT_MS: '100' } });
});
afterAll(async () => h.close());
beforeEach(() => {
  h.upstream.queue.length = 0;
  h.upstream.requests.length = 0;
});

const ask = (payload: Record<string, unknown>, key = h.tenant.key, headers: Record<string, string> = {}) =>
  h.app.inject({ method: 'POST', url: '/v1/responses', headers: { ...bearer(key), ...headers }, payload });
const get = (url: string, key = h.tenant.key) => h.app.inject({ method: 'GET', url, headers: bearer(key) });

type Sent = { role: string; content: unknown; tool_calls?: { id: string; function: { name: string; arguments: string } }[]; tool_call_id?: string };
const sent = (i: number) => h.upstream.requests[i]!.body.messages as unknown as Sent[];

const weather = {
  type: 'function',
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  strict: true,
};

interface Doc {
  id: string;
  status: string;
  output: { type: string; id: string; call_id?: string; name?: string; arguments?: string; output?: string; status: string }[];
  output_text: string;
  conversation_id: string;
  incomplete_details: { reason: string } | null;
}

describe('client function tools', () => {
  it('ends the response with the call, and continues with its output through previous_response_id', async () => {
    h.upstream.queue.push({ calls: [{ name: 'get_weather', arguments: '{"city":"Ghent"}' }], chunks: [] });
    const first = await ask({ input: 'Weather in Ghent?', tools: [weather], stream: false });
    expect(first.statusCode).toBe(200);
    const doc = first.json<Doc>();
    expect(doc.status).toBe('completed');
    expect(doc.output).toEqual([expect.objectContaining({ type: 'function_call', name: 'get_weather', arguments: '{"city":"Ghent"}', status: 'completed' })]);
    expect(doc.output[0]).not.toHaveProperty('output');
    // The function went to the model as the client described it, strict schema included; no built-in came along.
    expect(h.upstream.requests[0]!.body.tools).toEqual([{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather.parameters, strict: true } }]);
    expect(h.upstream.requests).toHaveLength(1);

    const callId = doc.output[0]!.call_id!;
    h.upstream.queue.push({ chunks: ['Sunny, 21 °C.'] });
    const second = await ask({ previous_response_id: doc.id, input: [{ type: 'function_call_output', call_id: callId, output: '{"temp":21}' }], tools: [weather], stream: false });
    expect(second.statusCode).toBe(200);
    expect(second.json<Doc>().output_text).toBe('Sunny, 21 °C.');
    const messages = sent(1);
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(messages[1]!.tool_calls![0]).toMatchObject({ id: wireCallId(callId), function: { name: 'get_weather', arguments: '{"city":"Ghent"}' } });
    expect(messages[2]).toEqual({ role: 'tool', tool_call_id: wireCallId(callId), content: '{"temp":21}' });
  });

  it('takes a whole tool turn inline, and refuses an output that answers no call', async () => {
    const inline = await ask({
      input: [
        { role: 'user', content: 'Weather?' },
        { type: 'function_call', call_id: 'call_abc', name: 'get_weather', arguments: '{"city":"Brno"}' },
        { type: 'function_call_output', call_id: 'call_abc', output: [{ type: 'input_text', text: 'rain' }] },
      ],
      stream: false,
    });
    expect(inline.statusCode).toBe(200);
    expect(sent(0).slice(-2)).toEqual([
      { role: 'assistant', content: null, tool_calls: [{ id: wireCallId('call_abc'), type: 'function', function: { name: 'get_weather', arguments: '{"city":"Brno"}' } }] },
      { role: 'tool', tool_call_id: wireCallId('call_abc'), content: 'rain' },
    ]);
    const stray = await ask({ input: [{ type: 'function_call_output', call_id: 'call_nobody', output: 'x' }] });
    expect(stray.statusCode).toBe(400);
    expect(stray.json().error).toMatchObject({ code: 'unknown_call_id', param: 'input' });
  });

  it('mixes server and client tools: the server tool runs, the client call ends the response', async () => {
    h.upstream.queue.push({
      calls: [
        { name: 'calculator', arguments: '{"expression":"2*21"}' },
        { name: 'get_weather', arguments: '{"city":"Oslo"}' },
      ],
      chunks: [],
    });
    const doc = (await ask({ input: 'Both', tools: [weather, { type: 'calculator' }], stream: false })).json<Doc>();
    expect(doc.output.map((i) => [i.name, i.status, i.output ?? null])).toEqual([
      ['calculator', 'completed', '{"result":42}'],
      ['get_weather', 'completed', null],
    ]);
    expect(h.upstream.requests).toHaveLength(1);
  });
});

describe('item references and conversations', () => {
  it('resolves item_reference against the caller own items, and 404s another user', async () => {
    h.upstream.queue.push({ chunks: ['Paris.'] });
    const first = (await ask({ input: 'Capital of France?', stream: false })).json<Doc>();
    const msgId = first.output[0]!.id;
    expect(msgId).toMatch(/^msg_/);
    const second = await ask({ input: [{ role: 'user', content: 'Capital of France?' }, { type: 'item_reference', id: msgId }, { role: 'user', content: 'And of Spain?' }], stream: false });
    expect(second.statusCode).toBe(200);
    expect(sent(1).map((m) => [m.role, m.content])).toEqual([
      ['user', 'Capital of France?'],
      ['assistant', 'Paris.'],
      ['user', 'And of Spain?'],
    ]);
    const other = await createTenant(h.app);
    const theirs = await ask({ input: [{ type: 'item_reference', id: msgId }, { role: 'user', content: 'x' }] }, other.key);
    expect(theirs.statusCode).toBe(404);
    expect(theirs.json().error.code).toBe('item_not_found');
  });

  it('reads `conversation` as a string or {id}, and answers 404 for ids of another shape', async () => {
    const first = (await ask({ input: 'One', stream: false })).json<Doc>();
    for (const conversation of [first.conversation_id, { id: first.conversation_id }]) {
      const next = await ask({ input: 'Two', conversation, stream: false });
      expect(next.json<Doc>().conversation_id).toBe(first.conversation_id);
    }
    const byBoth = await ask({ input: 'x', conversation: first.conversation_id, conversation_id: randomUUID() });
    expect(byBoth.json().error.code).toBe('conversation_mismatch');
    expect((await ask({ input: 'x', conversation: 'conv_68a1' })).statusCode).toBe(404);
    expect((await ask({ input: 'x', previous_response_id: 'resp_68a1' })).json().error.code).toBe('response_not_found');
    expect((await get('/v1/responses/resp_68a1')).statusCode).toBe(404);
    expect((await get('/v1/responses/resp_68a1/input_items')).statusCode).toBe(404);
  });
});

describe('stream negotiation', () => {
  const kind = (res: { headers: Record<string, unknown> }) => String(res.headers['content-type']).split(';')[0];

  it('streams by default, answers JSON to clients that ask for it or follow OpenAI default', async () => {
    expect(kind(await ask({ input: 'x' }))).toBe('text/event-stream');
    expect(kind(await ask({ input: 'x' }, h.tenant.key, { accept: 'application/json' }))).toBe('application/json');
    expect(kind(await ask({ input: 'x' }, h.tenant.key, { accept: 'application/json, text/event-stream' }))).toBe('text/event-stream');
    expect(kind(await ask({ input: 'x' }, h.tenant.key, { 'user-agent': 'ai-sdk/openai/3.0.141 runtime/node.js/20' }))).toBe('application/json');
    expect(kind(await ask({ input: 'x', stream: true }, h.tenant.key, { accept: 'application/json' }))).toBe('text/event-stream');
    expect(kind(await ask({ input: 'x', stream: false }, h.tenant.key, { accept: 'text/event-stream' }))).toBe('application/json');
  });

  it('follows the operator default when nothing else says', async () => {
    const second = await openSecondHandle(h.database);
    const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_CONFIG: writeConfig(h.upstream.url), FAKE_UPSTREAM_KEY: 'k', EUGPT_STREAM_DEFAULT: 'false' });
    const other = await buildApp({ config, database: second.database, logger: false });
    try {
      const res = await other.inject({ method: 'POST', url: '/v1/responses', headers: bearer(h.tenant.key), payload: { input: 'x' } });
      expect(kind(res)).toBe('application/json');
      const asked = await other.inject({ method: 'POST', url: '/v1/responses', headers: { ...bearer(h.tenant.key), accept: 'text/event-stream' }, payload: { input: 'x' } });
      expect(kind(asked)).toBe('text/event-stream');
    } finally {
      await other.close();
      await second.close();
    }
  });
});

describe('the routes around a stored response', () => {
  it('lists input items newest first, in pages, with their OpenAI shapes', async () => {
    const doc = (
      await ask({
        input: [
          { role: 'developer', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
          { type: 'function_call', call_id: 'call_x', name: 'lookup', arguments: '{}' },
          { type: 'function_call_output', call_id: 'call_x', output: 'found' },
        ],
        stream: false,
      })
    ).json<Doc>();
    const all = (await get(`/v1/responses/${doc.id}/input_items?order=asc`)).json<{ data: { id: string; type: string }[]; has_more: boolean }>();
    expect(all.has_more).toBe(false);
    expect(all.data).toEqual([
      { id: expect.stringMatching(/^msg_/), type: 'message', status: 'completed', role: 'developer', content: [{ type: 'input_text', text: 'Be brief.' }] },
      { id: expect.stringMatching(/^msg_/), type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_text', text: 'Hi' }] },
      { id: expect.stringMatching(/^fc_/), type: 'function_call', status: 'completed', call_id: 'call_x', name: 'lookup', arguments: '{}' },
      { id: expect.stringMatching(/^fco_/), type: 'function_call_output', status: 'completed', call_id: 'call_x', output: 'found' },
    ]);
    const page1 = (await get(`/v1/responses/${doc.id}/input_items?limit=3`)).json<{ data: { id: string }[]; has_more: boolean; last_id: string }>();
    expect(page1.data.map((d) => d.id)).toEqual(all.data.map((d) => d.id).reverse().slice(0, 3));
    expect(page1.has_more).toBe(true);
    const page2 = (await get(`/v1/responses/${doc.id}/input_items?limit=3&after=${page1.last_id}`)).json<{ data: { id: string }[]; has_more: boolean }>();
    expect(page2.data.map((d) => d.id)).toEqual([all.data[0]!.id]);
    expect(page2.has_more).toBe(false);
    const other = await createTenant(h.app);
    expect((await get(`/v1/responses/${doc.id}/input_items`, other.key)).statusCode).toBe(404);
  });

  it('deletes a response and its items, for its owner only', async () => {
    const doc = (await ask({ input: 'Forget me', stream: false })).json<Doc>();
    const other = await createTenant(h.app);
    const del = (key: string) => h.app.inject({ method: 'DELETE', url: `/v1/responses/${doc.id}`, headers: bearer(key) });
    expect((await del(other.key)).statusCode).toBe(404);
    const res = await del(h.tenant.key);
    expect(res.json()).toEqual({ id: doc.id, object: 'response', deleted: true });
    expect((await get(`/v1/responses/${doc.id}`)).statusCode).toBe(404);
    expect((await ask({ input: 'x', previous_response_id: doc.id })).statusCode).toBe(404);
    expect((await del(h.tenant.key)).statusCode).toBe(404);
    // The conversation lives on without the deleted turn.
    h.upstream.requests.length = 0;
    await ask({ input: 'Again', conversation: doc.conversation_id, stream: false });
    expect(sent(0).map((m) => m.content)).toEqual(['Again']);
  });

  /** Starts a streamed response the fake upstream holds open after its first chunk; resolves with its id once it is running. */
  function heldStream() {
    let release: () => void = () => undefined;
    const hold = new Promise<void>((r) => (release = r));
    h.upstream.queue.push({ chunks: ['Once ', 'upon ', 'a time'], hold });
    const url = new URL('/v1/responses', h.origin);
    let body = '';
    let onId: (id: string) => void = () => undefined;
    const id = new Promise<string>((r) => (onId = r));
    const done = new Promise<string>((resolve, reject) => {
      const req = request(url, { method: 'POST', headers: { ...bearer(h.tenant.key), 'content-type': 'application/json' } }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
          const created = /"type":"response.created".*?"id":"([0-9a-f-]{36})"/.exec(body);
          if (created !== null && body.includes('response.output_text.delta')) onId(created[1]!);
        });
        res.on('end', () => resolve(body));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ input: 'Tell a story' }));
    });
    return { id, done, release };
  }

  it('cancels a streamed response: it ends incomplete with what it made, and the stream says so', async () => {
    const held = heldStream();
    const id = await held.id;
    const cancelled = await h.app.inject({ method: 'POST', url: `/v1/responses/${id}/cancel`, headers: bearer(h.tenant.key) });
    held.release();
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toMatchObject({ id, status: 'incomplete', incomplete_details: { reason: 'cancelled' }, output_text: 'Once ' });
    const events = (await held.done)
      .trim()
      .split('\n\n')
      .filter((f) => f.startsWith('event:'))
      .map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as { type: string; response?: { status: string } });
    expect(events.at(-1)).toMatchObject({ type: 'response.completed', response: { status: 'incomplete' } });
    // A finished response is returned as it is.
    const again = await h.app.inject({ method: 'POST', url: `/v1/responses/${id}/cancel`, headers: bearer(h.tenant.key) });
    expect(again.json()).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'cancelled' } });
  });

  it('cancels a response running on another instance', async () => {
    const second = await openSecondHandle(h.database);
    const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_CONFIG: writeConfig(h.upstream.url), FAKE_UPSTREAM_KEY: 'k', EUGPT_CHECKPOINT_MS: '100' });
    const other = await buildApp({ config, database: second.database, logger: false });
    try {
      const held = heldStream();
      const id = await held.id;
      const cancelled = await other.inject({ method: 'POST', url: `/v1/responses/${id}/cancel`, headers: bearer(h.tenant.key) });
      held.release();
      expect(cancelled.json()).toMatchObject({ id, status: 'incomplete', incomplete_details: { reason: 'cancelled' } });
      await held.done;
    } finally {
      await other.close();
      await second.close();
    }
  });
});
