import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { adminHeaders, bearer, createTenant } from './helpers/app.ts';
import { startFakeAnthropic } from './helpers/fake-anthropic.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { startHarness, startServer, writeConfigFile, type Harness } from './helpers/harness.ts';
import { wireCallId } from '../src/providers/openai-compatible.ts';

/** The step loop through the HTTP API: real tools, a fake model server and fake web services on loopback. */

interface Event {
  type: string;
  sequence_number: number;
  [key: string]: unknown;
}

const eventsOf = (body: string): Event[] =>
  body
    .trim()
    .split('\n\n')
    .filter((f) => f.startsWith('event: message'))
    .map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as Event);

interface Item {
  type: string;
  status: string;
  name?: string;
  call_id?: string;
  arguments?: string;
  output?: string;
  content?: { text: string; annotations: unknown[] }[];
}

type Sent = { role: string; content: unknown; tool_calls?: { id: string; function: { name: string; arguments: string } }[]; tool_call_id?: string };
const sentMessages = (u: FakeUpstream, i: number) => u.requests[i]!.body.messages as unknown as Sent[];

/** A fake SearXNG and a few web pages, on one loopback server. */
let web: Server;
let webOrigin: string;
let h: Harness;

beforeAll(async () => {
  web = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/search') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          query: url.searchParams.get('q'),
          results: [
            { title: 'EU AI Act overview', url: 'https://example.eu/ai-act', content: 'The AI Act entered into force in 2024.' },
            { title: 'Second hit', url: 'https://example.eu/second', content: 'More.' },
          ],
        }),
      );
    } else if (url.pathname === '/hang') {
      // Never answers: the tool's timeout must end the call.
    } else if (url.pathname === '/to-metadata') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    } else {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html><head><title>Opening hours</title></head><body><main><h1>Opening hours</h1><p>We are open from 9 to 17 on weekdays, and closed at weekends and on public holidays.</p></main></body></html>');
    }
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webOrigin = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
  h = await startHarness({
    model: { capabilities: ['json', 'tools'] },
    tools: {
      max_steps: 4,
      web_search: { backend: 'searxng', base_url: webOrigin },
      // Long enough for a page on a busy machine; the hanging page still runs into it.
      web_fetch: { timeout_ms: 3_000, allowed_private_hosts: ['pages.test'] },
    },
    lookup: async (host) => (host === 'pages.test' ? [{ address: '127.0.0.1', family: 4 }] : [{ address: '10.1.2.3', family: 4 }]),
  });
});
afterAll(async () => {
  await h.close();
  web.closeAllConnections();
  await new Promise((r) => web.close(r));
});
beforeEach(() => {
  h.upstream.queue.length = 0;
  h.upstream.requests.length = 0;
});

const ask = (payload: Record<string, unknown>, key = h.tenant.key) =>
  h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(key), payload });

