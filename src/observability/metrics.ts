import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The process's Prometheus metrics, in one registry of their own. Labels
 * only ever hold values from a closed set: route templates (never URLs),
 * methods, status codes, model and provider ids of the configuration, tool
 * names, outcomes. Nothing a client sends becomes a label.
 *
 * Recording is a map look-up and an addition, so the hot path pays next to
 * nothing; what is read from other objects (breaker states, the database
 * pool) is read only when Prometheus scrapes.
 */

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Seconds: from a millisecond to ten minutes, for requests, model calls and tools. */
const LATENCY = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Seconds: waits that should be short (queues), from 0.1 ms to 10 s. */
const WAIT = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const httpRequests = new Counter({
  name: 'eugpt_http_requests_total',
  help: 'HTTP requests answered, by route template, method and status code',
  labelNames: ['route', 'method', 'status'] as const,
  registers: [registry],
});

const httpDuration = new Histogram({
  name: 'eugpt_http_request_duration_seconds',
  help: 'Time from a request to the end of its answer (a whole stream for SSE), by route template and method',
  labelNames: ['route', 'method'] as const,
  buckets: LATENCY,
  registers: [registry],
});

const firstToken = new Histogram({
  name: 'eugpt_response_first_token_seconds',
  help: 'POST /v1/responses: time from the request to its first text delta leaving the server',
  labelNames: ['model', 'stream'] as const,
  buckets: LATENCY,
  registers: [registry],
});

const responseDuration = new Histogram({
  name: 'eugpt_response_duration_seconds',
  help: 'POST /v1/responses: time from the request to the end of the answer, by final model and status',
  labelNames: ['model', 'status', 'stream'] as const,
  buckets: LATENCY,
  registers: [registry],
});

const tokens = new Counter({
  name: 'eugpt_tokens_total',
  help: 'Tokens of model calls, by model and direction (input, output)',
  labelNames: ['model', 'direction'] as const,
  registers: [registry],
});

const upstreamCalls = new Counter({
  name: 'eugpt_upstream_calls_total',
  help: 'Model calls, by model and what they said about it: success, failure, rate_limited, neutral (client gone, request at fault, no free connection)',
  labelNames: ['model', 'outcome'] as const,
  registers: [registry],
});

const upstreamErrors = new Counter({
  name: 'eugpt_upstream_errors_total',
  help: 'Upstream errors, by model and kind (connect, timeout, status, protocol, saturated, mid_stream, other)',
  labelNames: ['model', 'kind'] as const,
  registers: [registry],
});

const connectionWait = new Histogram({
  name: 'eugpt_upstream_connection_wait_seconds',
  help: "Time a model call waited for one of its provider's connections",
  labelNames: ['provider'] as const,
  buckets: WAIT,
  registers: [registry],
});

const batchSize = new Histogram({
  name: 'eugpt_db_batch_size',
  help: 'Jobs written in one transaction by a group-commit queue (admissions, endings)',
  labelNames: ['queue'] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
  registers: [registry],
});

const queueWait = new Histogram({
  name: 'eugpt_db_queue_wait_seconds',
  help: 'Time a job waited in a group-commit queue before its batch started',
  labelNames: ['queue'] as const,
  buckets: WAIT,
  registers: [registry],
});

const batchDuration = new Histogram({
  name: 'eugpt_db_batch_duration_seconds',
  help: 'Time to write one batch of a group-commit queue, retries included',
  labelNames: ['queue'] as const,
  buckets: WAIT,
  registers: [registry],
});

const toolCalls = new Counter({
  name: 'eugpt_tool_calls_total',
  help: 'Built-in tool calls, by tool and outcome (completed, failed)',
  labelNames: ['tool', 'outcome'] as const,
  registers: [registry],
});

const toolDuration = new Histogram({
  name: 'eugpt_tool_call_duration_seconds',
  help: 'Time of one built-in tool call',
  labelNames: ['tool'] as const,
  buckets: LATENCY,
  registers: [registry],
});

/** What the gauges read at scrape time; each app adds its own and removes it when it closes. */
export interface GaugeSource {
  /** Each configured model's breaker: 0 closed, 1 cooling down after a 429, 2 open (or probing). */
  breakers(): Iterable<[model: string, state: 0 | 1 | 2]>;
  /** The database's connections; absent counts are not reported. */
  pool(): { total: number; idle?: number; waiting?: number };
}

const sources = new Set<GaugeSource>();

export function addGaugeSource(source: GaugeSource): () => void {
  sources.add(source);
  return () => sources.delete(source);
}

new Gauge({
  name: 'eugpt_breaker_state',
  help: "Each model's circuit breaker: 0 closed, 1 cooling down after an upstream 429, 2 open",
  labelNames: ['model'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const source of sources) for (const [model, state] of source.breakers()) this.set({ model }, state);
  },
});

new Gauge({
  name: 'eugpt_db_pool_connections',
  help: 'Database connections: total, idle, and requests waiting for one (PostgreSQL); the embedded database is one connection',
  labelNames: ['state'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const source of sources) {
      const p = source.pool();
      this.inc({ state: 'total' }, p.total);
      if (p.idle !== undefined) this.inc({ state: 'idle' }, p.idle);
      if (p.waiting !== undefined) this.inc({ state: 'waiting' }, p.waiting);
    }
  },
});

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** The label of a request's route: its template, or one word for what matched no route. */
export const routeLabel = (template: string | undefined) => template ?? 'unmatched';

export function recordHttp(route: string, method: string, status: number, seconds: number): void {
  const m = METHODS.has(method) ? method : 'OTHER';
  httpRequests.inc({ route, method: m, status: String(status) });
  httpDuration.observe({ route, method: m }, seconds);
}

export function recordFirstToken(model: string, stream: boolean, seconds: number): void {
  firstToken.observe({ model, stream: String(stream) }, seconds);
}

export function recordResponse(model: string, status: string, stream: boolean, seconds: number): void {
  responseDuration.observe({ model, status, stream: String(stream) }, seconds);
}

export function recordTokens(model: string, input: number, output: number): void {
  if (input > 0) tokens.inc({ model, direction: 'input' }, input);
  if (output > 0) tokens.inc({ model, direction: 'output' }, output);
}

export function recordUpstreamCall(model: string, outcome: 'success' | 'failure' | 'neutral' | 'rate_limited'): void {
  upstreamCalls.inc({ model, outcome });
}

export function recordUpstreamError(model: string, kind: string): void {
  upstreamErrors.inc({ model, kind });
}

export function recordConnectionWait(provider: string, seconds: number): void {
  connectionWait.observe({ provider }, seconds);
}

export function recordBatch(queue: string, size: number, waitsSeconds: readonly number[], seconds: number): void {
  batchSize.observe({ queue }, size);
  for (const w of waitsSeconds) queueWait.observe({ queue }, w);
  batchDuration.observe({ queue }, seconds);
}

export function recordToolCall(tool: string, outcome: 'completed' | 'failed', seconds: number): void {
  toolCalls.inc({ tool, outcome });
  toolDuration.observe({ tool }, seconds);
}

/** The text Prometheus reads, and its content type. */
export async function exposition(): Promise<{ text: string; contentType: string }> {
  return { text: await registry.metrics(), contentType: registry.contentType };
}
