import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../db/client.ts';
import type { Providers } from '../providers/registry.ts';
import { UpstreamError } from '../providers/types.ts';
import type { Catalog, ModelConfig } from '../router/catalog.ts';
import type { HealthTable, Outcome as HealthOutcome } from '../router/health.ts';
import type { Decision } from '../router/pick.ts';
import { scrubErrorText } from '../http/log-errors.ts';
import { echoOf, ResponseBuilder } from './builder.ts';
import { contextFor, type PreparedContext, type ResponseContext } from './context.ts';
import { runResponse } from './engine.ts';
import type { ResponseEvent } from './events.ts';
import type { CreateRequest } from './request.ts';

export interface Attempt {
  model: ModelConfig;
  builder: ResponseBuilder;
  context: ResponseContext;
  /**
   * When the upstream call got a connection and was sent (until then, when
   * the attempt began): the model's latency counts from here, so time spent
   * queued for a busy provider is never blamed on the model.
   */
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
 * What an upstream error before the first token says about the model: a
 * request at fault or a full queue says nothing, a 429 asks for a rest, the
 * rest counts toward the breaker.
 */
export function healthOutcomeOf(err: unknown): HealthOutcome {
  if (!(err instanceof UpstreamError)) return { type: 'failure', timeout: false };
  if (err.kind === 'saturated' || err.requestFault) return { type: 'neutral' };
  if (err.kind === 'status' && err.status === 429) return { type: 'rate_limited', retryAfterMs: err.retryAfterMs };
  return { type: 'failure', timeout: err.kind === 'timeout' };
}

type Step = { type: 'done'; outcome: Outcome } | { type: 'next' } | { type: 'stop' };

/**
 * Tries the chosen model, then its fallbacks, until one produces its first
 * event (issue 4: failover only before the first token reaches the client),
 * bounded by `max_attempts` and an overall deadline. Connect errors,
 * timeouts, a full queue, 429 and 5xx move on to the next model; other
 * failures stop. When no candidate could be claimed (their breakers opened,
 * or their providers filled up, since the pick), the one back soonest is
 * tried anyway: refusing would make the breaker itself the outage.
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

  const attempt = async (model: ModelConfig): Promise<Step> => {
    const controller = new AbortController();
    const onClientGone = () => controller.abort(client.reason);
    client.addEventListener('abort', onClientGone, { once: true });
    const timer = setTimeout(() => controller.abort(deadlinePassed(failover.deadline_ms)), deadline - Date.now());
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
    const current: Attempt = { model, builder, context, startedAt };
    last = current;
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
        onSent: () => {
          current.startedAt = deps.now();
        },
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
      return { type: 'done', outcome: { type: 'started', attempt: current, events } };
    } catch (err) {
      clearTimeout(timer);
      client.removeEventListener('abort', onClientGone);
      if (client.aborted) {
        deps.health.release(model.id, model.provider, { type: 'neutral' });
        return { type: 'done', outcome: { type: 'gone', attempt: current } };
      }
      deps.health.release(model.id, model.provider, healthOutcomeOf(err));
      tried.push({ model: model.id, error: describe(err) });
      lastError = err;
      if (err instanceof UpstreamError && err.detail !== undefined) deps.log.debug({ model: model.id, upstream_error: errorKind(err.detail) }, 'upstream error body');
      return err instanceof UpstreamError && err.retryable ? { type: 'next' } : { type: 'stop' };
    }
  };

  let claimedAny = false;
  for (const model of candidates) {
    if (client.aborted) return { type: 'gone', attempt: last };
    if (deadline - Date.now() <= 0) break;
    if (!deps.health.acquire(model.id, model.provider)) continue;
    claimedAny = true;
    const step = await attempt(model);
    if (step.type === 'done') return step.outcome;
    if (step.type === 'stop') break;
  }
  if (!claimedAny && candidates.length > 0 && !client.aborted && deadline - Date.now() > 0) {
    const soonest = candidates.reduce((a, b) => (deps.health.readyAt(b.id) < deps.health.readyAt(a.id) ? b : a));
    deps.log.info({ model: soonest.id, category: decision.category }, 'every candidate is out; failing open');
    deps.health.acquire(soonest.id, soonest.provider, { force: true });
    const step = await attempt(soonest);
    if (step.type === 'done') return step.outcome;
  }
  if (client.aborted) return { type: 'gone', attempt: last };
  deps.log.warn({ tried, category: decision.category }, 'no model answered');
  return { type: 'failed', attempt: last, error: lastError };
}

function describe(err: unknown): string {
  if (err instanceof UpstreamError) return `${err.kind}${err.status === undefined ? '' : ` ${err.status}`}: ${err.message}`;
  return scrubErrorText(err instanceof Error ? err.message : String(err));
}

/**
 * The type and code of an upstream's error body, and nothing else of it: a
 * body's message may echo the prompt, which never goes to the log.
 */
function errorKind(body: string): { type?: unknown; code?: unknown } | null {
  try {
    const parsed = JSON.parse(body) as { error?: { type?: unknown; code?: unknown }; type?: unknown; code?: unknown };
    const e = parsed.error ?? parsed;
    const plain = (v: unknown) => (typeof v === 'string' && /^[\w.-]{1,64}$/.test(v) ? v : undefined);
    return { type: plain(e.type), code: plain(e.code) };
  } catch {
    return null;
  }
}
