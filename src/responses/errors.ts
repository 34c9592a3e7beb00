import { ApiError } from '../http/api-error.ts';
import { UpstreamError } from '../providers/types.ts';

/**
 * What a client sees of an upstream failure before the stream started: the
 * SPEC's code and a plain sentence, never the upstream's status or body (those go to the log).
 */
export function upstreamFailure(err: unknown): ApiError {
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
