import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { openTestDatabase } from './helpers/db.ts';
import { bearer } from './helpers/app.ts';
import { startFakeUpstream, type FakeUpstream, type Script } from './helpers/fake-openai.ts';
import { eventually, startServer, writeConfigFile, type TestServer } from './helpers/harness.ts';

/**
 * One configured model: nothing to fail over to. Whatever the upstream
 * answers, the breaker must never turn it into `no_model_available`.
 */

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

async function singleModel(provider: Record<string, unknown> = {}, now?: () => number): Promise<{ up: FakeUpstream; server: TestServer }> {
  const up = await startFakeUpstream({ chunks: ['fine'] });
  const config = writeConfigFile({
    providers: [{ id: 'only', type: 'openai-compatible', base_url: up.url, ...provider }],
    models: [{ id: 'solo', provider: 'only', upstream_model: 'sm', categories: ['fast', 'general'] }],
  });
  const server = await startServer(config, now ? { now, database } : { database });
  cleanup.push(() => server.close(), () => up.close());
  return { up, server };
}

const post = (server: TestServer, payload: Record<string, unknown> = {}) =>
  server.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(server.tenant.key), payload: { input: 'Hi', stream: false, ...payload } });

const routing = async (server: TestServer) => (await server.app.inject({ method: 'GET', url: '/readyz' })).json().routing.solo;

/** A streamed request over real HTTP, read until its first text delta: the upstream is then holding a connection. */
async function streamUntilFirstDelta(server: TestServer): Promise<{ rest: () => Promise<string> }> {
  const res = await fetch(`${server.origin}/v1/responses`, {
    method: 'POST',
    headers: { ...bearer(server.tenant.key), 'content-type': 'application/json' },
    body: JSON.stringify({ input: 'Hi', stream: true }),
  });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes('response.output_text.delta')) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`stream ended before its first delta: ${text}`);
    text += decoder.decode(value, { stream: true });
  }
  return {
    rest: async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return text;
        text += decoder.decode(value, { stream: true });
      }
    },
  };
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('a single model whose upstream fails', () => {
  const neutral = { state: 'closed', failures: 0, consecutiveFailures: 0 };
  it.each<[string, Script, Record<string, unknown>]>([
    ['400', { status: 400, errorBody: '{"error":{"message":"bad request"}}' }, neutral],
    ['404', { status: 404, errorBody: '{"error":{"message":"model not found"}}' }, neutral],
    ['413', { status: 413 }, neutral],
    ['422', { status: 422, errorBody: '{"error":{"message":"unprocessable"}}' }, neutral],
    ['500 saying the context is too long', { status: 500, errorBody: '{"error":{"message":"maximum context length is 8192 tokens"}}' }, neutral],
    ['429', { status: 429, errorBody: '{"error":{"message":"slow down"}}' }, { ...neutral, rateLimited: 5 }],
    ['429 with a retry-after far away', { status: 429, headers: { 'retry-after': '3600' } }, { ...neutral, rateLimited: 5 }],
    // The breaker opens after three, yet the model keeps getting requests: there is nothing else to send them to.
    ['500', { status: 500 }, { state: 'open', failures: 5 }],
  ])('answers %s five times: each request gets its error, never no_model_available, and the next one succeeds', async (_name, fault, health) => {
    const { up, server } = await singleModel();
    up.queue.push(fault, fault, fault, fault, fault);
    for (let i = 0; i < 5; i++) {
      const res = await post(server);
      expect(res.statusCode).toBe(502);
      expect(res.json().error.code).toBe('upstream_unavailable');
    }
    // Every one of them reached the upstream: none was refused by the breaker.
    expect(up.requests).toHaveLength(5);
    expect(await routing(server)).toMatchObject(health);
    const ok = await post(server);
    expect(ok.statusCode).toBe(200);
    expect(ok.json().output_text).toBe('fine');
    expect(up.requests).toHaveLength(6);
    expect(await routing(server)).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
  });
});

describe('a provider whose connections are all busy', () => {
  it('answers 503 upstream_saturated with retry-after once the queue wait passes its bound, without blaming the model', async () => {
    const { up, server } = await singleModel({ max_connections: 1, queue_timeout_ms: 50 });
    const release = gate();
    up.queue.push({ chunks: ['held', ' open'], hold: release.promise });
    const held = await streamUntilFirstDelta(server);

    const res = await post(server);
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({ error: { type: 'server_error', code: 'upstream_saturated', param: null }, detail: expect.any(String) });
    expect(up.requests).toHaveLength(1); // never sent

    release.open();
    expect(await held.rest()).toContain('response.completed');
    const after = await post(server);
    expect(after.statusCode).toBe(200);
    expect(await routing(server)).toMatchObject({ state: 'closed', failures: 0 });
  });

  it('does not count time queued for a connection as the model\'s latency', async () => {
    let now = Date.now();
    const { up, server } = await singleModel({ max_connections: 1, queue_timeout_ms: 30_000 }, () => now);
    const release = gate();
    up.queue.push({ chunks: ['held', ' open'], hold: release.promise });
    const first = await streamUntilFirstDelta(server);

    // The second request waits for the only connection while the clock moves on 10 s.
    const second = post(server);
    await eventually(async () => ((await routing(server)).inFlight === 2 ? true : undefined));
    now += 10_000;
    release.open();
    expect(await first.rest()).toContain('response.completed');
    const res = await second;
    expect(res.statusCode).toBe(200);
    expect(up.requests).toHaveLength(2);
    // Both got their first token the moment they were sent: queueing would have made it 2000 (EWMA of 0 and 10 000).
    expect(await routing(server)).toMatchObject({ successes: 2, latencyMs: 0 });
  });
});
