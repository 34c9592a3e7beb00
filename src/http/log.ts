import { stdSerializers, type SerializedError } from 'pino';
import { isErrorLike, scrubError, scrubErrorText } from './log-errors.ts';

const REDACTED = '[redacted]';

/** What an API key looks like, also with its underscore percent-encoded. */
const KEY_LIKE = /eugpt(?:_|%5f)[A-Za-z0-9]+/gi;

/** Query parameters whose value is a credential whatever it looks like (an admin token, another service's key). */
const SECRET_PARAM = /key|token|secret|passw|auth|signature|session|credential/i;

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export function redactKeys(text: string): string {
  return text.replace(KEY_LIKE, REDACTED);
}

function redactParam(pair: string): string {
  const eq = pair.indexOf('=');
  if (eq < 0) return pair;
  const name = pair.slice(0, eq);
  return SECRET_PARAM.test(safeDecode(name)) ? `${name}=${REDACTED}` : pair;
}

/**
 * A client may put its key in the URL (`?api_key=eugpt_…`) even though only
 * headers are read: the URL is logged with every request, so credential
 * parameters and anything shaped like a key are masked first.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  const redacted = redactKeys(q < 0 ? url : `${url.slice(0, q)}?${url.slice(q + 1).split('&').map(redactParam).join('&')}`);
  // A key with more of its characters percent-encoded is still a key once decoded.
  const decoded = safeDecode(redacted);
  return redactKeys(decoded) === decoded ? redacted : redactKeys(decoded);
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  headers?: Record<string, unknown>;
  socket?: { remotePort?: number } | null;
}

/** fastify's own request serializer, with the URL and host redacted. */
function serializeRequest(req: LoggedRequest) {
  const version = req.headers?.['accept-version'];
  return {
    method: req.method,
    url: typeof req.url === 'string' ? redactUrl(req.url) : req.url,
    version: typeof version === 'string' ? version : undefined,
    host: typeof req.host === 'string' ? redactKeys(req.host) : req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}

const serializeErr = (err: unknown): SerializedError => stdSerializers.err(scrubError(err) as Error);

/**
 * Serializers of the process logger, which fastify's request loggers inherit.
 * pino also runs them on a child's bindings, which is how `request_id` (a
 * client's `x-request-id`) is covered.
 */
export const logSerializers = {
  err: serializeErr,
  // Some call sites log `{ error: err.message }` or `{ error: err }` instead of `{ err }`.
  error: (value: unknown): unknown => (typeof value === 'string' ? scrubErrorText(value) : isErrorLike(value) ? serializeErr(value) : value),
  req: serializeRequest,
  request_id: (id: unknown): unknown => (typeof id === 'string' ? redactKeys(id) : id),
};
