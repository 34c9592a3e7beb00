import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../db/client.ts';
import { scrubErrorText } from '../http/log-errors.ts';
import type { Providers } from '../providers/registry.ts';
import { UpstreamError, type ChatRequest, type ProviderEvent, type UpstreamUsage } from '../providers/types.ts';
import { recordTokens, recordUpstreamCall, recordUpstreamError } from '../observability/metrics.ts';
import { endWithError, startSpan } from '../observability/tracing.ts';
import type { Catalog, ModelConfig } from '../router/catalog.ts';
import type { HealthTable, Outcome as HealthOutcome } from '../router/health.ts';

/**
 * One model call with failover: the candidates are tried in order until one
 * sends its first event, the commit point of that call. A response makes one
 * call per step of its tool loop, and each goes through here, so a later step
 * fails over before its own first token without breaking the stream.
 */

/** A call that sent its first event: the rest of its events, and how to end it. */
export interface ModelCall {
  model: ModelConfig;
  /** The first event, already read. */
  first: ProviderEvent | undefined;
  rest: AsyncIterator<ProviderEvent>;
  /** The prompt's tokens as we counted them, for usage when the upstream reports none. */
  promptTokens: number;
  maxOutputTokens: number;
  /** When the call was sent (after any wait for a free connection): the model's latency counts from here. */
  startedAt: number;
  /** Counts the tokens one call used (metrics, and the call's span). */
  count(usage: UpstreamUsage): void;
  /** Gives the model's health slot back with what the call said about it; the first call of end() wins. */
  end(outcome: HealthOutcome): void;
}

export type CallOutcome =
  | { type: 'started'; call: ModelCall }
  /** The client left (or the server is stopping) before any model answered. */
  | { type: 'gone' }
  /** Every candidate failed before its first event, or none could be tried. */
  | { type: 'failed'; error: unknown };

export interface CallDeps {
  db: Db;
  catalog: Catalog;
  providers: Providers;
  health: HealthTable;
  log: FastifyBaseLogger;
  now: () => number;
}

/** The upstream request for one model, made when that model is tried. */
export type CallBuilder = (model: ModelConfig) => Promise<Omit<ChatRequest, 'signal' | 'onSent'> & { promptTokens: number }>;

/** An upstream failing again and again is logged once per model in this period. */
const REPORT_PERIOD_MS = 30_000;

/** Aborts a call because the failover deadline passed (not the client's doing). */
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

type Step = { type: 'done'; outcome: CallOutcome } | { type: 'next' } | { type: 'stop' };

/**
 * Tries `candidates` (bounded by `max_attempts` and the failover deadline)
 * until one sends its first event. Connect errors, timeouts, a full queue,
 * 429 and 5xx move on to the next model; other failures stop. When no
 * candidate could be claimed (their breakers opened, or their providers
 * filled up), the one back soonest is tried anyway: refusing would make the
 * breaker itself the outage. Which models were tried goes to the log, never
 * to the client. Errors of `build` (a prompt that fits no window) are thrown.
 */
