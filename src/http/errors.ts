import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { formatPath } from '../param-path.ts';
import { isDatabaseUnavailable, unavailableReason } from '../db/errors.ts';
import { ApiError, badRequest, type ErrorType } from './api-error.ts';
import { INVALID_TEXT, textIssueOf, textProblem } from './text.ts';

/** The database cannot be reached or is overloaded: a retry shortly is likely to work. */
export const databaseUnavailable = () =>
  new ApiError(503, 'server_error', 'database_unavailable', 'the database is unavailable; try again shortly', null, { 'retry-after': '1' });

const TYPE_BY_STATUS: Record<number, ErrorType> = {
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  429: 'rate_limit_error',
};

const CODE_BY_STATUS: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  409: 'conflict',
  411: 'length_required',
  413: 'request_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  431: 'headers_too_large',
  503: 'service_unavailable',
};

function errorType(status: number): ErrorType {
  return TYPE_BY_STATUS[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
}

/** `/input/0/content` → `input[0].content`. */
function paramFromPath(instancePath: string): string | null {
  const parts = instancePath.split('/').filter(Boolean);
  return parts.length === 0 ? null : formatPath(parts.map((p) => (/^\d+$/.test(p) ? Number(p) : p)));
}

type ValidationEntry = { instancePath: string; keyword: string; message?: string; params: Record<string, unknown> };

/** Bad text is reported before any other problem of the same request: it is the one a client must fix first. */
const textIssueOfEntry = (v: ValidationEntry) =>
  textIssueOf({ code: v.keyword, path: v.instancePath.split('/').filter(Boolean), params: v.params.params, issues: v.params.issues });

function fromValidation(err: FastifyError & { validation: ValidationEntry[] }): ApiError {
  const text = err.validation.map(textIssueOfEntry).find((t) => t !== null);
  if (text !== undefined) {
    // A bad record key is named by its record (text.path), never by the key itself.
    const where = paramFromPath(text.path.map(String).join('/'));
    return badRequest(INVALID_TEXT, textProblem(where ?? err.validationContext ?? '', text.key), where);
  }
  const first = err.validation[0]!;
  const param = paramFromPath(first.instancePath);
  const isUuid = first.keyword === 'invalid_format' && first.params.format === 'uuid';
  const code = isUuid ? 'invalid_uuid' : 'invalid_request';
  const what = param ?? err.validationContext ?? 'request';
  const message = isUuid ? `${what} must be a UUID` : `${what}: ${first.message ?? 'invalid value'}`;
  return badRequest(code, message, param);
}

/** Maps anything thrown inside a request to the error envelope; nothing internal leaks for 5xx. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) return fromValidation(err);
  const e = err as Partial<FastifyError>;
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'invalid_request_error', 'request_too_large', 'request body is larger than the server accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'invalid_request_error', 'unsupported_media_type', 'content-type must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return badRequest('invalid_json', 'request body is empty but content-type is application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return badRequest('invalid_json', 'request body is not valid JSON');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return badRequest('invalid_content_length', 'content-length does not match the body');
    case 'FST_ERR_BAD_URL':
      return badRequest('invalid_url', 'the request URL is malformed');
  }
  if (isDatabaseUnavailable(err)) return databaseUnavailable();
  // fastify's JSON parser marks syntax errors as 400.
  if (err instanceof SyntaxError && e.statusCode === 400) return badRequest('invalid_json', 'request body is not valid JSON');
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new ApiError(status, errorType(status), CODE_BY_STATUS[status] ?? 'bad_request', e.message || 'bad request');
  }
  if (status === 503) return new ApiError(503, 'server_error', 'service_unavailable', 'the server is shutting down or not ready');
  return new ApiError(500, 'server_error', 'internal_error', 'internal server error');
}

/**
 * Node's HTTP parser refuses some requests (headers too large, a malformed
 * request, one that arrives too slowly) before fastify sees them; their
 * answers get the same envelope as every other error.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const api =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new ApiError(431, 'invalid_request_error', 'headers_too_large', 'the request headers are larger than the server accepts')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new ApiError(408, 'invalid_request_error', 'request_timeout', 'the request did not arrive in time')
        : badRequest('bad_request', 'the request is not valid HTTP');
  const body = JSON.stringify(api.toBody());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${api.status} ${STATUS_CODES[api.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

export function sendError(reply: FastifyReply, err: ApiError): FastifyReply {
  return reply.status(err.status).headers(err.headers).type('application/json; charset=utf-8').send(err.toBody());
}

async function errors(app: FastifyInstance) {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const api = toApiError(err);
    if (api.code === 'database_unavailable') req.log.warn({ error: (err as Error).message, reason: unavailableReason(err) }, 'database unavailable');
    // The model servers' failures are logged where they happen, once a period (responses/attempts.ts): no stack per request.
    else if (api.type === 'upstream_error' || api.code === 'upstream_saturated') req.log.info({ status: api.status, code: api.code }, 'request failed upstream');
    else if (api.status >= 500) req.log.error({ err }, 'request failed');
    else req.log.info({ status: api.status, code: api.code }, 'request rejected');
    return sendError(reply, api);
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!.slice(0, 200);
    return sendError(reply, new ApiError(404, 'not_found_error', 'route_not_found', `no route for ${req.method} ${path}`));
  });
}

export const errorsPlugin = fp(errors, { name: 'eugpt-errors' });
