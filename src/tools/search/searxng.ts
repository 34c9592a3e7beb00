import type { Dispatcher } from 'undici';
import { callBackend, endpoint, jsonObject, stringField, unreadable } from './http.ts';
import { keepResults } from './text.ts';
import type { SearchResult } from './types.ts';

/**
 * A SearXNG instance's JSON API: `GET {base}/search?q=…&format=json`.
 * SearXNG serves only the formats listed under `search.formats` in its
 * settings.yml and answers 403 to the others, so the instance must list
 * `json` there (many public instances do not). Language and safe search
 * stay at the instance's defaults. SearXNG has no result count parameter:
 * the first `count` hits of its first page are kept.
 */
export async function searchSearxng(base: string, query: string, count: number, signal: AbortSignal, dispatcher: Dispatcher): Promise<SearchResult[]> {
  const url = endpoint(base, 'search');
  url.searchParams.set('q', query);
  url.searchParams.set('format', 'json');
  const { text } = await callBackend({ url, headers: { accept: 'application/json' } }, signal, dispatcher);
  const results = jsonObject(text).results;
  if (!Array.isArray(results)) throw unreadable();
  // `content` is plain text already; hits without it (an image, a map) keep an empty snippet.
  return keepResults(
    results.map((item) => ({ title: stringField(item, 'title'), url: stringField(item, 'url'), snippet: stringField(item, 'content') })),
    count,
  );
}
