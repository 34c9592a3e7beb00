import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './helpers/harness.ts';

let h: Harness;

// The default keep-alive interval (15 s): the headers wait for the model's first output, however busy the machine.
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => h.close());
beforeEach(() => {
  h.upstream.queue.length = 0;
});

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw HTTP POST, returning the body bytes exactly as they arrived. */
function post(path: string, payload: unknown, key = h.tenant.key, origin = h.origin): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${origin}${path}`,
      { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } },
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

describe('SSE framing on the wire', () => {
  it('sends the SSE headers, held back for the model and naming it, and exactly `event: message\\ndata: <json>\\n\\n` frames', async () => {
    h.upstream.queue.push({ chunks: ['Hé', ' "quoted"\nline'] });
    const res = await post('/v1/responses', { input: 'Hello' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers['x-eugpt-model']).toBe('llama-small');

    expect(res.body.endsWith('\n\n')).toBe(true);
    expect(res.body).not.toMatch(/^id:/m);
    expect(res.body).not.toContain('[DONE]');
    const frames = res.body.slice(0, -2).split('\n\n');
    for (const f of frames) expect(f).toMatch(/^event: message\ndata: \{[^\n]*\}$/);
    const events = frames.map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as { type: string; sequence_number: number });
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(frames[0]).toMatch(/^event: message\ndata: \{"type":"response\.created","sequence_number":0,"response":\{"id":"[0-9a-f-]{36}","object":"response",/);
    const last = events.at(-1) as unknown as { type: string; response: { output_text: string } };
    expect(last.type).toBe('response.completed');
    expect(last.response.output_text).toBe('Hé "quoted"\nline');
  });

  it('answers errors found before the stream as plain JSON, never SSE', async () => {
    const res = await post('/v1/responses', { stream: true });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(res.body).error.code).toBe('input_required');
    const unauth = await post('/v1/responses', { input: 'x' }, 'eugpt_bad');
    expect(unauth.status).toBe(401);
    expect(unauth.headers['content-type']).toMatch(/^application\/json/);
  });
});

describe('SSE keep-alive between tokens', () => {
  let quick: Harness;
  beforeAll(async () => {
    quick = await startHarness({ keepAliveMs: 60 });
  });
  afterAll(async () => quick.close());

  it('sends keep-alive comments while the upstream is silent', async () => {
    quick.upstream.queue.push({ chunks: ['a', 'b'], delayBetweenMs: 400 });
    const res = await post('/v1/responses', { input: 'slow' }, quick.tenant.key, quick.origin);
    expect(res.body).toContain('\n\n: keep-alive\n\n');
    const events = res.body
      .split('\n\n')
      .filter((f) => f.startsWith('event: message'))
      .map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as { type: string });
    expect(events.at(-1)!.type).toBe('response.completed');
  });
});

describe('upstream connections', () => {
  it('are kept for the next call after a long answer', async () => {
    h.upstream.requests.length = 0;
    const long = { chunks: Array.from({ length: 40 }, (_, i) => `chunk ${i} `.padEnd(200, '.')) };
    h.upstream.queue.push(long, long);
    expect((await post('/v1/responses', { input: 'Long please', stream: false })).status).toBe(200);
    // Once the upstream has ended the first body, its connection is free for the next call.
    await h.upstream.requests[0]!.closed;
    expect((await post('/v1/responses', { input: 'Long please', stream: false })).status).toBe(200);
    const [first, second] = h.upstream.requests;
    expect(second!.remotePort).toBe(first!.remotePort);
  });
});
