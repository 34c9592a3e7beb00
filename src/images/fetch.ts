import type { Agent, Dispatcher } from 'undici';
import { AddressPolicy } from '../tools/address-policy.ts';
import { BlockedAddressError, createGuardedAgent, systemLookup, type Lookup } from '../tools/fetch-agent.ts';
import { causes, drop, untilAborted } from '../tools/web-fetch.ts';
import type { ImagesConfig } from './config.ts';
import { ImageFailure, tooLarge } from './source.ts';

/**
 * Fetches images that users name by URL, on the server: the upstream gets the
 * bytes, never the address, so no model server is ever sent to a URL a user
 * chose. Every connection goes through the same address policy and guarded
 * agent as web_fetch (private, loopback and metadata addresses are refused),
 * each redirect is checked again, and the whole fetch is bounded in time and bytes.
 */

export interface ImageFetcher {
  /** The image's bytes, or an ImageFailure saying why not. */
  fetch(url: URL, signal?: AbortSignal): Promise<Buffer>;
  close(): Promise<void>;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** A URL an image may be fetched from: http(s), without credentials. */
export function imageUrl(raw: string, base?: URL): URL | ImageFailure {
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    return new ImageFailure('invalid_image_url', 'not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return new ImageFailure('invalid_image_url', 'an image URL must be http(s) or a base64 data URL');
  if (url.username !== '' || url.password !== '') return new ImageFailure('invalid_image_url', 'image URLs with a user name or password are not fetched');
  url.hash = '';
  return url;
}

export function createImageFetcher(config: ImagesConfig, lookup: Lookup = systemLookup): ImageFetcher {
  const agent = createGuardedAgent({ policy: new AddressPolicy(config.allowed_private_hosts), lookup, connectTimeoutMs: config.timeout_ms });
  let closing: Promise<void> | undefined;
  return {
    async fetch(url, signal) {
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(), config.timeout_ms);
      const both = signal === undefined ? deadline.signal : AbortSignal.any([signal, deadline.signal]);
      try {
        return await untilAborted(follow(agent, config, url, both), both);
      } catch (err) {
        if (err instanceof ImageFailure) throw err;
        if (signal?.aborted === true) throw signal.reason ?? err;
        if (deadline.signal.aborted) throw new ImageFailure('image_fetch_timeout', `the image URL did not answer within ${config.timeout_ms} ms`);
        if (causes(err).some((e) => e instanceof BlockedAddressError)) {
          throw new ImageFailure('image_url_blocked', 'the image URL points to a private or local address, which is not fetched');
        }
        throw new ImageFailure('image_fetch_failed', 'the image URL could not be fetched');
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => (closing ??= agent.close()),
  };
}

async function follow(agent: Agent, config: ImagesConfig, start: URL, signal: AbortSignal): Promise<Buffer> {
  let url = start;
  for (let redirects = 0; ; redirects++) {
    const res: Dispatcher.ResponseData = await agent.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { 'user-agent': config.user_agent, accept: 'image/png,image/jpeg,image/gif,image/webp;q=0.9,*/*;q=0.1', 'accept-encoding': 'identity' },
      signal,
    });
    if (REDIRECTS.has(res.statusCode)) {
      drop(res.body);
      const location = first(res.headers.location);
      if (location === undefined) throw new ImageFailure('image_fetch_failed', `the image URL answered HTTP ${res.statusCode} without a location`);
      if (redirects >= config.max_redirects) throw new ImageFailure('image_fetch_failed', `the image URL redirected more than ${config.max_redirects} times`);
      const next = imageUrl(location, url);
      if (next instanceof ImageFailure) throw new ImageFailure('image_fetch_failed', `the image URL redirected to a URL that is not fetched: ${next.message}`);
      url = next;
      continue;
    }
    if (res.statusCode < 200 || res.statusCode > 299) {
      drop(res.body);
      throw new ImageFailure('image_fetch_failed', `the image URL answered HTTP ${res.statusCode}`);
    }
    const declared = Number(first(res.headers['content-length']));
    if (Number.isFinite(declared) && declared > config.max_bytes) {
      drop(res.body);
      throw tooLarge(config.max_bytes);
    }
    return readCapped(res.body, config.max_bytes);
  }
}

/** The whole body, or image_too_large as soon as it passes `max` (the rest is never downloaded). */
async function readCapped(body: Dispatcher.ResponseData['body'], max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const piece = chunk as Buffer;
      size += piece.length;
      if (size > max) throw tooLarge(max);
      chunks.push(piece);
    }
  } finally {
    if (!body.readableEnded) drop(body);
  }
  return Buffer.concat(chunks, size);
}

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
