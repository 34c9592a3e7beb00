import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer } from './helpers/app.ts';
import { adminPost, startChildServer, streamReader, type ChildServer } from './helpers/child-server.ts';
import { createOwnDatabase, TEST_DATABASE_URL } from './helpers/db.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { writeConfig } from './helpers/harness.ts';

/**
 * Crash and shutdown safety, with the server as a real process: a response
 * whose process is killed with SIGKILL mid-stream is finalised by the next
 * instance (incomplete, its checkpointed text kept, its tokens counted, its
 * reservation given back); on SIGTERM a stream that outlives the grace
 * period ends with a terminal error event and is stored and metered.
 */

let upstream: FakeUpstream;
let config: string;
const fast = { EUGPT_HEARTBEAT_MS: '200', EUGPT_INSTANCE_STALE_MS: '1000', EUGPT_CHECKPOINT_MS: '100', FAKE_UPSTREAM_KEY: 'k' };
const children: ChildServer[] = [];
// On PostgreSQL the children get a database of their own: with these timings they would take any other file's
// server, heartbeating every 5 s, for dead, and finalise its streams.
let own: { url: string; drop: () => Promise<void> } | undefined;

beforeAll(async () => {
  upstream = await startFakeUpstream({ chunks: Array.from({ length: 600 }, (_, i) => `w${i} `), delayBetweenMs: 20 });
  config = writeConfig(upstream.url);
  if (TEST_DATABASE_URL !== undefined) own = await createOwnDatabase(TEST_DATABASE_URL);
});
afterAll(async () => {
  for (const c of children) c.process.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await upstream.close();
  await own?.drop();
});

async function start(dataDir: string, env: Record<string, string> = {}) {
  const c = await startChildServer({ EUGPT_CONFIG: config, ...fast, ...(own ? { DATABASE_URL: own.url } : {}), ...env }, dataDir);
  children.push(c);
  return c;
}

async function tenant(origin: string, dailyLimit: number | null) {
  const org = await adminPost(origin, '/organizations', { name: `Crash ${Date.now()}` });
  if (dailyLimit !== null) await adminPost(origin, `/organizations/${org.id}`, { daily_token_limit: dailyLimit }, 'PATCH');
  const user = await adminPost(origin, '/users', { organization_id: org.id, email: `${Date.now()}-${Math.random()}@crash.eu` });
  const key = await adminPost(origin, '/api-keys', { user_id: user.id, label: 'k' });
  return key.key!;
}

const get = async (origin: string, path: string, key: string) => {
  const res = await fetch(`${origin}${path}`, { headers: bearer(key) });
  return (await res.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};

async function waitFor<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('a server killed mid-stream', () => {
  it('leaves a response that the next instance finalises: incomplete, text kept, tokens counted, reservation settled', { timeout: 120_000 }, async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'eugpt-crash-')), 'data');
    const first = await start(dataDir);
    const key = await tenant(first.origin, 1_000_000);
    const res = await fetch(`${first.origin}/v1/responses`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'a very long answer, please' }),
    });
    expect(res.status).toBe(200);
    const stream = streamReader(res.body!);
    await stream.until('"type":"response.created"');
    const id = /"id":"([0-9a-f-]{36})"/.exec(stream.text)![1]!;

    // In progress and visible from the start; then its output is checkpointed while it streams.
    expect((await get(first.origin, `/v1/responses/${id}`, key)).status).toBe('in_progress');
    await stream.until('"delta":"w20 "');
    await waitFor(async () => ((await get(first.origin, `/v1/responses/${id}`, key)).output_text.length > 0 ? true : undefined), 'a checkpoint');
    const reserved = await get(first.origin, '/v1/usage', key);
    expect(reserved.day.organization.reserved_tokens).toBeGreaterThan(0);

    first.process.kill('SIGKILL');
    await first.exited;
    const delivered = stream.text;

    const second = await start(dataDir);
    const done = await waitFor(async () => {
      const r = await get(second.origin, `/v1/responses/${id}`, key);
      return r.status === 'in_progress' ? undefined : r;
    }, 'recovery');
    expect(done.status).toBe('incomplete');
    expect(done.incomplete_details).toEqual({ reason: 'interrupted' });
    expect(done.output_text.length).toBeGreaterThan(0);
    // The checkpointed text is the answer as it streamed, from its start.
    expect(done.output_text.startsWith('w0 w1 w2 w3 w4 ')).toBe(true);
    const deliveredText = [...delivered.matchAll(/"delta":"([^"]*)"/g)].map((m) => m[1]).join('');
    expect(deliveredText.startsWith('w0 w1 w2 w3 w4 ')).toBe(true);
    expect(done.usage.output_tokens).toBeGreaterThan(0);
    expect(done.usage.input_tokens).toBeGreaterThan(0);

    const usage = await get(second.origin, '/v1/usage', key);
    expect(usage.day.organization).toMatchObject({ reserved_tokens: 0, requests: 1, total_tokens: done.usage.total_tokens });

    // Counted once: later sweeps and later responses add only their own tokens.
    upstream.queue.push({ chunks: ['short'] });
    const next = await fetch(`${second.origin}/v1/responses`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'and now a short one', stream: false }),
    });
    const nextBody = (await next.json()) as { usage: { total_tokens: number } };
    const after = await get(second.origin, '/v1/usage', key);
    expect(after.day.organization).toMatchObject({ reserved_tokens: 0, requests: 2, total_tokens: done.usage.total_tokens + nextBody.usage.total_tokens });
    second.process.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});

describe('SIGTERM with a stream that outlives the grace period', () => {
  it('ends the stream with server_shutting_down, then stores and meters it', { timeout: 120_000 }, async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'eugpt-term-')), 'data');
    const server = await start(dataDir, { EUGPT_SHUTDOWN_GRACE_MS: '500' });
    const key = await tenant(server.origin, 1_000_000);
    const res = await fetch(`${server.origin}/v1/responses`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'talk for a long time' }),
    });
    const stream = streamReader(res.body!);
    await stream.until('"delta":"w5 "');
    const id = /"id":"([0-9a-f-]{36})"/.exec(stream.text)![1]!;

    server.process.kill('SIGTERM');
    await stream.until(/"type":"error"[^\n]*\n\n$/);
    const last = JSON.parse(stream.text.trim().split('\n\n').at(-1)!.slice('event: message\ndata: '.length)) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(last).toMatchObject({ type: 'error', code: 'server_shutting_down', error: { code: 'server_shutting_down' } });
    expect(await server.exited).toBe(0);

    const after = await start(dataDir);
    const stored = await get(after.origin, `/v1/responses/${id}`, key);
    expect(stored.status).toBe('failed');
    expect(stored.error).toMatchObject({ code: 'server_shutting_down' });
    expect(stored.output_text).toContain('w5 ');
    expect(stored.usage.output_tokens).toBeGreaterThan(0);
    const usage = await get(after.origin, '/v1/usage', key);
    expect(usage.day.organization).toMatchObject({ reserved_tokens: 0, requests: 1, total_tokens: stored.usage.total_tokens });
    after.process.kill('SIGTERM');
    expect(await after.exited).toBe(0);
  });
});
