import { pipeline } from 'node:stream';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Agent, Dispatcher } from 'undici';
import { z } from 'zod';
import { AddressPolicy } from './address-policy.ts';
import type { WebFetchConfig } from './config.ts';
import { BlockedAddressError, createGuardedAgent, systemLookup } from './fetch-agent.ts';
import type { Lookup } from './fetch-agent.ts';
import { decodePage, fence, htmlToMarkdown, kindOf, parseContentType, prettyJson, sniffKind } from './page-content.ts';
import type { PageKind } from './page-content.ts';
import { ToolError } from './types.ts';
import type { Tool, ToolOutcome, ToolRunContext } from './types.ts';

/**
 * web_fetch: reads one page for the model. The model chooses the URL, and a
 * page it reads may choose the next one, so every connection (redirects
 * included) goes through the address policy, and every page is bounded in
 * time, bytes and characters.
 */

const input = z.object({
  url: z.string().min(1).max(8192).describe('The absolute http:// or https:// URL of the page to read.'),
});

export type WebFetchInput = z.infer<typeof input>;
export type { Lookup } from './fetch-agent.ts';

export interface WebFetchOptions {
  /** Replaces DNS (tests map made-up names to their local servers). */
  lookup?: Lookup;
}

/** The tool, plus `close()` to shut the connections it keeps open; call it when the server stops. */
export type WebFetchTool = Tool<WebFetchInput> & { close(): Promise<void> };

const DESCRIPTION =
  'Reads one web page and returns its main text as Markdown, with its title and final URL (after redirects). ' +
  'Use it to read a page from search results or a link the user gave. Give an absolute http or https URL. ' +
  'It reads HTML (the article without menus and footers), plain text, Markdown, CSV and JSON, not images or PDF. ' +
  'Only public sites can be fetched. Long pages are cut; the result then has truncated: true.';

const ACCEPT = 'text/html,application/xhtml+xml;q=0.9,text/markdown;q=0.8,text/plain;q=0.8,text/csv;q=0.7,application/json;q=0.7,*/*;q=0.1';

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * `timeout_ms` bounds the fetch itself; turning a large HTML page into
 * Markdown afterwards takes CPU time on top, so the runner's limit for the
 * whole call is a little longer and a slow fetch ends with this tool's own,
 * clearer timeout message.
 */
const PARSE_MARGIN_MS = 5_000;

/** Bytes of an unwanted body (a redirect's, an error page's) read so the connection can be reused; past this it is closed. */
const DISCARD_LIMIT = 64 * 1024;

export function createWebFetchTool(config: WebFetchConfig, options: WebFetchOptions = {}): WebFetchTool {
  const agent = createGuardedAgent({
    policy: new AddressPolicy(config.allowed_private_hosts),
    lookup: options.lookup ?? systemLookup,
    connectTimeoutMs: config.timeout_ms,
  });
  // The server's shutdown may close the tool more than once; undici rejects a second close, so the first one is kept.
  let closing: Promise<void> | undefined;
  return {
    name: 'web_fetch',
    description: DESCRIPTION,
    input,
    timeoutMs: config.timeout_ms + PARSE_MARGIN_MS,
    run: async ({ url }, context) => render(await download(agent, config, targetUrl(url), context), config),
    close: () => (closing ??= agent.close()),
  };
}

interface Download {
  /** Where the page was found, after redirects. */
  url: URL;
  kind: PageKind;
  charset: string | undefined;
  bytes: Buffer;
  /** The page was longer than max_bytes and only its start was read. */
  truncated: boolean;
}

/** The URL the model gave, if it is one web_fetch may try. */
function targetUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new ToolError('not a valid URL: give an absolute http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ToolError(`only http and https URLs can be fetched, not ${url.protocol}`);
  }
  if (url.username || url.password) throw new ToolError('URLs with a user name or password are not fetched');
  url.hash = '';
  return url;
}

/** Where a redirect points, resolved against the page that sent it and held to the same rules as the model's URL. */
function redirectTarget(location: string, current: URL): URL {
  let next: URL;
  try {
    next = new URL(location, current);
  } catch {
    throw new ToolError('the page redirected to something that is not a valid URL');
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new ToolError(`the page redirected to a ${next.protocol} URL; only http and https are fetched`);
  }
  if (next.username || next.password) throw new ToolError('the page redirected to a URL with a user name or password, which is not fetched');
  next.hash = '';
  return next;
}

