import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { openTestDatabase } from './helpers/db.ts';
import { bearer } from './helpers/app.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { startServer, writeConfigFile, type TestServer } from './helpers/harness.ts';

/** Two providers: `primary` is cheaper, so it is picked first; `backup` is the fallback. */
async function twoUpstreams(router: Record<string, unknown> = {}, now?: () => number, primary: Record<string, unknown> = {}) {
  const a = await startFakeUpstream({ chunks: ['from', ' primary'] });
  const b = await startFakeUpstream({ chunks: ['from', ' backup'] });
  const config = writeConfigFile({
    providers: [
      { id: 'a', type: 'openai-compatible', base_url: a.url, ...primary },
      { id: 'b', type: 'openai-compatible', base_url: b.url },
    ],
    models: [
      { id: 'primary', provider: 'a', upstream_model: 'pm', categories: ['fast', 'general'], price: { input: 0.1, output: 0.1 } },
      { id: 'backup', provider: 'b', upstream_model: 'bm', categories: ['fast', 'general'], price: { input: 1, output: 1 } },
    ],
    router: { breaker: { failures: 2, cooldown_ms: 5000, max_cooldown_ms: 20_000 }, ...router },
  });
  const server = await startServer(config, now ? { now, database } : { database });
  return { a, b, server };
}

// One database for the file: each test's server has its own tenant, health table and upstreams.
let database: Database;
beforeAll(async () => {
  database = await openTestDatabase();
});
afterAll(async () => database.close());

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(
  router: Record<string, unknown> = {},
  now?: () => number,
  primary: Record<string, unknown> = {},
): Promise<{ a: FakeUpstream; b: FakeUpstream; server: TestServer; client: OpenAI }> {
  const s = await twoUpstreams(router, now, primary);
  cleanup.push(() => s.server.close(), () => s.a.close(), () => s.b.close());
  return { ...s, client: new OpenAI({ apiKey: s.server.tenant.key, baseURL: `${s.server.origin}/v1`, maxRetries: 0 }) };
}

async function streamTypes(client: OpenAI) {
  const stream = await client.responses.create({ model: 'auto', input: 'Hi', stream: true });
  const events: { type: string; sequence_number: number; response?: { model: string; output_text: string } }[] = [];
  for await (const e of stream) events.push(e);
  return events;
}

describe('failover before the first token', () => {
  // Only the slow cases shorten the primary's first-byte timeout: a busy machine must not make a prompt answer late.
  const quick = { timeouts: { first_byte_ms: 300 } };
  it.each([
    ['answers 500', { status: 500 }, {}],
    ['answers 429', { status: 429, errorBody: '{"error":{"message":"slow down"}}' }, {}],
    ['hangs', { hang: true }, quick],
    ['is slow to its first byte', { delayFirstMs: 2000 }, quick],
  ])('gives one clean stream from the backup when the primary %s', async (_name, fault, primary) => {
    const { a, b, client } = await setup({}, undefined, primary);
    a.queue.push(fault);
    const events = await streamTypes(client);
    expect(events.map((e) => e.type)).not.toContain('error');
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[0]!.type).toBe('response.created');
    expect(events[0]!.response!.model).toBe('backup');
    const last = events.at(-1)!;
    expect(last.type).toBe('response.completed');
    expect(last.response).toMatchObject({ model: 'backup', output_text: 'from backup' });
    expect(a.requests).toHaveLength(1);
    expect(b.requests).toHaveLength(1);
  });

  it('reports the model that answered in the headers', async () => {
    const { a, server } = await setup();
    a.queue.push({ status: 503 });
    const res = await server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Hi', stream: false } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-eugpt-model']).toBe('backup');
    expect(res.headers['x-eugpt-route-category']).toBe('fast');
    expect(res.json().model).toBe('backup');
  });

  it('does not fail over on a client error (400) from the upstream', async () => {
    const { a, b, server } = await setup();
    a.queue.push({ status: 400, errorBody: '{"error":{"message":"bad request"}}' });
    const res = await server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Hi', stream: false } });
    expect(res.statusCode).toBe(502);
    expect(res.json().error.code).toBe('upstream_unavailable');
    expect(b.requests).toHaveLength(0);
  });

  it('answers 502 when every model fails, naming none of them', async () => {
    const { a, b, server } = await setup();
    a.queue.push({ status: 500 });
    b.queue.push({ status: 502 });
    const res = await server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Hi' } });
    expect(res.statusCode).toBe(502);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json().error).toMatchObject({ type: 'upstream_error', code: 'upstream_unavailable' });
    expect(res.body).not.toMatch(/primary|backup/);
  });

  it('never fails over after the first token: a mid-stream failure ends the stream', async () => {
    const { a, b, client } = await setup();
    a.queue.push({ chunks: ['partial', ' answer', ' lost'], dropAfter: 1 });
    const events = await streamTypes(client).catch((err: unknown) => err);
    // The SDK raises the terminal error event.
    expect(events).toBeInstanceOf(Error);
    expect(b.requests).toHaveLength(0);
  });
});

