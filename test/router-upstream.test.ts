import { describe, expect, it } from 'vitest';
import { ConnectionGate } from '../src/providers/gate.ts';
import { parseRetryAfter, UpstreamError } from '../src/providers/types.ts';
import { healthOutcomeOf } from '../src/responses/attempts.ts';
import { upstreamFailure } from '../src/responses/errors.ts';
import { providerSchema } from '../src/router/catalog.ts';

describe('what an upstream error says about the model', () => {
  const status = (code: number, detail?: string, retryAfterMs?: number) =>
    new UpstreamError('status', `upstream answered HTTP ${code}`, code, detail, retryAfterMs);

  it.each([
    ['400', status(400), { type: 'neutral' }],
    ['404', status(404), { type: 'neutral' }],
    ['413', status(413), { type: 'neutral' }],
    ['422', status(422), { type: 'neutral' }],
    ['a 500 saying the context is too long', status(500, '{"error":{"message":"This model\'s maximum context length is 8192 tokens"}}'), { type: 'neutral' }],
    ['a stream error event saying the prompt is too long', new UpstreamError('protocol', 'upstream sent an error event: invalid_request_error: prompt is too long: 210000 tokens'), { type: 'neutral' }],
    ['a full connection queue', new UpstreamError('saturated', 'busy', undefined, undefined, 1000), { type: 'neutral' }],
    ['429 with retry-after', status(429, '', 2000), { type: 'rate_limited', retryAfterMs: 2000 }],
    ['429 without', status(429), { type: 'rate_limited', retryAfterMs: undefined }],
    ['500', status(500, '{"error":"boom"}'), { type: 'failure', timeout: false }],
    ['401 (a wrong key is the operator\'s fault, not the request\'s)', status(401), { type: 'failure', timeout: false }],
    ['a timeout', new UpstreamError('timeout', 'no first event'), { type: 'failure', timeout: true }],
    ['a connect error', new UpstreamError('connect', 'ECONNREFUSED'), { type: 'failure', timeout: false }],
    ['a bug of ours', new TypeError('x is undefined'), { type: 'failure', timeout: false }],
  ])('%s', (_name, err, outcome) => {
    expect(healthOutcomeOf(err)).toEqual(outcome);
  });

  it('lets failover try another provider when the queue is full', () => {
    expect(new UpstreamError('saturated', 'busy').retryable).toBe(true);
  });

  it('is shown to the client as 503 upstream_saturated with retry-after', () => {
    const e = upstreamFailure(new UpstreamError('saturated', 'busy', undefined, undefined, 2500));
    expect(e.status).toBe(503);
    expect(e.headers).toEqual({ 'retry-after': '3' });
    expect(e.toBody()).toMatchObject({ error: { type: 'server_error', code: 'upstream_saturated', param: null } });
  });
});

describe('retry-after', () => {
  it.each([
    ['seconds', '2', 2000],
    ['fractional seconds', '1.5', 1500],
    ['an HTTP date', 'Thu, 01 Jan 2026 00:00:30 GMT', 30_000],
    ['a date in the past', 'Thu, 01 Jan 2026 00:00:00 GMT', 0],
    ['the first of several', ['4', '9'], 4000],
    ['absent', undefined, undefined],
    ['garbage', 'soon', undefined],
    ['negative', '-5', undefined],
  ])('%s', (_name, value, ms) => {
    expect(parseRetryAfter(value, Date.parse('2026-01-01T00:00:00Z'))).toBe(ms);
  });
});

describe('provider connection defaults', () => {
  it('are sized for hundreds of concurrent streams, with a bounded wait', () => {
    const p = providerSchema.parse({ id: 'p', type: 'openai-compatible', base_url: 'http://127.0.0.1:1/v1' });
    expect(p.max_connections).toBe(512);
    expect(p.queue_timeout_ms).toBe(5000);
  });
});

describe('the connection gate', () => {
  const never = new AbortController().signal;

  it('lets up to its limit through at once and queues the rest in order', async () => {
    const gate = new ConnectionGate(2, 60_000);
    const a = await gate.enter(never);
    const b = await gate.enter(never);
    expect(gate.inUse).toBe(2);
    const order: string[] = [];
    const c = gate.enter(never).then((s) => (order.push('c'), s));
    const d = gate.enter(never).then((s) => (order.push('d'), s));
    expect(gate.queued).toBe(2);
    a.release();
    a.release(); // twice is once
    const sc = await c;
    expect(order).toEqual(['c']);
    expect(gate.inUse).toBe(2);
    b.release();
    const sd = await d;
    expect(order).toEqual(['c', 'd']);
    sc.release();
    sd.release();
    expect(gate.inUse).toBe(0);
  });

  it('refuses as saturated, with a retry hint, once the wait passes its bound', async () => {
    const gate = new ConnectionGate(1, 20);
    const held = await gate.enter(never);
    const err = await gate.enter(never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'saturated', retryAfterMs: 1000 });
    expect(gate.queued).toBe(0);
    held.release();
    expect(gate.inUse).toBe(0);
  });

  it('drops a waiter whose call is aborted, and hands the slot to the next', async () => {
    const gate = new ConnectionGate(1, 60_000);
    const held = await gate.enter(never);
    const gone = new AbortController();
    const first = gate.enter(gone.signal).catch((e: unknown) => e);
    const second = gate.enter(never);
    gone.abort();
    expect(await first).toMatchObject({ kind: 'saturated' });
    held.release();
    const slot = await second;
    expect(gate.inUse).toBe(1);
    slot.release();
  });
});
