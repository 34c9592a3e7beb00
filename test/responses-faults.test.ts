import { request } from 'node:http';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { responses } from '../src/db/schema.ts';
import type { ResponseObject } from '../src/responses/object.ts';
import { countTokens } from '../src/tokens.ts';
import { bearer } from './helpers/app.ts';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';

let h: Harness;

beforeAll(async () => {
  // These tests fail the one upstream on purpose, again and again: keep its breaker closed.
  h = await startHarness({ router: { breaker: { failures: 1000 } } });
});
afterAll(async () => h.close());
beforeEach(() => {
  h.upstream.queue.length = 0;
  h.upstream.fallback = {};
});

const create = (payload: Record<string, unknown>) =>
  h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(h.tenant.key), payload });

const sseEvents = (body: string) =>
  body
    .split('\n\n')
    .filter((f) => f.startsWith('event: message'))
    .map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as Record<string, unknown> & { type: string; sequence_number: number });

async function storedResponses() {
  return h.database.db.select().from(responses).where(eq(responses.userId, h.tenant.userId));
}

async function latestStored(status?: string, since = 0) {
  const rows = await storedResponses();
  const sorted = rows
    .filter((r) => (status === undefined || r.status === status) && r.createdAt.getTime() >= since)
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  return sorted[0];
}

describe('an upstream that fails before the first byte', () => {
  it('gives a plain 502 in the envelope, without the upstream body, and stores the response as failed', async () => {
    h.upstream.queue.push({ status: 500, errorBody: '{"error":{"message":"GPU on fire at 10.1.2.3"}}' });
    const before = (await storedResponses()).length;
    const res = await create({ input: 'hello', stream: true });
    expect(res.statusCode).toBe(502);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json().error).toMatchObject({ type: 'upstream_error', code: 'upstream_unavailable' });
    expect(res.body).not.toMatch(/GPU|10\.1\.2\.3|500/);
    const rows = await storedResponses();
    expect(rows).toHaveLength(before + 1);
    expect((await latestStored())!.status).toBe('failed');
  });

  it('gives 504 upstream_timeout when the first byte is too slow', async () => {
    // Its own server with a short first-byte timeout, and an upstream that never answers: only the timeout ends it.
    const slow = await startHarness({ timeouts: { first_byte_ms: 300 }, router: { breaker: { failures: 1000 } } });
    try {
      slow.upstream.queue.push({ hang: true });
      const res = await slow.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(slow.tenant.key), payload: { input: 'hello', stream: false } });
      expect(res.statusCode).toBe(504);
      expect(res.json().error.code).toBe('upstream_timeout');
    } finally {
      await slow.close();
    }
  });

  it('gives 502 when the upstream cannot be reached', async () => {
    const down = await startHarness();
    await down.upstream.close();
    try {
      const res = await down.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(down.tenant.key), payload: { input: 'x' } });
      expect(res.statusCode).toBe(502);
      expect(res.json().error.code).toBe('upstream_unavailable');
    } finally {
      await down.app.close();
      await down.database.close();
    }
  });
});