describe('a response that calls a server tool', () => {
  it('streams the call, its result and the answer in the documented order, and stores the same object', async () => {
    h.upstream.queue.push({ calls: [{ name: 'calculator', arguments: '{"expression":"6*7"}' }], chunks: [], usage: { prompt_tokens: 30, completion_tokens: 9 } });
    h.upstream.queue.push({ chunks: ['It is ', '42.'], usage: { prompt_tokens: 50, completion_tokens: 4 } });
    const res = await ask({ input: 'What is 6 times 7?' });
    expect(res.statusCode).toBe(200);
    const events = eventsOf(res.body);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const added = events[2] as unknown as { output_index: number; item: Item & { id: string } };
    expect(added.output_index).toBe(0);
    expect(added.item).toMatchObject({ type: 'function_call', name: 'calculator', arguments: '', status: 'in_progress' });
    expect(added.item.id).toMatch(/^fc_[0-9a-f]{32}$/);
    expect(added.item.call_id).toMatch(/^call_[0-9a-f]{32}$/);
    expect(events[5]).toMatchObject({ item_id: added.item.id, output_index: 0, arguments: '{"expression":"6*7"}', name: 'calculator' });
    const done = events[6] as unknown as { item: Item };
    expect(done.item).toMatchObject({ type: 'function_call', status: 'completed', call_id: added.item.call_id });
    expect(JSON.parse(done.item.output!)).toEqual({ result: 42 });
    expect(events[7]).toMatchObject({ output_index: 1, item: { type: 'message', status: 'in_progress', content: [] } });

    const completed = events.at(-1) as unknown as { response: Record<string, unknown> & { output: Item[] }; final_text: string };
    expect(completed.final_text).toBe('It is 42.');
    expect(completed.response).toMatchObject({
      status: 'completed',
      output_text: 'It is 42.',
      tool_calls: [{ name: 'calculator', call_id: added.item.call_id, arguments: '{"expression":"6*7"}', status: 'completed' }],
      // Usage is the sum of both model calls.
      usage: { input_tokens: 80, output_tokens: 13, total_tokens: 93 },
    });
    expect(completed.response.output.map((i) => i.type)).toEqual(['function_call', 'message']);

    // The model was shown the four tools, then given the call and its result.
    const tools = (h.upstream.requests[0]!.body.tools as { function: { name: string; parameters: { type: string } } }[]).map((t) => t.function.name);
    expect(tools.sort()).toEqual(['calculator', 'current_datetime', 'web_fetch', 'web_search']);
    const second = sentMessages(h.upstream, 1);
    expect(second.at(-2)).toEqual({
      role: 'assistant',
      content: null,
      // Upstreams see a short id of their own shape for each call (Mistral takes nothing else).
      tool_calls: [{ id: wireCallId(added.item.call_id!), type: 'function', function: { name: 'calculator', arguments: '{"expression":"6*7"}' } }],
    });
    expect(wireCallId(added.item.call_id!)).toMatch(/^[A-Za-z0-9]{9}$/);
    expect(second.at(-1)).toEqual({ role: 'tool', tool_call_id: wireCallId(added.item.call_id!), content: '{"result":42}' });

    const stored = await h.app.inject({ method: 'GET', url: `/v1/responses/${completed.response.id as string}`, headers: bearer(h.tenant.key) });
    expect(stored.json()).toEqual(completed.response);
  });

  it('returns the same object as one JSON document with stream: false', async () => {
    h.upstream.queue.push({ calls: [{ name: 'current_datetime', arguments: '{"timezone":"Europe/Paris"}' }], chunks: [] });
    h.upstream.queue.push({ chunks: ['It is Monday.'] });
    const res = await ask({ input: 'What day is it in Paris?', stream: false });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ output: Item[]; output_text: string; tool_calls: unknown[] }>();
    expect(body.output.map((i) => [i.type, i.status])).toEqual([
      ['function_call', 'completed'],
      ['message', 'completed'],
    ]);
    expect(JSON.parse(body.output[0]!.output!)).toMatchObject({ timezone: 'Europe/Paris' });
    expect(body.output_text).toBe('It is Monday.');
    expect(body.tool_calls).toHaveLength(1);
  });

  it('runs parallel calls, each answered in the next call', async () => {
    const res = await ask({ input: 'Two things: [[call:calculator:{"expression":"2+2"}]] and [[call:current_datetime:{"timezone":"UTC"}]]', stream: false });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ output: Item[] }>();
    expect(body.output.map((i) => i.name ?? i.type)).toEqual(['calculator', 'current_datetime', 'message']);
    expect(body.output.slice(0, 2).map((i) => i.status)).toEqual(['completed', 'completed']);
    const second = sentMessages(h.upstream, 1);
    const calls = second.at(-3)!.tool_calls!;
    expect(calls.map((c) => c.function.name)).toEqual(['calculator', 'current_datetime']);
    expect(second.slice(-2).map((m) => m.tool_call_id)).toEqual(calls.map((c) => c.id));
  });

  it('gives a failing tool its error, marks its item failed, and goes on to the answer', async () => {
    const res = await ask({ input: 'Compute [[call:calculator:{"expression":"import({}, {override: true})"}]]', stream: false });
    const body = res.json<{ status: string; output: Item[] }>();
    expect(body.status).toBe('completed');
    expect(body.output[0]).toMatchObject({ type: 'function_call', status: 'failed' });
    expect(JSON.parse(body.output[0]!.output!)).toHaveProperty('error');
    expect(body.output[1]!.type).toBe('message');
    expect(sentMessages(h.upstream, 1).at(-1)!.content).toMatch(/"error"/);
  });

  it('stops a tool at its timeout and tells the model', async () => {
    const res = await ask({ input: `Read [[call:web_fetch:{"url":"http://pages.test:${new URL(webOrigin).port}/hang"}]]`, stream: false });
    const body = res.json<{ status: string; output: Item[] }>();
    expect(body.status).toBe('completed');
    expect(body.output[0]!.status).toBe('failed');
    expect(JSON.parse(body.output[0]!.output!).error).toMatch(/3000 ms|took longer|timed out/);
  });

  it('fetches an allowed page as markdown and blocks a redirect to the metadata address', async () => {
    const port = new URL(webOrigin).port;
    const ok = await ask({ input: `Read [[call:web_fetch:{"url":"http://pages.test:${port}/hours"}]]`, stream: false });
    const page = JSON.parse(ok.json<{ output: Item[] }>().output[0]!.output!) as { title: string; content: string };
    expect(page.title).toBe('Opening hours');
    expect(page.content).toContain('open from 9 to 17');

    const blocked = await ask({ input: `Read [[call:web_fetch:{"url":"http://pages.test:${port}/to-metadata"}]]`, stream: false });
    const item = blocked.json<{ output: Item[] }>().output[0]!;
    expect(item.status).toBe('failed');
    expect(item.output).not.toContain('meta-data/ami');
    const direct = await ask({ input: `Read [[call:web_fetch:{"url":"http://intranet.example/"}]]`, stream: false });
    expect(direct.json<{ output: Item[] }>().output[0]!.status).toBe('failed');
  });

  it('searches, and the answer that names a result carries a url_citation', async () => {
    h.upstream.queue.push({ calls: [{ name: 'web_search', arguments: '{"query":"AI Act"}' }], chunks: [] });
    const answer = 'It applies since 2024 ([EU AI Act overview](https://example.eu/ai-act)).';
    h.upstream.queue.push({ chunks: [answer] });
    const res = await ask({ input: 'When did the AI Act start?', stream: false });
    const body = res.json<{ output: Item[] }>();
    expect(JSON.parse(body.output[0]!.output!).results[0]).toEqual({
      title: 'EU AI Act overview',
      url: 'https://example.eu/ai-act',
      snippet: 'The AI Act entered into force in 2024.',
    });
    const start = answer.indexOf('[EU');
    expect(body.output[1]!.content![0]!.annotations).toEqual([
      { type: 'url_citation', url: 'https://example.eu/ai-act', title: 'EU AI Act overview', start_index: start, end_index: answer.indexOf('))') + 1 },
    ]);
  });

  it('lets no tool be called on the last step, so the model must answer', async () => {
    const call = { name: 'calculator', arguments: '{"expression":"1+1"}' };
    for (let i = 0; i < 3; i++) h.upstream.queue.push({ calls: [call], chunks: [] });
    h.upstream.queue.push({ chunks: ['Enough.'] });
    const body = (await ask({ input: 'Loop', stream: false })).json<{ status: string; output: Item[] }>();
    expect(h.upstream.requests).toHaveLength(4);
    // The tools stay defined (the prompt holds calls of them), but the last call may not use them.
    expect(h.upstream.requests.map((r) => r.body.tool_choice ?? 'auto')).toEqual(['auto', 'auto', 'auto', 'none']);
    expect(body.status).toBe('completed');
    expect(body.output.map((i) => i.type)).toEqual(['function_call', 'function_call', 'function_call', 'message']);
  });

  it('ends incomplete when the model calls a tool on the last step anyway', async () => {
    const call = { name: 'calculator', arguments: '{"expression":"1+1"}' };
    for (let i = 0; i < 4; i++) h.upstream.queue.push({ calls: [call], chunks: [] });
    const body = (await ask({ input: 'Loop', stream: false })).json<{ status: string; incomplete_details: unknown; output: Item[] }>();
    expect(h.upstream.requests).toHaveLength(4);
    expect(body.status).toBe('incomplete');
    expect(body.incomplete_details).toEqual({ reason: 'max_tool_steps' });
    expect(body.output.at(-1)).toMatchObject({ type: 'function_call', status: 'failed' });
  });

  it('keeps the tool call in the conversation: the next turn sends it back', async () => {
    const first = (await ask({ input: 'Add [[call:calculator:{"expression":"40+2"}]]', stream: false })).json<{ id: string; output: Item[] }>();
    h.upstream.requests.length = 0;
    const second = await ask({ input: 'And doubled?', previous_response_id: first.id, stream: false });
    expect(second.statusCode).toBe(200);
    const sent = sentMessages(h.upstream, 0);
    const callId = first.output[0]!.call_id!;
    expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'user']);
    expect(sent[1]!.tool_calls![0]).toMatchObject({ id: wireCallId(callId), function: { name: 'calculator', arguments: '{"expression":"40+2"}' } });
    expect(sent[2]).toEqual({ role: 'tool', tool_call_id: wireCallId(callId), content: '{"result":42}' });
  });

  it('honours tool_choice none and a request that names its tools, and refuses tool types it does not know', async () => {
    await ask({ input: 'Hi', tool_choice: 'none', stream: false });
    expect(h.upstream.requests[0]!.body.tools).toBeUndefined();
    await ask({ input: 'Hi', tools: [{ type: 'calculator' }], tool_choice: 'required', stream: false });
    expect((h.upstream.requests[1]!.body.tools as { function: { name: string } }[]).map((t) => t.function.name)).toEqual(['calculator']);
    expect(h.upstream.requests[1]!.body.tool_choice).toBe('required');
    const bad = await ask({ input: 'Hi', tools: [{ type: 'code_interpreter' }] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: 'unsupported_tool', param: 'tools[0].type' });
  });

  it('offers no tools to a plan without them, and refuses a request that asks for them', async () => {
    expect((await h.app.inject({ method: 'PUT', url: '/admin/v1/plans/no-tools', headers: adminHeaders, payload: { features: { tools: false } } })).statusCode).toBe(200);
    const t = await createTenant(h.app);
    await h.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { plan: 'no-tools' } });
    expect((await ask({ input: 'Hi', stream: false }, t.key)).statusCode).toBe(200);
    expect(h.upstream.requests[0]!.body.tools).toBeUndefined();
    const refused = await ask({ input: 'Hi', tools: [{ type: 'web_search' }] }, t.key);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error.code).toBe('plan_feature_disabled');
  });

  it('reserves each model call before it is made: a limit that holds one call ends the loop, and nothing stays reserved', async () => {
    expect((await h.app.inject({ method: 'PUT', url: '/admin/v1/plans/tight', headers: adminHeaders, payload: { user_daily_tokens: 300 } })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'PUT', url: '/admin/v1/plans/roomy', headers: adminHeaders, payload: { user_daily_tokens: 2000 } })).statusCode).toBe(200);
    const usage = async (orgId: string) =>
      (await h.app.inject({ method: 'GET', url: `/admin/v1/organizations/${orgId}/usage`, headers: adminHeaders })).json().day.organization as {
        total_tokens: number;
        reserved_tokens: number;
      };
    const onPlan = async (plan: string) => {
      const t = await createTenant(h.app);
      await h.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { plan } });
      return t;
    };
    const input = 'Sum [[call:calculator:{"expression":"1+2"}]]';

    const tight = await onPlan('tight');
    const cut = (await ask({ input, max_output_tokens: 100, stream: false }, tight.key)).json<{ status: string; incomplete_details: unknown; output: Item[] }>();
    expect(cut.status).toBe('incomplete');
    expect(cut.incomplete_details).toEqual({ reason: 'token_limit' });
    expect(cut.output.map((i) => [i.type, i.status])).toEqual([['function_call', 'completed']]);
    expect(h.upstream.requests).toHaveLength(1);
    expect(await usage(tight.orgId)).toMatchObject({ total_tokens: 14, reserved_tokens: 0 });

    const roomy = await onPlan('roomy');
    const whole = (await ask({ input, max_output_tokens: 100, stream: false }, roomy.key)).json<{ status: string; usage: { total_tokens: number } }>();
    expect(whole.status).toBe('completed');
    expect(await usage(roomy.orgId)).toMatchObject({ total_tokens: whole.usage.total_tokens, reserved_tokens: 0 });
  });

  it('works with the official SDK: the stream helper and a plain create', async () => {
    const client = new OpenAI({ apiKey: h.tenant.key, baseURL: `${h.origin}/v1`, maxRetries: 0 });
    const stream = client.responses.stream({ model: 'auto', input: 'Sum [[call:calculator:{"expression":"1+2"}]]' });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    const final = await stream.finalResponse();
    expect(types).toContain('response.function_call_arguments.done');
    expect(final.output.map((i) => i.type)).toEqual(['function_call', 'message']);
    const plain = await client.responses.create({ model: 'auto', input: 'Sum [[call:calculator:{"expression":"1+2"}]]', stream: false });
    expect(plain.output[0]).toMatchObject({ type: 'function_call', name: 'calculator' });
    expect(plain.output_text).toBe('Hello, world.');
  });
});

