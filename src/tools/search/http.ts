import { request } from 'undici';
import type { Dispatcher } from 'undici';
import { ToolError } from '../types.ts';

/**
 * Bytes of a backend's answer read at most. Real result pages are tens of
 * kilobytes; past this the rest is never downloaded and what was read is
 * parsed as it is (a cut JSON document then fails to parse, a cut HTML page
 * still yields its first results).
 */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;

export interface BackendCall {
  url: URL;
  method?: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
}

export interface BackendAnswer {
  status: number;
  text: string;
}

/**
 * Sends one call to a search backend and reads its answer as text. A status
 * outside 2xx becomes a ToolError naming only the status: the model reads
 * that message, so it must not carry the URL (which may point at an internal
 * host), the key, or whatever the backend put in its body.
 */
export async function callBackend(call: BackendCall, signal: AbortSignal, dispatcher: Dispatcher): Promise<BackendAnswer> {
  const res = await request(call.url, {
    method: call.method ?? 'GET',
    headers: call.headers,
    body: call.body,
    signal,
    dispatcher,
  });
  if (res.statusCode < 200 || res.statusCode > 299) {
    discard(res.body);
    throw new ToolError(`the search backend answered HTTP ${res.statusCode}`);
  }
  return { status: res.statusCode, text: await readCapped(res.body, MAX_BODY_BYTES) };
}

/** The body as UTF-8, stopping (and closing the stream) after `max` bytes. */
async function readCapped(body: Dispatcher.ResponseData['body'], max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    if (size + buf.length > max) {
      chunks.push(buf.subarray(0, max - size));
      discard(body);
      break;
    }
    chunks.push(buf);
    size += buf.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Closes a body that will not be read (closing its connection too). undici
 * reports the close as an 'error' event on the body, which nobody listens to
 * any more and would otherwise crash the process.
 */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

export function unreadable(): ToolError {
  return new ToolError('the search backend sent an answer that could not be read');
}

/** The answer as a JSON object, or the unreadable-answer error. */
export function jsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw unreadable();
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw unreadable();
  return value as Record<string, unknown>;
}

/** A string field of a JSON item, '' when absent or of another type: one odd hit must not sink the others. */
export function stringField(item: unknown, key: string): string {
  if (typeof item !== 'object' || item === null) return '';
  const value = (item as Record<string, unknown>)[key];
  return typeof value === 'string' ? value : '';
}

/** `path` below the base URL, which may itself carry a path (a SearXNG behind /searx, say). */
export function endpoint(base: string, path: string): URL {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${path}`;
  url.search = '';
  url.hash = '';
  return url;
}
