/**
 * The exit status of every `eugpt` command, so scripts can tell failures
 * apart without reading the message.
 */
export const EXIT = {
  ok: 0,
  /** The server refused the request (a bad value, a conflict), or something unexpected failed. */
  failed: 1,
  /** The command line is wrong: unknown command or option, a missing or bad argument. */
  usage: 2,
  /** No admin token, or the server did not accept it (HTTP 401 or 403). */
  auth: 3,
  /** The thing named does not exist (HTTP 404). */
  notFound: 4,
  /** The server could not be reached, timed out, or failed (HTTP 5xx, or an answer that is not JSON). */
  server: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit status for an HTTP status of the admin API. */
export function exitForStatus(status: number): ExitCode {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status >= 500) return EXIT.server;
  return EXIT.failed;
}