describe('the loop across models and providers', () => {
  it('fails over on the second model call without breaking the stream', async () => {
    const a = await startFakeUpstream();
    const b = await startFakeUpstream({ chunks: ['From B.'] });
    const server = await startServer(
      writeConfigFile({
        providers: [
          { id: 'pa', type: 'openai-compatible', base_url: a.url },
          { id: 'pb', type: 'openai-compatible', base_url: b.url },
        ],
        models: [
          { id: 'ma', provider: 'pa', upstream_model: 'a', categories: ['fast', 'general'], capabilities: ['tools'], price: { input: 0.1, output: 0.1 } },
          { id: 'mb', provider: 'pb', upstream_model: 'b', categories: ['fast', 'general'], capabilities: ['tools'], price: { input: 1, output: 1 } },
        ],
      }),
    );
    try {
      a.queue.push({ calls: [{ name: 'calculator', arguments: '{"expression":"3*3"}' }], chunks: [] }, { status: 500 });
      const res = await server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Nine?' } });
      const events = eventsOf(res.body);
      expect(events.at(-1)!.type).toBe('response.completed');
      const response = (events.at(-1) as unknown as { response: { model: string; output_text: string; output: Item[] } }).response;
      expect(response.output_text).toBe('From B.');
      expect(response.model).toBe('mb');
      expect(b.requests).toHaveLength(1);
      expect((b.requests[0]!.body.messages as unknown as Sent[]).at(-1)!.role).toBe('tool');
    } finally {
      await server.close();
      await a.close();
      await b.close();
    }
  });

  it('speaks tool_use and tool_result blocks to Anthropic', async () => {
    const claude = await startFakeAnthropic();
    const server = await startServer(
      writeConfigFile({
        providers: [{ id: 'claude', type: 'anthropic', base_url: claude.url, api_key_env: 'FAKE_UPSTREAM_KEY' }],
        models: [{ id: 'c', provider: 'claude', upstream_model: 'claude-x', categories: ['fast', 'general'], capabilities: ['tools'] }],
      }),
    );
    try {
      const res = await server.app.inject({
        method: 'POST',
        url: '/v1/responses',
        headers: bearer(server.tenant.key),
        payload: { input: 'Compute [[call:calculator:{"expression":"2^10"}]]', stream: false },
      });
      const body = res.json<{ status: string; output: Item[] }>();
      expect(body.status).toBe('completed');
      expect(JSON.parse(body.output[0]!.output!)).toEqual({ result: 1024 });
      const first = claude.requests[0]!.body as unknown as { tools: { name: string; input_schema: unknown }[] };
      expect(first.tools.map((t) => t.name)).toContain('calculator');
      const sent = claude.requests[1]!.body.messages as unknown as { role: string; content: { type: string; id?: string; tool_use_id?: string; input?: unknown; content?: string }[] }[];
      const use = sent[1]!.content.find((c) => c.type === 'tool_use')!;
      expect(use).toMatchObject({ name: 'calculator', input: { expression: '2^10' } });
      expect(sent[2]!.content[0]).toEqual({ type: 'tool_result', tool_use_id: use.id, content: '{"result":1024}' });
    } finally {
      await server.close();
      await claude.close();
    }
  });
});