describe('an upstream that fails mid-stream', () => {
  it('ends the stream with one terminal error event and stores the partial answer as failed', async () => {
    h.upstream.queue.push({ chunks: ['Partial ', 'answer ', 'never ', 'finished'], dropAfter: 2 });
    const res = await create({ input: 'hello' });
    expect(res.statusCode).toBe(200);
    const events = sseEvents(res.body);
    const last = events.at(-1)!;
    expect(last).toEqual({
      type: 'error',
      sequence_number: events.length - 1,
      code: 'upstream_error',
      message: expect.any(String),
      param: null,
      error: { type: 'upstream_error', code: 'upstream_error', message: last.message, param: null },
    });
    expect(events.filter((e) => e.type === 'error')).toHaveLength(1);
    expect(events.map((e) => e.type)).not.toContain('response.completed');

    const stored = (await latestStored())!;
    expect(stored.status).toBe('failed');
    const body = stored.body as ResponseObject;
    expect(body.output_text).toBe('Partial answer ');
    expect(body.error).toMatchObject({ code: 'upstream_error' });
    expect(stored.outputTokens).toBe(countTokens('Partial answer '));
    expect(stored.inputTokens).toBeGreaterThan(0);
  });

  it('answers stream: false with 502 upstream_error', async () => {
    h.upstream.queue.push({ chunks: ['a', 'b', 'c'], dropAfter: 1 });
    const res = await create({ input: 'hello', stream: false });
    expect(res.statusCode).toBe(502);
    expect(res.json().error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect((await latestStored())!.status).toBe('failed');
  });
});

describe('usage', () => {
  it('is counted with the tokenizer when the upstream reports none', async () => {
    h.upstream.queue.push({ chunks: ['Counted ', 'by us.'], usage: null });
    const res = await create({ input: 'Please count this prompt', stream: false });
    const usage = res.json().usage;
    expect(usage.output_tokens).toBe(countTokens('Counted by us.'));
    expect(usage.input_tokens).toBeGreaterThanOrEqual(countTokens('Please count this prompt'));
    expect(usage.total_tokens).toBe(usage.input_tokens + usage.output_tokens);
  });

  it('is summed per user and organisation for the UTC day and month', async () => {
    const h2 = await startHarness();
    try {
      h2.upstream.queue.push({ usage: { prompt_tokens: 100, completion_tokens: 10 } }, { usage: { prompt_tokens: 200, completion_tokens: 20 } });
      for (let i = 0; i < 2; i++) {
        const r = await h2.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(h2.tenant.key), payload: { input: 'x', stream: false } });
        expect(r.statusCode).toBe(200);
      }
      const { usageTotals } = await import('../src/db/schema.ts');
      const rows = await h2.database.db.select().from(usageTotals).where(eq(usageTotals.subjectId, h2.tenant.orgId));
      const day = new Date().toISOString().slice(0, 10);
      expect(rows.find((r) => r.window === 'day')).toMatchObject({ windowStart: day, inputTokens: 300, outputTokens: 30, totalTokens: 330, requests: 2 });
      expect(rows.find((r) => r.window === 'month')).toMatchObject({ windowStart: `${day.slice(0, 7)}-01`, totalTokens: 330, requests: 2 });
      const user = await h2.database.db
        .select()
        .from(usageTotals)
        .where(and(eq(usageTotals.subjectId, h2.tenant.userId), eq(usageTotals.window, 'day')));
      expect(user[0]).toMatchObject({ subjectType: 'user', totalTokens: 330 });
    } finally {
      await h2.close();
    }
  });
});

describe('a truncated answer', () => {
  it('ends with response.completed carrying status incomplete and the reason', async () => {
    h.upstream.queue.push({ chunks: ['Cut'], finish: 'length' });
    const res = await create({ input: 'hello' });
    const last = sseEvents(res.body).at(-1)!;
    expect(last.type).toBe('response.completed');
    expect(last.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect((await latestStored())!.status).toBe('incomplete');
  });
});

describe('a client that disconnects mid-stream', () => {
  it('aborts the upstream call and stores the response as incomplete with its usage', async () => {
    h.upstream.queue.push({ chunks: Array.from({ length: 200 }, (_, i) => `w${i} `), delayBetweenMs: 20 });
    const seenBefore = h.upstream.requests.length;
    const started = Date.now() - 1;
    await new Promise<void>((resolve, reject) => {
      const req = request(
        `${h.origin}/v1/responses`,
        { method: 'POST', headers: { ...bearer(h.tenant.key), 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
            if (text.includes('response.output_text.delta')) {
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
      req.end(JSON.stringify({ input: 'a long story please' }));
    });
    const upstreamCall = h.upstream.requests[seenBefore]!;
    await upstreamCall.closed;
    expect(upstreamCall.finished).toBe(false);

    const stored = await eventually(async () => latestStored('incomplete', started));
    const body = stored.body as ResponseObject;
    expect(body.status).toBe('incomplete');
    expect(body.incomplete_details).toEqual({ reason: 'client_disconnected' });
    expect(body.output_text.length).toBeGreaterThan(0);
    expect(body.output_text.length).toBeLessThan(200 * 4);
    expect(stored.outputTokens).toBe(countTokens(body.output_text));
    expect(stored.inputTokens).toBeGreaterThan(0);
  });
});

describe('an upstream that ignores max_tokens', () => {
  it('is cut off, and the answer is marked incomplete', async () => {
    const small = await startHarness({ model: { max_output_tokens: 16, context_window: 4096 } });
    try {
      // 16 tokens allowed: the engine keeps at most 64 KiB; the upstream sends 20 × 8 KiB.
      small.upstream.queue.push({ chunks: Array.from({ length: 20 }, () => 'x'.repeat(8192)) });
      const res = await small.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(small.tenant.key), payload: { input: 'x', stream: false } });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.status).toBe('incomplete');
      expect(body.incomplete_details).toEqual({ reason: 'max_output_tokens' });
      expect(body.output_text.length).toBeLessThanOrEqual(65_536);
      await small.upstream.requests[0]!.closed;
    } finally {
      await small.close();
    }
  });
});
