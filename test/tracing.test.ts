import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { startTracing, type Tracing } from '../src/observability/tracing.ts';
import { bearer } from './helpers/app.ts';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';

/** Spans sent over OTLP/HTTP to a collector on loopback: their names, parents and attributes. */

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  boolValue?: boolean;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: OtlpValue }[];
  links?: { traceId: string; spanId: string }[];
}
interface Export {
  resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
}

const exports: { contentType: string | undefined; body: Export }[] = [];
let collector: Server;
let tracing: Tracing;
let h: Harness;

beforeAll(async () => {
  collector = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.method === 'POST') exports.push({ contentType: req.headers['content-type'], body: JSON.parse(raw) as Export });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  const config = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: 'eugpt-test' });
  expect(config.observability.tracing.url).toBe(`${endpoint}/v1/traces`);
  tracing = (await startTracing(config.observability.tracing))!;
  h = await startHarness({ model: { capabilities: ['json', 'tools'] }, tools: { max_steps: 3 } });
});
afterAll(async () => {
  await h?.close();
  await tracing?.shutdown();
  await new Promise<void>((resolve) => collector?.close(() => resolve()));
});

const spans = () => exports.flatMap((e) => e.body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)));
const attr = (span: OtlpSpan, key: string) => {
  const v = span.attributes.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : (v.stringValue ?? (v.intValue === undefined ? v.boolValue : Number(v.intValue)));
};

/** The spans of one trace, once the server span (the last to end) has arrived. */
async function traceOf(traceId: string): Promise<OtlpSpan[]> {
  return eventually(async () => {
    await tracing.flush();
    const mine = spans().filter((s) => s.traceId === traceId);
    return mine.some((s) => s.name === 'POST /v1/responses') ? mine : undefined;
  });
}

it('is off without an endpoint, or when the SDK or the exporter is turned off', () => {
  expect(loadConfig({}).observability.tracing.url).toBeUndefined();
  expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).observability.tracing.url).toBeUndefined();
  expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).observability.tracing.url).toBeUndefined();
  expect(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom' }).observability.tracing.url).toBe('http://c:4318/custom');
  expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://c' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT/);
});

it("hangs a response's spans under the caller's traceparent: admission, model calls, tool call, storage", async () => {
  const traceId = randomBytes(16).toString('hex');
  const parentId = randomBytes(8).toString('hex');
  const secret = `SECRET-${randomUUID()}`;
  h.upstream.queue.push({ calls: [{ name: 'calculator', arguments: '{"expression":"6*7"}' }] }, { chunks: [`The answer ${secret}`] });
  const res = await fetch(`${h.origin}/v1/responses`, {
    method: 'POST',
    headers: { ...bearer(h.tenant.key), 'content-type': 'application/json', traceparent: `00-${traceId}-${parentId}-01` },
    body: JSON.stringify({ input: `What is 6*7? ${secret}`, stream: false }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { usage: { input_tokens: number; output_tokens: number } };

  const trace = await traceOf(traceId);
  const server = trace.find((s) => s.name === 'POST /v1/responses')!;
  expect(server.parentSpanId).toBe(parentId);
  expect(server.kind).toBe(2); // SERVER
  expect(attr(server, 'http.route')).toBe('/v1/responses');
  expect(attr(server, 'http.response.status_code')).toBe(200);
  const children = (name: string, parent: OtlpSpan) => trace.filter((s) => s.name === name && s.parentSpanId === parent.spanId);

  const [admit] = children('response.admit', server);
  expect(admit).toBeDefined();
  expect(attr(admit!, 'eugpt.model')).toBe('llama-small');
  const calls = children('model.call', server);
  expect(calls).toHaveLength(2);
  for (const call of calls) {
    expect(attr(call, 'eugpt.model')).toBe('llama-small');
    expect(attr(call, 'eugpt.provider')).toBe('local');
    expect(attr(call, 'eugpt.outcome')).toBe('success');
  }
  const used = (key: string) => calls.reduce((n, c) => n + Number(attr(c, key)), 0);
  expect(used('gen_ai.usage.input_tokens')).toBe(body.usage.input_tokens);
  expect(used('gen_ai.usage.output_tokens')).toBe(body.usage.output_tokens);
  const [tool] = children('tool.call', server);
  expect(attr(tool!, 'eugpt.tool')).toBe('calculator');
  expect(attr(tool!, 'eugpt.outcome')).toBe('completed');
  const [store] = children('response.store', server);
  expect(store).toBeDefined();
  // Each write is a batch of the group-commit queue, under the step that waited for it.
  const admitBatch = trace.find((s) => s.name === 'db.batch' && s.parentSpanId === admit!.spanId);
  expect(attr(admitBatch!, 'eugpt.queue')).toBe('admissions');
  const storeBatch = trace.find((s) => s.name === 'db.batch' && s.parentSpanId === store!.spanId);
  expect(attr(storeBatch!, 'eugpt.queue')).toBe('endings');

  // Names, ids and counts only: nothing of the prompt or the answer.
  expect(JSON.stringify(exports)).not.toContain(secret);
  expect(JSON.stringify(exports)).not.toContain(h.tenant.key);
  const resource = exports[0]!.body.resourceSpans[0]!.resource.attributes;
  expect(resource.find((a) => a.key === 'service.name')?.value.stringValue).toBe('eugpt-test');
  expect(exports[0]!.contentType).toMatch(/^application\/json/);
});

it('starts a trace of its own without a traceparent, and marks a failed model call', async () => {
  h.upstream.queue.push({ status: 500 });
  const res = await fetch(`${h.origin}/v1/responses`, {
    method: 'POST',
    headers: { ...bearer(h.tenant.key), 'content-type': 'application/json', 'x-request-id': 'no-trace-1' },
    body: JSON.stringify({ input: 'fail', stream: false }),
  });
  expect(res.status).toBe(502);
  const found = await eventually(async () => {
    await tracing.flush();
    const all = spans();
    const call = all.find((s) => s.name === 'model.call' && attr(s, 'eugpt.outcome') === 'failure');
    const server = call === undefined ? undefined : all.find((s) => s.spanId === call.parentSpanId);
    return server === undefined ? undefined : { call, server };
  });
  expect(found.server.name).toBe('POST /v1/responses');
  expect(found.server.parentSpanId ?? '').toBe('');
  expect(attr(found.server, 'http.response.status_code')).toBe(502);
});