describe('the breaker', () => {
  it('routes around a failing model, then probes it after the cooldown and trusts it again', async () => {
    let now = Date.now();
    const { a, b, server, client } = await setup({}, () => now);
    a.queue.push({ status: 500 }, { status: 500 });
    await streamTypes(client);
    await streamTypes(client);
    expect(a.requests).toHaveLength(2);

    // Open: the primary is not tried at all.
    const third = await streamTypes(client);
    expect(third.at(-1)!.response!.model).toBe('backup');
    expect(a.requests).toHaveLength(2);
    const ready = await server.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json().routing.primary).toMatchObject({ state: 'open', failures: 2 });

    // After the cooldown one probe goes through; it succeeds, so the breaker closes.
    now += 5000;
    const probe = await streamTypes(client);
    expect(probe.at(-1)!.response!.model).toBe('primary');
    expect(a.requests).toHaveLength(3);
    const after = await server.app.inject({ method: 'GET', url: '/readyz' });
    expect(after.json().routing.primary).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
    expect(b.requests.length).toBeGreaterThanOrEqual(3);
  });
});

describe('an upstream 429', () => {
  it('rests the model for its retry-after without counting a failure, then routes to it again', async () => {
    let now = Date.now();
    const { a, b, server, client } = await setup({}, () => now);
    a.queue.push({ status: 429, headers: { 'retry-after': '2' } });
    expect((await streamTypes(client)).at(-1)!.response!.model).toBe('backup');
    const resting = (await server.app.inject({ method: 'GET', url: '/readyz' })).json().routing.primary;
    expect(resting).toMatchObject({ state: 'closed', failures: 0, consecutiveFailures: 0, rateLimited: 1 });

    // Resting: the primary is not tried while the backup can answer.
    now += 1999;
    expect((await streamTypes(client)).at(-1)!.response!.model).toBe('backup');
    expect(a.requests).toHaveLength(1);

    now += 1;
    expect((await streamTypes(client)).at(-1)!.response!.model).toBe('primary');
    expect(a.requests).toHaveLength(2);
    expect(b.requests).toHaveLength(2);
  });

  it('rests the model for the default when the upstream gives no retry-after', async () => {
    let now = Date.now();
    const { a, client } = await setup({ breaker: { failures: 2, cooldown_ms: 5000, rate_limit_cooldown_ms: 3000 } }, () => now);
    a.queue.push({ status: 429 });
    await streamTypes(client);
    now += 2999;
    expect((await streamTypes(client)).at(-1)!.response!.model).toBe('backup');
    now += 1;
    expect((await streamTypes(client)).at(-1)!.response!.model).toBe('primary');
  });

  it('fails open to the model back soonest when both are resting', async () => {
    let now = Date.now();
    const { a, b, server, client } = await setup({}, () => now);
    a.queue.push({ status: 429, headers: { 'retry-after': '30' } });
    b.queue.push({ status: 429, headers: { 'retry-after': '10' } });
    const failed = await server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Hi', stream: false } });
    expect(failed.statusCode).toBe(502);
    // Both rest; the backup is back first, so it gets the request rather than a refusal.
    now += 1000;
    expect((await streamTypes(client)).at(-1)!.response!.model).toBe('backup');
    expect(a.requests).toHaveLength(1);
    expect(b.requests).toHaveLength(2);
  });
});

describe('a primary whose connections are all busy', () => {
  it('sends the request to the backup once the wait for a connection passes its bound', async () => {
    const { a, b, server, client } = await setup({}, undefined, { max_connections: 1, queue_timeout_ms: 50 });
    let release!: () => void;
    a.queue.push({ chunks: ['held', ' open'], hold: new Promise<void>((r) => (release = r)) });
    const stream = await client.responses.create({ model: 'auto', input: 'Hi', stream: true });
    const iterator = stream[Symbol.asyncIterator]();
    // Read up to the first delta: the primary now holds its only connection.
    let event = await iterator.next();
    while (!event.done && event.value.type !== 'response.output_text.delta') event = await iterator.next();
    expect(event.done).toBe(false);

    const res = await server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Hi', stream: false } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-eugpt-model']).toBe('backup');
    expect(a.requests).toHaveLength(1);
    expect(b.requests).toHaveLength(1);

    release();
    while (!event.done) event = await iterator.next();
    const ready = (await server.app.inject({ method: 'GET', url: '/readyz' })).json().routing.primary;
    expect(ready).toMatchObject({ state: 'closed', failures: 0, successes: 1 });
  });
});

describe('routing report', () => {
  it('sends response.routing.completed only when asked', async () => {
    const { server } = await setup();
    const client = new OpenAI({ apiKey: server.tenant.key, baseURL: `${server.origin}/v1`, maxRetries: 0 });
    const asked = await client.responses.create({ model: 'auto', input: 'Hi', stream: true, stream_options: { include_routing: true } } as never);
    const events: { type: string; model_id?: string; category?: string; reason?: string }[] = [];
    for await (const e of asked as unknown as AsyncIterable<{ type: string }>) events.push(e);
    expect(events.map((e) => e.type).slice(0, 3)).toEqual(['response.created', 'response.in_progress', 'response.routing.completed']);
    expect(events[2]).toMatchObject({ model_id: 'primary', category: 'fast', reason: expect.stringContaining('short prompt') });

    const plain = await streamTypes(client);
    expect(plain.map((e) => e.type)).not.toContain('response.routing.completed');
  });
});