export async function openCall(deps: CallDeps, candidates: ModelConfig[], build: CallBuilder, client: AbortSignal): Promise<CallOutcome> {
  const { failover } = deps.catalog.router;
  const deadline = Date.now() + failover.deadline_ms;
  const models = candidates.slice(0, failover.max_attempts);
  const tried: { model: string; error: string }[] = [];
  let lastError: unknown;
  let attempts = 0;

  const attempt = async (model: ModelConfig): Promise<Step> => {
    // One span per attempt, from the request to the end of the call: its model, its outcome, its tokens.
    const span = startSpan('model.call', { 'eugpt.model': model.id, 'eugpt.provider': model.provider, 'eugpt.attempt': ++attempts });
    /** Every attempt ends here once: the health table, the metrics and the span hear the same outcome. */
    const settle = (outcome: HealthOutcome) => {
      deps.health.release(model.id, model.provider, outcome);
      recordUpstreamCall(model.id, outcome.type);
      span.setAttribute('eugpt.outcome', outcome.type);
      if (outcome.type === 'failure' || outcome.type === 'rate_limited') endWithError(span, outcome.type);
      else span.end();
    };
    let request: Awaited<ReturnType<CallBuilder>>;
    try {
      request = await build(model);
    } catch (err) {
      deps.health.release(model.id, model.provider, { type: 'neutral' });
      endWithError(span, 'prompt_not_built');
      throw err;
    }
    const controller = new AbortController();
    const onClientGone = () => controller.abort(client.reason);
    client.addEventListener('abort', onClientGone, { once: true });
    const timer = setTimeout(() => controller.abort(deadlinePassed(failover.deadline_ms)), deadline - Date.now());
    let startedAt = deps.now();
    const stream = deps.providers.get(model.provider).stream({ ...request, signal: controller.signal, onSent: () => (startedAt = deps.now()) });
    const upstream = stream[Symbol.asyncIterator]();
    try {
      const first = await upstream.next();
      clearTimeout(timer); // committed: from here on only the provider's own timeouts apply
      if (tried.length > 0) deps.log.info({ model: model.id, tried }, 'failed over');
      let ended = false;
      const used = { input: 0, output: 0 };
      const call: ModelCall = {
        model,
        first: first.done === true ? undefined : first.value,
        rest: upstream,
        promptTokens: request.promptTokens,
        maxOutputTokens: request.maxOutputTokens,
        startedAt,
        count(usage) {
          recordTokens(model.id, usage.inputTokens, usage.outputTokens);
          used.input += usage.inputTokens;
          used.output += usage.outputTokens;
          span.setAttributes({ 'gen_ai.usage.input_tokens': used.input, 'gen_ai.usage.output_tokens': used.output });
        },
        end(outcome) {
          if (ended) return;
          ended = true;
          client.removeEventListener('abort', onClientGone);
          // Past its first event, a failing call failed mid-answer.
          if (outcome.type === 'failure') recordUpstreamError(model.id, 'mid_stream');
          settle(outcome);
        },
      };
      return { type: 'done', outcome: { type: 'started', call } };
    } catch (err) {
      clearTimeout(timer);
      client.removeEventListener('abort', onClientGone);
      if (client.aborted) {
        settle({ type: 'neutral' });
        return { type: 'done', outcome: { type: 'gone' } };
      }
      recordUpstreamError(model.id, err instanceof UpstreamError ? err.kind : 'other');
      settle(healthOutcomeOf(err));
      tried.push({ model: model.id, error: describe(err) });
      if (deps.health.shouldReport(model.id, REPORT_PERIOD_MS)) {
        deps.log.warn({ model: model.id, provider: model.provider, error: describe(err) }, 'model server failed; further failures of this model are not logged for 30 s');
      }
      lastError = err;
      if (err instanceof UpstreamError && err.detail !== undefined) deps.log.debug({ model: model.id, upstream_error: errorKind(err.detail) }, 'upstream error body');
      return err instanceof UpstreamError && err.retryable ? { type: 'next' } : { type: 'stop' };
    }
  };

  let claimedAny = false;
  for (const model of models) {
    if (client.aborted) return { type: 'gone' };
    if (deadline - Date.now() <= 0) break;
    if (!deps.health.acquire(model.id, model.provider)) continue;
    claimedAny = true;
    const step = await attempt(model);
    if (step.type === 'done') return step.outcome;
    if (step.type === 'stop') break;
  }
  if (!claimedAny && models.length > 0 && !client.aborted && deadline - Date.now() > 0) {
    const soonest = models.reduce((a, b) => (deps.health.readyAt(b.id) < deps.health.readyAt(a.id) ? b : a));
    deps.log.info({ model: soonest.id }, 'every candidate is out; failing open');
    deps.health.acquire(soonest.id, soonest.provider, { force: true });
    const step = await attempt(soonest);
    if (step.type === 'done') return step.outcome;
  }
  if (client.aborted) return { type: 'gone' };
  // Each model's failure was logged above (once a period); this line is for following one request.
  deps.log.info({ tried }, 'no model answered');
  return { type: 'failed', error: lastError };
}

export function describe(err: unknown): string {
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
