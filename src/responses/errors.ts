import type { FastifyRequest } from 'fastify';
import { ApiError, badRequest } from '../http/api-error.ts';
import { UpstreamError } from '../providers/types.ts';
import type { ResponseBuilder } from './builder.ts';
import type { PreparedContext } from './context.ts';
import type { Capability, Catalog } from '../router/catalog.ts';
import type { RequestFeatures } from '../router/classify.ts';
import { residencyAllows } from '../router/residency.ts';

/**
 * What a client sees of an upstream failure before the stream started: the
 * documented code and a plain sentence, never the upstream's status or body (those go to the log).
 */
export function upstreamFailure(err: unknown): ApiError {
  if (err instanceof UpstreamError && err.kind === 'saturated') {
    const seconds = String(Math.max(1, Math.ceil((err.retryAfterMs ?? 1000) / 1000)));
    return new ApiError(
      503,
      'server_error',
      'upstream_saturated',
      `every connection to the model servers is busy; retry after ${seconds} s`,
      null,
      { 'retry-after': seconds },
    );
  }
  if (err instanceof UpstreamError && err.kind === 'timeout') {
    return new ApiError(504, 'upstream_error', 'upstream_timeout', 'the model server did not answer in time; try again');
  }
  return new ApiError(502, 'upstream_error', 'upstream_unavailable', 'the model server could not answer; try again');
}

export const noModel = () =>
  new ApiError(
    503,
    'server_error',
    'no_model_available',
    'no model is configured: add a provider and a model to the file named by EUGPT_CONFIG (see the README) and restart',
  );

/**
 * No model can take the request: it needs a capability no enabled model has,
 * or its prompt fits none. (Unhealthy models never refuse a request: the
 * router fails open.)
 */
export function unroutable(catalog: Catalog, features: RequestFeatures, residency: string | null, prepared: PreparedContext): ApiError {
  const needs: readonly Capability[] = features.needs;
  const allowed = catalog.models.filter((m) => m.enabled && residencyAllows(m, features.allowedCountries ?? null));
  if (allowed.length === 0) {
    return new ApiError(
      503,
      'server_error',
      'residency_unavailable',
      `no model on this server runs where your organisation's data residency policy (${residency ?? 'none'}) allows`,
    );
  }
  const enabled = allowed;
  const missing = needs.find((n) => !enabled.some((m) => m.capabilities.includes(n)));
  if (missing !== undefined) {
    const what = missing === 'tools' ? 'call tools' : missing === 'json' ? 'answer in a JSON format' : 'read images';
    const param = missing === 'tools' ? 'tools' : missing === 'json' ? 'text.format' : 'input';
    return badRequest('unsupported_capability', `no model on this server can ${what} (the operator gives a model the "${missing}" capability)`, param);
  }
  return badRequest(
    'context_length_exceeded',
    `the input and instructions (${prepared.fixedTokens} tokens) fit no configured model with room for the answer, or need capabilities no single model has`,
    'input',
  );
}

/** One log line per response: its outcome and numbers, never its text. */
export function logFinished(req: FastifyRequest, b: ResponseBuilder): void {
  req.log.info(
    {
      response_id: b.id,
      model: b.model,
      tool_calls: b.output.filter((item) => item.type === 'function_call').length,
      status: b.status,
      input_tokens: b.usage?.inputTokens,
      output_tokens: b.usage?.outputTokens,
      first_token_ms: b.firstTokenAt === null ? null : b.firstTokenAt - b.createdAt,
      duration_ms: Date.now() - b.createdAt,
    },
    'response finished',
  );
}
