import type { Dispatcher } from 'undici';
import { callBackend, endpoint, jsonObject, stringField } from './http.ts';
import { htmlText, keepResults } from './text.ts';
import type { SearchResult } from './types.ts';

export const BRAVE_BASE_URL = 'https://api.search.brave.com';

/**
 * The Brave Search API's web search:
 * `GET {base}/res/v1/web/search?q=…&count=N`, the key in the
 * `X-Subscription-Token` header. Its hits are `web.results[]`; an answer
 * without `web` simply found no web pages. Titles and descriptions are HTML
 * (the query terms in `<strong>`, entities such as `&amp;`), so they are
 * turned into plain text before the model sees them.
 */
export async function searchBrave(
  base: string,
  apiKey: string,
  query: string,
  count: number,
  signal: AbortSignal,
  dispatcher: Dispatcher,
): Promise<SearchResult[]> {
  const url = endpoint(base, 'res/v1/web/search');
  url.searchParams.set('q', query);
  url.searchParams.set('count', String(count));
  const { text } = await callBackend(
    { url, headers: { accept: 'application/json', 'x-subscription-token': apiKey } },
    signal,
    dispatcher,
  );
  const web = jsonObject(text).web;
  const results = typeof web === 'object' && web !== null ? (web as Record<string, unknown>).results : undefined;
  if (!Array.isArray(results)) return [];
  return keepResults(
    results.map((item) => ({
      title: htmlText(stringField(item, 'title')),
      url: stringField(item, 'url'),
      snippet: htmlText(stringField(item, 'description')),
    })),
    count,
  );
}
