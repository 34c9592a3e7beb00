import { request } from 'node:http';
import OpenAI from 'openai';
import type { ResponseStreamEvent } from 'openai/resources/responses/responses';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { startHarness, type Harness } from './helpers/harness.ts';

/**
 * A model slow to send its first token: the stream's headers and `: keep-alive`
 * comments go out while it thinks, so a proxy in front (nginx cuts a silent
 * connection after 60 s) keeps the connection, and clients ignore them.
 */

const KEEP_ALIVE_MS = 100;
/** Long enough for several comments before the model's first output. */
const SLOW_FIRST_MS = 700;

let h: Harness;

beforeAll(async () => {
  // Through the environment, as an operator sets it.
  h = await startHarness({ env: { EUGPT_SSE_KEEPALIVE_MS: String(KEEP_ALIVE_MS) }, timeouts: { first_byte_ms: 5_000 } });
});
afterAll(async () => h.close());
beforeEach(() => {
  h.upstream.queue.length = 0;
});

function post(payload: unknown): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${h.origin}/v1/responses`,
      { method: 'POST', headers: { authorization: `Bearer ${h.tenant.key}`, 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(payload));
  });
}

const framesOf = (body: string) => body.slice(0, -2).split('\n\n');

describe('SSE keep-alive before the first token', () => {
  it('sends the headers and comments while the model is silent, then the same events as ever', async () => {
    h.upstream.queue.push({ chunks: ['Slow ', 'start.'], delayFirstMs: SLOW_FIRST_MS });
    const res = await post({ input: 'Think first', stream: true });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // The headers left before any model had answered, so none is named there.
    expect(res.headers['x-eugpt-model']).toBeUndefined();

    const frames = framesOf(res.body);
    const leading = frames.findIndex((f) => f !== ': keep-alive');
    expect(leading).toBeGreaterThanOrEqual(2);
    // Apart from the comments, the events are framed and numbered exactly as without them.
    const events = frames.filter((f) => f !== ': keep-alive');
    for (const f of events) expect(f).toMatch(/^event: message\ndata: \{[^\n]*\}$/);
    const parsed = events.map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as { type: string; sequence_number: number; response?: { output_text: string; status: string } });
    expect(parsed.map((e) => e.sequence_number)).toEqual(parsed.map((_, i) => i));
    expect(parsed[0]!.type).toBe('response.created');
    expect(parsed.at(-1)!.type).toBe('response.completed');
    expect(parsed.at(-1)!.response).toMatchObject({ status: 'completed', output_text: 'Slow start.' });
  });

  it('lets the official openai SDK read a stream that starts with comments', async () => {
    h.upstream.queue.push({ chunks: ['Still ', 'parsed.'], delayFirstMs: SLOW_FIRST_MS });
    const client = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key, maxRetries: 0 });
    const stream = await client.responses.create({ model: 'auto', input: 'Slow', stream: true });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const text = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');
    expect(text).toBe('Still parsed.');
    expect(events.at(-1)?.type).toBe('response.completed');
  });

  it('ends a stream whose model fails after the headers went out with one error event', async () => {
    h.upstream.queue.push({ status: 500, delayFirstMs: SLOW_FIRST_MS });
    const res = await post({ input: 'Doomed', stream: true });
    expect(res.status).toBe(200);
    const events = framesOf(res.body).filter((f) => f !== ': keep-alive');
    expect(events).toHaveLength(1);
    const event = JSON.parse(events[0]!.slice('event: message\ndata: '.length)) as { type: string; sequence_number: number; code: string; error: { type: string } };
    expect(event).toMatchObject({ type: 'error', sequence_number: 0, code: 'upstream_unavailable', error: { type: 'upstream_error' } });
  });
});

describe('EUGPT_SSE_KEEPALIVE_MS', () => {
  it('defaults to 15 s, takes 0 for none, and refuses what is not a bounded whole number', () => {
    expect(loadConfig({}).sseKeepAliveMs).toBe(15_000);
    expect(loadConfig({ EUGPT_SSE_KEEPALIVE_MS: '0' }).sseKeepAliveMs).toBe(0);
    expect(() => loadConfig({ EUGPT_SSE_KEEPALIVE_MS: '-1' })).toThrow(/^EUGPT_SSE_KEEPALIVE_MS: /);
    expect(() => loadConfig({ EUGPT_SSE_KEEPALIVE_MS: '3600001' })).toThrow(/^EUGPT_SSE_KEEPALIVE_MS: /);
  });
});
