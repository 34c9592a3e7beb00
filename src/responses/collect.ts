import { ApiError } from '../http/api-error.ts';
import type { ResponseEvent } from './events.ts';
import type { ResponseObject } from './object.ts';

/**
 * Folds the engine's events into the `stream: false` document. The document
 * is the terminal event's own response, so the two modes cannot disagree; a
 * terminal `error` becomes an HTTP error (the seeds: a returned body is
 * always a finished response).
 */
export async function collect(events: AsyncIterable<ResponseEvent>): Promise<ResponseObject | null> {
  for await (const event of events) {
    if (event.type === 'response.completed') return event.response;
    if (event.type === 'error') throw new ApiError(502, 'upstream_error', event.code, event.message);
  }
  // The events ended without a terminal one: the client went away.
  return null;
}
