/**
 * The one error type of the server. Rendered by the error handler as the API's
 * error envelope: `{ error: { type, code, message, param }, detail }`.
 */

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'upstream_error';

export class ApiError extends Error {
  override name = 'ApiError';

  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toBody(): ErrorBody {
    return {
      error: { type: this.type, code: this.code, message: this.message, param: this.param },
      detail: this.message,
    };
  }
}

export interface ErrorBody {
  error: { type: ErrorType; code: string; message: string; param: string | null };
  detail: string;
}

export const badRequest = (code: string, message: string, param: string | null = null) =>
  new ApiError(400, 'invalid_request_error', code, message, param);

export const unauthorized = (code: string, message: string) => new ApiError(401, 'authentication_error', code, message);

export const forbidden = (code: string, message: string) => new ApiError(403, 'permission_error', code, message);

export const notFound = (code: string, message: string) => new ApiError(404, 'not_found_error', code, message);

export const conflict = (code: string, message: string, param: string | null = null) =>
  new ApiError(409, 'invalid_request_error', code, message, param);
