/**
 * Which database failures mean "the database cannot be reached right now"
 * (a lost or refused connection, a server shutting down, a full pool, a
 * statement or lock timeout), as opposed to a bad statement or bad data.
 * The first kind is answered with 503 `database_unavailable` and is worth
 * retrying; the second is a bug or bad input.
 *
 * Drizzle wraps driver errors (`DrizzleQueryError` with the driver's error as
 * `cause`), so the whole cause chain is searched.
 */

/** SQLSTATE classes and codes that say the server is unreachable, going away or overloaded. */
const UNAVAILABLE_STATES = new Set([
  '57P01', // admin_shutdown (pg_terminate_backend, a fast shutdown)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, in recovery)
  '57014', // query_canceled: statement_timeout
  '55P03', // lock_not_available: lock_timeout
  '53300', // too_many_connections
  '53000', // insufficient_resources
  '25P03', // idle_in_transaction_session_timeout
  '40001', // serialization_failure: safe to retry
  '40P01', // deadlock_detected: safe to retry
]);

const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

const UNAVAILABLE_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /connection (?:is )?(?:closed|ended)/i,
  /client has encountered a connection error/i,
  /cannot use a pool after calling end/i,
  /server closed the connection unexpectedly/i,
  /PGlite is closed/i,
];

function* causes(err: unknown): Generator<Record<string, unknown>> {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current !== null && typeof current === 'object'; depth++) {
    yield current as Record<string, unknown>;
    current = (current as { cause?: unknown }).cause;
  }
}

/**
 * Why the database counts as unavailable, safe to log: a SQLSTATE, an errno
 * code, or the known driver message that matched (never the error's own
 * text, which may quote the data of the statement). Undefined otherwise.
 */
export function unavailableReason(err: unknown): string | undefined {
  for (const e of causes(err)) {
    const code = typeof e.code === 'string' ? e.code : undefined;
    if (code !== undefined && (UNAVAILABLE_STATES.has(code) || UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return code;
    const message = typeof e.message === 'string' ? e.message : '';
    const known = UNAVAILABLE_MESSAGES.find((re) => re.test(message));
    if (known !== undefined) return known.exec(message)![0].toLowerCase();
  }
  return undefined;
}

export const isDatabaseUnavailable = (err: unknown): boolean => unavailableReason(err) !== undefined;

/** The SQLSTATE of a driver error anywhere in the chain, for logs and decisions. */
export function sqlStateOf(err: unknown): string | undefined {
  for (const e of causes(err)) if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
  return undefined;
}

/** Whether a statement failed because of the data in it (bad text, a constraint): splitting the batch helps, retrying it whole does not. */
export function isDataError(err: unknown): boolean {
  const state = sqlStateOf(err);
  return state !== undefined && (state.startsWith('22') || state.startsWith('23'));
}

/** True when a database error (possibly wrapped by drizzle) is a unique-constraint violation. */
export const isUniqueViolation = (err: unknown): boolean => sqlStateOf(err) === '23505';

/** A row refers to one that is gone (a conversation deleted while a request that continues it was admitted). */
export const isForeignKeyViolation = (err: unknown): boolean => sqlStateOf(err) === '23503';
