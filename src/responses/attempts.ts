import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../db/client.ts';
import type { Providers } from '../providers/registry.ts';
import { UpstreamError } from '../providers/types.ts';
import type { Catalog, ModelConfig } from '../router/catalog.ts';
import type { HealthTable } from '../router/health.ts';
import type { Decision } from '../router/pick.ts';
import { echoOf, ResponseBuilder } from './builder.ts';
import { contextFor, type PreparedContext, type ResponseContext } from './context.ts';
import { runResponse } from './engine.ts';
import type { ResponseEvent } from './events.ts';
import type { CreateRequest } from './request.ts';

export interface Attempt {
  model: ModelConfig;
  builder: ResponseBuilder;
  context: ResponseContext;
  startedAt: number;
}

export type Outcome =
  /** Committed: the first event is in hand; `events` starts with it. */
  | { type: 'started'; attempt: Attempt; events: AsyncGenerator<ResponseEvent> }
  /** The client left before any model answered; `attempt` is the last one tried, if any. */
  | { type: 'gone'; attempt: Attempt | undefined }
  /** Every model tried failed before its first token (or none could be tried). */
  | { type: 'failed'; attempt: Attempt | undefined; error: unknown };

export interface AttemptDeps {
  db: Db;
  catalog: Catalog;
  providers: Providers;
  health: HealthTable;
  log: FastifyBaseLogger;
  now: () => number;
}

/** Aborts an attempt because the failover deadline passed (not the client's doing). */
const deadlinePassed = (ms: number) => new UpstreamError('timeout', `failover deadline of ${ms} ms passed`);

/**
 * Tries the chosen model, then its fallbacks, until one produces its first
 * event (issue 4: failover only before the first token reaches the client),
 * bounded by `max_attempts` and an overall deadline. Connect errors,
 * timeouts, 429 and 5xx move on to the next model; other failures stop.
 * Which models were tried goes to the log, never to the client.
 */
export async function startWithFailover(
  deps: AttemptDeps,
  request: CreateRequest,
  prepared: PreparedContext,
  decision: Decision,
  client: AbortSignal,
  /** The response's id and creation time, fixed at admission: every attempt builds the same response. */
  identity: { id: string; createdAt: number },
): Promise<Outcome> {
  const { failover } = deps.catalog.router;
  const deadline = Date.now() + failover.deadline_ms;
  const candidates = [decision.model, ...decision.fallbacks].slice(0, failover.max_attempts);
  const tried: { model: string; error: string }[] = [];
  let last: Attempt | undefined;
  let lastError: unknown;

  for (const model of candidates) {
    if (client.aborted) return { type: 'gone', attempt: last };
    const left = deadline - Date.now();
    if (left <= 0) break;
    if (!deps.health.acquire(model.id, model.provider)) continue;

    const controller = new AbortController();
    const onClientGone = () => controller.abort(client.reason);
    client.addEventListener('abort', onClientGone, { once: true });
    const timer = setTimeout(() => controller.abort(deadlinePassed(failover.deadline_ms)), left);
    const startedAt = deps.now();
    let context: ResponseContext;
    try {
      context = await contextFor(deps.db, prepared, request, model);
    } catch (err) {
      clearTimeout(timer);
      client.removeEventListener('abort', onClientGone);
      deps.health.release(model.id, model.provider, { type: 'neutral' });
      throw err;
    }
    const builder = new ResponseBuilder(identity.id, identity.createdAt, model.id, context.conversationId, echoOf(request));
    last = { model, builder, context, startedAt };
    const engine = runResponse({
      builder,
      provider: deps.providers.get(model.provider),
      chat: {
        model: model.upstream_model,
        messages: context.messages,
        maxOutputTokens: context.maxOutputTokens,
        temperature: request.temperature ?? undefined,
        topP: request.topP ?? undefined,
        responseFormat: request.responseFormat,
      },
      signal: controller.signal,
      clientGone: () => client.aborted,
      promptTokens: context.promptTokens,
      now: deps.now,
      routing: request.includeRouting ? { model_id: model.id, category: decision.category, reason: decision.reason } : undefined,
      onUpstreamError: (err) => deps.log.warn({ model: model.id, error: describe(err) }, 'upstream failed mid-answer'),
    });

    try {
      const first = await engine.next();
      clearTimeout(timer); // committed: from here on only the provider's own timeouts apply
      if (tried.length > 0) deps.log.info({ model: model.id, tried }, 'failed over');
      const events = (async function* () {
        try {
          if (!first.done) yield first.value;
          yield* engine;
        } finally {
          client.removeEventListener('abort', onClientGone);
        }
      })();
      return { type: 'started', attempt: last, events };
    } catch (err) {
      clearTimeout(timer);
      client.removeEventListener('abort', onClientGone);
      if (client.aborted) {
        deps.health.release(model.id, model.provider, { type: 'neutral' });
        return { type: 'gone', attempt: last };
      }
      deps.health.release(model.id, model.provider, { type: 'failure', timeout: err instanceof UpstreamError && err.kind === 'timeout' });
      tried.push({ model: model.id, error: describe(err) });
      lastError = err;
      if (err instanceof UpstreamError && err.detail !== undefined) deps.log.debug({ model: model.id, upstream_body: err.detail }, 'upstream error body');
      if (!(err instanceof UpstreamError) || !err.retryable) break;
    }
  }
  deps.log.warn({ tried, category: decision.category }, 'no model answered');
  return { type: 'failed', attempt: last, error: lastError };
}

function describe(err: unknown): string {
  if (err instanceof UpstreamError) return `${err.kind}${err.status === undefined ? '' : ` ${err.status}`}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
