import { errors, Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { ProviderConfig } from '../router/catalog.ts';
import { ConnectionGate } from './gate.ts';
import { recordConnectionWait } from '../observability/metrics.ts';
import { readSse } from './sse.ts';
import { parseRetryAfter, UpstreamError } from './types.ts';

/** How much of an upstream error body is kept for the log. */
const ERROR_BODY_LOG_BYTES = 2048;

export interface UpstreamCall {
  body: Dispatcher.ResponseData['body'];
  /** Call when the first streamed event arrived: stops the first-byte timer. */
  firstEvent(): void;
  /** Clears the timers and the abort listener, and gives the connection back. */
  done(): void;
  /** Maps an error thrown while calling or reading to what happened (client abort, timeout, connect…). */
  explain(err: unknown): unknown;
}

/**
 * One keep-alive pool per provider, and the timeouts of issue 3: connect,
 * first byte (to the first streamed event), idle between chunks, total.
 * The gate in front of the pool lets no more calls through than the pool has
 * connections, so no call ever waits unseen inside undici.
 */
export class UpstreamHttp {
  private readonly pool: Pool;
  readonly gate: ConnectionGate;

  constructor(private readonly provider: ProviderConfig) {
    const origin = new URL(provider.base_url).origin;
    this.gate = new ConnectionGate(provider.max_connections, provider.queue_timeout_ms);
    this.pool = new Pool(origin, {
      connections: provider.max_connections,
      connect: { timeout: provider.timeouts.connect_ms },
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
  }

  /** The URL path of `suffix` below the provider's base URL (which may carry a path such as /v1). */
  path(suffix: string): string {
    const base = new URL(this.provider.base_url);
    return `${base.pathname.replace(/\/+$/, '')}/${suffix}${base.search}`;
  }

  /**
   * Sends one call once a connection is free (see ConnectionGate); `onSent`
   * hears when it left the queue, the moment the model's latency counts from.
   */
  async post(path: string, headers: Record<string, string>, body: string, signal: AbortSignal, onSent?: () => void): Promise<UpstreamCall> {
    const queued = performance.now();
    const slot = await this.gate.enter(signal);
    recordConnectionWait(this.provider.id, (performance.now() - queued) / 1000);
    onSent?.();
    const t = this.provider.timeouts;
    const controller = new AbortController();
    let reason: 'client' | 'first_byte' | 'total' | undefined;
    const abort = (why: typeof reason) => {
      reason ??= why;
      controller.abort();
    };
    const onClientAbort = () => abort('client');
    if (signal.aborted) abort('client');
    else signal.addEventListener('abort', onClientAbort, { once: true });
    let firstByte: NodeJS.Timeout | undefined = setTimeout(() => abort('first_byte'), t.first_byte_ms);
    const total = setTimeout(() => abort('total'), t.total_ms);
    const done = () => {
      clearTimeout(firstByte);
      clearTimeout(total);
      signal.removeEventListener('abort', onClientAbort);
      slot.release();
    };
    const explain = (err: unknown): unknown => {
      if (reason === 'client') return signal.reason ?? err;
      if (reason === 'first_byte') return new UpstreamError('timeout', `no first event within ${t.first_byte_ms} ms`);
      if (reason === 'total') return new UpstreamError('timeout', `call exceeded ${t.total_ms} ms`);
      if (err instanceof UpstreamError) return err;
      if (err instanceof errors.BodyTimeoutError) return new UpstreamError('timeout', `silent for over ${t.idle_ms} ms between chunks`);
      if (err instanceof errors.HeadersTimeoutError) return new UpstreamError('timeout', `no response headers within ${t.first_byte_ms} ms`);
      if (err instanceof errors.ConnectTimeoutError) return new UpstreamError('connect', `connect timeout after ${t.connect_ms} ms`);
      const code = (err as { code?: string }).code ?? '';
      if (/^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/.test(code)) return new UpstreamError('connect', `cannot connect: ${code}`);
      return new UpstreamError('protocol', `upstream connection failed: ${code || (err as Error).message}`);
    };

    let res: Dispatcher.ResponseData;
    try {
      res = await this.pool.request({
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
        body,
        signal: controller.signal,
        headersTimeout: t.first_byte_ms,
        bodyTimeout: t.idle_ms,
      });
    } catch (err) {
      done();
      throw explain(err);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const excerpt = await readExcerpt(res.body).catch(() => '');
      done();
      const retryAfter = res.statusCode === 429 || res.statusCode === 503 ? parseRetryAfter(res.headers['retry-after']) : undefined;
      throw new UpstreamError('status', `upstream answered HTTP ${res.statusCode}`, res.statusCode, excerpt, retryAfter);
    }
    return {
      body: res.body,
      firstEvent: () => {
        clearTimeout(firstByte);
        firstByte = undefined;
      },
      done,
      explain,
    };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

async function readExcerpt(body: Dispatcher.ResponseData['body']): Promise<string> {
  let text = '';
  for await (const chunk of body) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length >= ERROR_BODY_LOG_BYTES) {
      body.destroy();
      break;
    }
  }
  return text.slice(0, ERROR_BODY_LOG_BYTES).replace(/\s+/g, ' ');
}

/** What may follow `[DONE]` before the body ends; an upstream that keeps sending loses the connection. */
const AFTER_DONE_BYTES = 4096;

/**
 * Reads what is left of a body after its last event, so the connection goes
 * back to the pool. (undici's dump() counts the bytes already read against its
 * limit, so it closed the connection of every answer longer than the limit.)
 */
function drainRest(body: Dispatcher.ResponseData['body']): void {
  let rest = 0;
  body.on('error', () => undefined);
  body.on('data', (chunk: Buffer) => {
    rest += chunk.length;
    if (rest > AFTER_DONE_BYTES) body.destroy();
  });
  body.resume();
}

/** The `[DONE]` sentinel some upstreams send as their last event. */
export const DONE = Symbol('done');

/** One event of an upstream answer: its `data` parsed as JSON, or DONE. */
export interface JsonEvent {
  event: string | undefined;
  data: unknown;
}

/**
 * The events of a streamed upstream answer, each `data` parsed as JSON (or
 * DONE), in batches: one per chunk of the body (see readSse). Stops the
 * first-byte timer at the first event, turns any failure into what happened
 * (client abort, timeout, protocol), and always releases the connection, also
 * when the consumer stops early. An event that is not JSON ends the answer
 * after the events before it.
 */
export async function* jsonEvents(call: UpstreamCall): AsyncGenerator<JsonEvent[]> {
  let finished = false;
  try {
    // Leaving this loop must not destroy the body (a readable's own iterator does, with an AbortError that
    // costs a stack trace and closes the connection): the finally below decides between draining and destroying.
    for await (const messages of readSse(call.body.iterator({ destroyOnReturn: false }))) {
      call.firstEvent();
      const batch: JsonEvent[] = [];
      for (const message of messages) {
        if (message.data === '[DONE]') {
          finished = true;
          batch.push({ event: message.event, data: DONE });
          continue;
        }
        let data: unknown;
        try {
          data = JSON.parse(message.data);
        } catch {
          if (batch.length > 0) yield batch;
          throw new UpstreamError('protocol', 'upstream sent an event that is not JSON');
        }
        batch.push({ event: message.event, data });
      }
      yield batch;
    }
  } catch (err) {
    throw call.explain(err);
  } finally {
    call.done();
    // Nothing reads the body any more: a late abort of the request must not become an unhandled 'error' event.
    call.body.on('error', () => undefined);
    if (!call.body.destroyed) {
      // After [DONE] only the end of the body is left: reading it keeps the connection for the next call, where
      // destroying it would abort the request. Leaving early otherwise must stop the upstream generating at once.
      if (finished) drainRest(call.body);
      else call.body.destroy();
    }
  }
}
