import { DrizzleQueryError } from 'drizzle-orm';

/**
 * Database errors carry the values of the failing query: drizzle's error holds
 * the bound parameters and prints them in its message, and the driver's error
 * may echo a row in `detail` ("Key (email)=(…) already exists", "Failing row
 * contains (…)"), in `where` or (PGlite) in `params`. Those values are prompts,
 * answers, metadata and key hashes, so the log keeps only what locates the
 * fault: the parameterised SQL, the SQLSTATE and the names of the objects involved.
 */

type ErrorLike = Error & Record<string, unknown>;

/** Driver fields that name or place things, never hold a value of the query. */
const SAFE_DRIVER_FIELDS = ['code', 'severity', 'schema', 'table', 'column', 'constraint', 'dataType', 'routine', 'position'];

const SQLSTATE = /^[0-9A-Z]{5}$/;

/** Causes deeper than this are cut: nothing useful is that deep, and a cycle must end. */
const MAX_DEPTH = 8;

/** Gives the same type name to the errors of both drivers (PGlite's class name is minified). */
class DatabaseError extends Error {}

export function isErrorLike(value: unknown): value is ErrorLike {
  return typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string';
}

/** An error from PostgreSQL itself, through `pg` or PGlite. */
function isDriverError(e: ErrorLike): e is ErrorLike & { code: string } {
  return typeof e.code === 'string' && SQLSTATE.test(e.code) && typeof e.severity === 'string';
}

function isQueryError(e: ErrorLike): e is ErrorLike & { query: string } {
  return e instanceof DrizzleQueryError || (typeof e.query === 'string' && Array.isArray(e.params) && e.message.startsWith('Failed query: '));
}

/**
 * Data exceptions (class 22) and errors raised by SQL code (class P0) may quote
 * the offending value ('invalid input syntax for type uuid: "…"'); other
 * messages only name tables, columns and constraints.
 */
function driverMessage(code: string, message: string): string {
  if (!code.startsWith('22') && !code.startsWith('P0')) return message;
  return message.replace(/"[^"]*"/g, '"…"').replace(/: .*$/s, ': …');
}

/** The call frames of a stack without its header, which repeats the message and so the values. */
function framesOf(err: ErrorLike): string {
  const stack = typeof err.stack === 'string' ? err.stack : '';
  const at = err.message === '' ? -1 : stack.indexOf(err.message);
  return at < 0 ? '' : stack.slice(at + err.message.length);
}

function copy(proto: object, message: string, stack: string, fields: Record<string, unknown>, cause: unknown): ErrorLike {
  const c = Object.assign(Object.create(proto) as ErrorLike, fields);
  const hidden = (value: unknown) => ({ value, writable: true, configurable: true, enumerable: false });
  Object.defineProperties(c, { message: hidden(message), stack: hidden(stack) });
  if (cause !== undefined) Object.defineProperty(c, 'cause', hidden(cause));
  return c;
}

/** The error, or a copy of it whose database errors (itself or along its causes) hold no values. */
export function scrubError(err: unknown, depth = 0): unknown {
  if (!isErrorLike(err)) return err;
  if (depth > MAX_DEPTH) return undefined;
  const cause = scrubError(err.cause, depth + 1);
  if (isDriverError(err)) {
    const message = driverMessage(err.code, err.message);
    const fields = Object.fromEntries(SAFE_DRIVER_FIELDS.filter((k) => err[k] !== undefined).map((k) => [k, err[k]]));
    return copy(DatabaseError.prototype, message, `DatabaseError: ${message}${framesOf(err)}`, fields, cause);
  }
  if (isQueryError(err)) {
    const message = `Failed query: ${err.query}`;
    // pino prints only the message and stack of a cause, so its SQLSTATE and names are lifted here.
    const driver = cause instanceof DatabaseError ? { ...cause } : {};
    return copy(DrizzleQueryError.prototype, message, `DrizzleQueryError: ${message}${framesOf(err)}`, { ...driver, query: err.query }, cause);
  }
  if (cause === err.cause) return err;
  // Some other error wrapping a database error: the same error, with its cause cleaned.
  const { cause: _dropped, ...fields } = err;
  return copy(Object.getPrototypeOf(err) as object, err.message, err.stack ?? '', fields, cause);
}

/** drizzle's message, when only the message is logged, ends with the values: "Failed query: …\nparams: …". */
export function scrubErrorText(text: string): string {
  const at = text.indexOf('\nparams: ');
  return at >= 0 && text.lastIndexOf('Failed query: ', at) >= 0 ? text.slice(0, at) : text;
}
