import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { bearer } from './helpers/app.ts';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';

/** /metrics through both doors, and what moves in it after real traffic (a fake model server on loopback). */

const TOKEN = 'metrics-token-0123456789abcdef';
let h: Harness;
let separate: string;

beforeAll(async () => {
  h = await startHarness({
    model: { capabilities: ['json', 'tools'] },
    tools: { max_steps: 3 },
    // One failure opens the breaker, so the last test can see it.
    router: { breaker: { failures: 1, cooldown_ms: 600_000, max_cooldown_ms: 600_000 } },
    env: { EUGPT_METRICS_TOKEN: TOKEN, EUGPT_METRICS_PORT: '0' },
  });
  separate = `http://127.0.0.1:${h.app.metricsAddress!.port}/metrics`;
});
afterAll(async () => {
  await h?.close();
});

const scrape = async (): Promise<string> => {
  const res = await fetch(separate);
  expect(res.status).toBe(200);
  return res.text();
};

/** The value of one series: the metric's line whose labels include all of `labels`; 0 when absent. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const braces = /\{(.*)\}/.exec(line)?.[1] ?? '';
    const have = braces === '' ? [] : braces.split(/,(?=\w+=")/);
    if (want.every((w) => have.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

interface Answer {
  id: string;
  status: string;
  conversation_id: string;
  usage: { input_tokens: number; output_tokens: number };
}

const respond = (input: string, stream = false) =>
  fetch(`${h.origin}/v1/responses`, {
    method: 'POST',
    headers: { ...bearer(h.tenant.key), 'content-type': 'application/json' },
    body: JSON.stringify({ input, stream }),
  });

describe('access', () => {
  it('asks for the metrics token on the main port', async () => {
    const none = await fetch(`${h.origin}/metrics`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: unknown }).error).toMatchObject({ type: 'authentication_error', code: 'invalid_metrics_token' });
    const wrong = await fetch(`${h.origin}/metrics`, { headers: bearer(`${TOKEN}x`) });
    expect(wrong.status).toBe(401);
    // An API key is not the metrics token either.
    expect((await fetch(`${h.origin}/metrics`, { headers: bearer(h.tenant.key) })).status).toBe(401);
    const right = await fetch(`${h.origin}/metrics`, { headers: bearer(TOKEN) });
    expect(right.status).toBe(200);
    expect(right.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await right.text();
    expect(text).toContain('# TYPE eugpt_http_requests_total counter');
    expect(text).toContain('process_cpu_seconds_total');
  });

  it('serves them without a token on their own port, and nothing else there', async () => {
    expect(h.app.metricsAddress!.address).toBe('127.0.0.1');
    expect(await scrape()).toContain('eugpt_breaker_state');
    expect((await fetch(separate.replace('/metrics', '/v1/models'))).status).toBe(404);
    expect((await fetch(separate, { method: 'POST' })).status).toBe(404);
  });

  it('are off when neither a token nor a port is set', async () => {
    const app = await buildApp({ config: loadConfig({}), database: h.database, logger: false });
    try {
      expect(app.metricsAddress).toBeNull();
      expect((await app.inject({ url: '/metrics', headers: bearer(TOKEN) })).statusCode).toBe(404);
    } finally {
      await app.close();
    }
  });

  it('stops the start when its port is taken', async () => {
    const taken = String(h.app.metricsAddress!.port);
    await expect(buildApp({ config: loadConfig({ EUGPT_METRICS_PORT: taken }), database: h.database, logger: false })).rejects.toThrow(/EADDRINUSE/);
  });

  it('refuses a short token and a bad port at start', () => {
    expect(() => loadConfig({ EUGPT_METRICS_TOKEN: 'short' })).toThrow(/EUGPT_METRICS_TOKEN: must be at least 16/);
    expect(() => loadConfig({ EUGPT_METRICS_PORT: 'x' })).toThrow(/EUGPT_METRICS_PORT/);
  });
});

describe('after traffic', () => {
  it('counts a response: request, tokens, time to first token, model call, batches', async () => {
    const before = await scrape();
    const res = await respond(`SECRET-PROMPT-${randomUUID()}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Answer;
    expect(body.status).toBe('completed');
    // The request is counted when its answer has ended, just after the client has it.
    const after = await eventually(async () => {
      const t = await scrape();
      const route = { route: '/v1/responses', method: 'POST', status: '200' };
      return value(t, 'eugpt_http_requests_total', route) > value(before, 'eugpt_http_requests_total', route) ? t : undefined;
    });
    const diff = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(diff('eugpt_http_requests_total', { route: '/v1/responses', method: 'POST', status: '200' })).toBe(1);
    expect(diff('eugpt_http_request_duration_seconds_count', { route: '/v1/responses', method: 'POST' })).toBe(1);
    expect(diff('eugpt_tokens_total', { model: 'llama-small', direction: 'input' })).toBe(body.usage.input_tokens);
    expect(diff('eugpt_tokens_total', { model: 'llama-small', direction: 'output' })).toBe(body.usage.output_tokens);
    expect(diff('eugpt_response_first_token_seconds_count', { model: 'llama-small', stream: 'false' })).toBe(1);
    expect(diff('eugpt_response_duration_seconds_count', { model: 'llama-small', status: 'completed', stream: 'false' })).toBe(1);
    expect(diff('eugpt_upstream_calls_total', { model: 'llama-small', outcome: 'success' })).toBe(1);
    expect(diff('eugpt_upstream_connection_wait_seconds_count', { provider: 'local' })).toBe(1);
    expect(diff('eugpt_db_batch_size_count', { queue: 'admissions' })).toBeGreaterThanOrEqual(1);
    expect(diff('eugpt_db_queue_wait_seconds_count', { queue: 'admissions' })).toBeGreaterThanOrEqual(1);
    expect(diff('eugpt_db_batch_size_count', { queue: 'endings' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'eugpt_db_pool_connections', { state: 'total' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'eugpt_breaker_state', { model: 'llama-small' })).toBe(0);
  });

  it('times the first token of a stream', async () => {
    const before = await scrape();
    const res = await respond('Hello there', true);
    expect(res.status).toBe(200);
    await res.text();
    const after = await eventually(async () => {
      const t = await scrape();
      const labels = { model: 'llama-small', status: 'completed', stream: 'true' };
      return value(t, 'eugpt_response_duration_seconds_count', labels) > value(before, 'eugpt_response_duration_seconds_count', labels) ? t : undefined;
    });
    const labels = { model: 'llama-small', stream: 'true' };
    expect(value(after, 'eugpt_response_first_token_seconds_count', labels) - value(before, 'eugpt_response_first_token_seconds_count', labels)).toBe(1);
    // The first token comes before the end of the answer.
    expect(value(after, 'eugpt_response_first_token_seconds_sum', labels)).toBeLessThanOrEqual(
      value(after, 'eugpt_response_duration_seconds_sum', { ...labels, status: 'completed' }),
    );
  });

  it('counts tool calls by tool and outcome', async () => {
    const before = await scrape();
    h.upstream.queue.push({ calls: [{ name: 'calculator', arguments: '{"expression":"6*7"}' }] }, { calls: [{ name: 'calculator', arguments: '{"expression":"1/"}' }] }, {});
    const res = await respond('Compute please');
    expect(res.status).toBe(200);
    await res.json();
    const after = await scrape();
    const diff = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(diff('eugpt_tool_calls_total', { tool: 'calculator', outcome: 'completed' })).toBe(1);
    expect(diff('eugpt_tool_calls_total', { tool: 'calculator', outcome: 'failed' })).toBe(1);
    expect(diff('eugpt_tool_call_duration_seconds_count', { tool: 'calculator' })).toBe(2);
    expect(diff('eugpt_upstream_calls_total', { model: 'llama-small', outcome: 'success' })).toBe(3);
  });

  it('keeps every label to a closed set: route templates, never URLs or ids', async () => {
    const junk = Array.from({ length: 40 }, () => randomUUID());
    await Promise.all(junk.map((id) => fetch(`${h.origin}/v1/${id}?q=${id}`, { headers: bearer(h.tenant.key) })));
    await Promise.all(junk.slice(0, 10).map((id) => fetch(`${h.origin}/v1/responses/resp_${id}`, { headers: bearer(h.tenant.key) })));
    await Promise.all(junk.slice(0, 10).map((id) => fetch(`${h.origin}/v1/responses`, { method: id.startsWith('0') ? 'PATCH' : 'PUT' })));
    const text = await eventually(async () => {
      const t = await scrape();
      return value(t, 'eugpt_http_requests_total', { route: '/v1/responses/:id', method: 'GET', status: '404' }) >= 10 ? t : undefined;
    });
    for (const id of junk) expect(text).not.toContain(id);
    expect(value(text, 'eugpt_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' })).toBeGreaterThanOrEqual(40);
    const routes = new Set([...text.matchAll(/route="([^"]*)"/g)].map((m) => m[1]));
    // Only templates the server defines (a path parameter is `:name`), and the one word for the rest.
    for (const route of routes) expect(route === 'unmatched' || /^\/[\w/.:-]*$/.test(route!)).toBe(true);
    expect(routes.size).toBeLessThan(30);
  });

  it('never shows what users send, who they are, or what models answer', async () => {
    const secret = `SECRET-${randomUUID()}`;
    h.upstream.queue.push({ chunks: [`ANSWER-${secret}`] });
    const res = await respond(`Tell me about ${secret}`);
    const body = (await res.json()) as Answer;
    await fetch(`${h.origin}/v1/responses/${body.id}`, { headers: { ...bearer(h.tenant.key), 'x-request-id': `req-${secret}`, 'user-agent': secret } });
    const text = await scrape();
    for (const needle of [secret, body.id, body.conversation_id, h.tenant.key, h.tenant.userId, h.tenant.orgId, h.tenant.keyId, 'sk-upstream-secret']) {
      expect(text).not.toContain(needle);
    }
  });

  it('counts upstream errors by kind and shows the breaker open', async () => {
    const before = await scrape();
    h.upstream.queue.push({ status: 500 });
    const res = await respond('This one fails');
    expect(res.status).toBe(502);
    await res.json();
    const after = await scrape();
    expect(value(after, 'eugpt_upstream_errors_total', { model: 'llama-small', kind: 'status' }) - value(before, 'eugpt_upstream_errors_total', { model: 'llama-small', kind: 'status' })).toBe(1);
    expect(value(after, 'eugpt_upstream_calls_total', { model: 'llama-small', outcome: 'failure' }) - value(before, 'eugpt_upstream_calls_total', { model: 'llama-small', outcome: 'failure' })).toBe(1);
    expect(value(after, 'eugpt_breaker_state', { model: 'llama-small' })).toBe(2);
  });
});

it('has every metric the Grafana dashboard queries', async () => {
  const dashboard = readFileSync(new URL('../deploy/grafana/eugpt-dashboard.json', import.meta.url), 'utf8');
  const used = new Set([...dashboard.matchAll(/\b((?:eugpt|process|nodejs)_\w+?)(?:_bucket|_count|_sum)?\b/g)].map((m) => m[1]!));
  expect(used.size).toBeGreaterThan(10);
  const text = await scrape();
  for (const name of used) expect(text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
});