/** Fetches the page within `timeout_ms`, which covers every redirect and the whole body, or until the caller gives up. */
async function download(agent: Agent, config: WebFetchConfig, requested: URL, context: ToolRunContext): Promise<Download> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), config.timeout_ms);
  const signal = AbortSignal.any([context.signal, deadline.signal]);
  try {
    return await untilAborted(follow(agent, config, requested, signal), signal);
  } catch (err) {
    if (context.signal.aborted) throw context.signal.reason ?? err;
    if (deadline.signal.aborted) throw new ToolError(`timed out after ${config.timeout_ms} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function follow(agent: Agent, config: WebFetchConfig, requested: URL, signal: AbortSignal): Promise<Download> {
  let url = requested;
  for (let redirects = 0; ; redirects++) {
    let response: Dispatcher.ResponseData;
    try {
      // undici's request() never follows redirects itself: each hop comes back here to be checked.
      response = await agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { 'user-agent': config.user_agent, accept: ACCEPT, 'accept-encoding': 'gzip, br' },
        signal,
      });
    } catch (err) {
      throw explain(err, url, requested);
    }
    const { statusCode, headers, body } = response;

    if (REDIRECT_STATUSES.has(statusCode)) {
      await discard(body);
      const location = firstHeader(headers.location);
      if (!location) throw new ToolError(`the page answered HTTP ${statusCode} without saying where to go`);
      if (redirects >= config.max_redirects) throw new ToolError(`too many redirects (more than ${config.max_redirects})`);
      url = redirectTarget(location, url);
      continue;
    }
    if (statusCode < 200 || statusCode > 299) {
      await discard(body);
      throw new ToolError(`the page answered HTTP ${statusCode}`);
    }

    const { mime, charset } = parseContentType(firstHeader(headers['content-type']));
    const declared = mime === undefined ? undefined : kindOf(mime);
    if (mime !== undefined && declared === undefined) {
      drop(body);
      const shown = /^[\w.+-]{1,60}\/[\w.+-]{1,80}$/.test(mime) ? mime : 'of this page';
      throw new ToolError(`content type ${shown} is not supported: web_fetch reads HTML, plain text, Markdown, CSV and JSON`);
    }
    let read: { bytes: Buffer; truncated: boolean };
    try {
      read = await readCapped(body, firstHeader(headers['content-encoding']), config.max_bytes);
    } catch (err) {
      throw explain(err, url, requested);
    }
    const kind = declared ?? sniffKind(read.bytes);
    if (!kind) throw new ToolError('the page has no content type and does not look like text');
    return { url, kind, charset, ...read };
  }
}

/**
 * Reads the body up to `max` bytes (after decompression, so a small
 * compressed page cannot unpack into gigabytes). Reaching the cap destroys
 * the body, which closes the connection: the rest is never downloaded.
 */
async function readCapped(body: Readable, encoding: string | undefined, max: number): Promise<{ bytes: Buffer; truncated: boolean }> {
  let stream = body;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    stream = decompressed(body, encoding);
    for await (const chunk of stream) {
      const buffer = chunk as Buffer;
      if (size + buffer.length > max) {
        chunks.push(buffer.subarray(0, max - size));
        return { bytes: Buffer.concat(chunks), truncated: true };
      }
      chunks.push(buffer);
      size += buffer.length;
    }
    return { bytes: Buffer.concat(chunks), truncated: false };
  } finally {
    // A body read to its end is left alone so its connection can serve the next fetch.
    if (!stream.readableEnded) drop(stream);
    if (!body.readableEnded) drop(body);
  }
}

function decompressed(body: Readable, encoding: string | undefined): Readable {
  const coding = (encoding ?? '').trim().toLowerCase();
  if (coding === '' || coding === 'identity') return body;
  const decoder =
    coding === 'gzip' || coding === 'x-gzip'
      ? createGunzip()
      : coding === 'br'
        ? createBrotliDecompress()
        : coding === 'deflate'
          ? createInflate()
          : undefined;
  if (!decoder) {
    const shown = /^[\w.-]{1,40}$/.test(coding) ? coding : 'an unknown encoding';
    throw new ToolError(`the page is compressed with ${shown}, which is not supported`);
  }
  // pipeline passes errors both ways and destroys the body when the decoder is destroyed; the error surfaces where the decoder is read.
  pipeline(body, decoder, () => undefined);
  return decoder;
}

/** Reads a little of an unwanted body so the connection stays usable, and closes it when there is more. */
async function discard(body: Dispatcher.ResponseData['body']): Promise<void> {
  await body.dump({ limit: DISCARD_LIMIT }).catch(() => undefined);
}

/**
 * Closes a body that will not be read (further). undici reports the abort as
 * an error on the stream, which nobody listens to any more: without a
 * listener it would crash the process.
 */
export function drop(stream: Readable): void {
  stream.on('error', () => undefined);
  stream.destroy();
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Settles with `work`, or rejects as soon as `signal` aborts (undici does not notice an abort while a connection is still opening). */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * A failure as a short message for the model. Messages name the host the
 * model asked for, never an address it resolved to, and never the host a
 * redirect pointed at (that may be an internal name the model should not learn).
 */
function explain(err: unknown, current: URL, requested: URL): Error {
  if (err instanceof ToolError) return err;
  const asked = current.hostname === requested.hostname;
  const where = asked ? current.hostname : 'the host the page redirected to';
  if (causes(err).some((e) => e instanceof BlockedAddressError)) {
    return new ToolError(
      asked ? `the address of ${current.hostname} is private and may not be fetched` : 'the page redirected to a private address, which may not be fetched',
    );
  }
  const code = errorCode(err);
  if (code === undefined) return new ToolError('the fetch failed');
  if (/^(ENOTFOUND|EAI_AGAIN|EAI_NODATA|EAI_NONAME|EAI_FAIL)$/.test(code)) return new ToolError(`could not resolve ${where}`);
  if (code === 'ECONNREFUSED') return new ToolError(`${where} refused the connection`);
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return new ToolError(`${where} cannot be reached`);
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return new ToolError(`${where} did not accept a connection in time`);
  if (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED') return new ToolError('web_fetch is shutting down');
  if (/^(ECONNRESET|EPIPE|UND_ERR_SOCKET)$/.test(code)) return new ToolError(`the connection to ${where} broke off`);
  if (code === 'UND_ERR_HEADERS_OVERFLOW') return new ToolError('the page answered with headers that are too large');
  if (/CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET)/.test(code)) return new ToolError(`the TLS certificate of ${where} was not accepted (${code})`);
  if (/TLS|SSL/.test(code)) return new ToolError(`the TLS handshake with ${where} failed (${code})`);
  if (/^(Z_|ERR_BROTLI|ERR_ZLIB)/.test(code)) return new ToolError('the page was compressed and could not be decompressed');
  return new ToolError(`the fetch failed (${code})`);
}

/** An error and the errors it wraps, outermost first. */
export function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 5; e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

/** The first error code along the cause chain, if it looks like a code (messages may hold addresses and are not passed on). */
function errorCode(err: unknown): string | undefined {
  for (const e of causes(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,60}$/.test(code)) return code;
  }
  return undefined;
}

function render(page: Download, config: WebFetchConfig): ToolOutcome {
  const url = page.url.href;
  let text = decodePage(page.bytes, page.kind, page.charset);
  // A character cut in half by the byte cap decodes as one replacement character at the very end.
  if (page.truncated) text = text.replace(/\uFFFD$/, '');
  let title = '';
  let body: string;
  if (page.kind === 'html') {
    try {
      ({ title, markdown: body } = htmlToMarkdown(text, url));
    } catch {
      // The parsers meet every odd page on the web; one they choke on is the page's problem, told as such.
      throw new ToolError('the page could not be read as HTML');
    }
  } else body = page.kind === 'json' ? prettyJson(text) : text.trim();
  title ||= titleFromUrl(page.url);

  const { content, truncated } = fit(body, page.kind === 'json' ? 'json' : undefined, page.truncated, config);
  return {
    result: { url, title, content, ...(truncated ? { truncated: true } : {}) },
    sources: [{ url, title }],
  };
}

/**
 * The content within max_chars, with a closing note in square brackets when
 * the model does not see the whole page (the byte cap, the character cap) or
 * sees nothing at all. A JSON block is cut inside its fence so it stays one block.
 */
function fit(body: string, fenced: string | undefined, bytesCut: boolean, config: WebFetchConfig): { content: string; truncated: boolean } {
  const wrap = (text: string) => (fenced ? fence(text, fenced) : text);
  const notes: string[] = [];
  if (bytesCut) notes.push(`only the first ${config.max_bytes} bytes of the page were read`);
  if (!body) notes.push('the page has no readable text; it may need JavaScript to show its content');
  const withNotes = (text: string) => (notes.length === 0 ? text : `${text}${text ? '\n\n' : ''}[${notes.join('; ')}]`);

  const whole = withNotes(wrap(body));
  if (whole.length <= config.max_chars) return { content: whole, truncated: bytesCut };
  notes.push(`the text was cut at ${config.max_chars} characters`);
  // The fence around the whole body is at least as long as the one around a part of it, so this room is enough.
  const room = Math.max(0, config.max_chars - (withNotes(wrap(body)).length - body.length));
  return { content: withNotes(wrap(cut(body, room))), truncated: true };
}

/** How far back from the cap a cut looks for a space or line break, so words are not split. */
const WORD_BREAK_REACH = 200;

/** At most the first `length` characters, ending at a space or line break when one is near, never inside a surrogate pair. */
function cut(text: string, length: number): string {
  if (text.length <= length) return text;
  let end = length;
  const space = Math.max(text.lastIndexOf(' ', end), text.lastIndexOf('\n', end));
  if (space > 0 && space >= end - WORD_BREAK_REACH) end = space;
  else if (/[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end--;
  return text.slice(0, end).trimEnd();
}

/** A title for a page that has none: its file name, else its host. */
function titleFromUrl(url: URL): string {
  const last = url.pathname.split('/').filter(Boolean).pop();
  if (!last) return url.hostname;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}
