import type { Dispatcher } from 'undici';
import { ToolError } from '../types.ts';
import { callBackend, endpoint, unreadable } from './http.ts';
import { keepResults, parseDocument } from './text.ts';
import type { HtmlNode } from './text.ts';
import type { SearchResult } from './types.ts';

export const DUCKDUCKGO_BASE_URL = 'https://html.duckduckgo.com';

/**
 * DuckDuckGo turns away clients that do not look like a browser, so the
 * form is sent the way a browser submits it.
 */
const BROWSER_USER_AGENT = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

/** Markers of the "are you a bot" challenge page, which DuckDuckGo serves instead of results when it throttles a client. */
const CHALLENGE = '[class*="anomaly-modal"], #challenge-form, form[action*="anomaly"]';

/**
 * DuckDuckGo's HTML endpoint (the page its no-JavaScript version shows):
 * `POST {base}/html/` with the form field `q`. No key, but no API either:
 * the hits are read off the page. Each is a `.result` (organic ones also
 * `.web-result`) holding the title link `a.result__a` and the snippet
 * `.result__snippet`; ads are the same blocks marked `.result--ad`.
 */
export async function searchDuckDuckGo(base: string, query: string, count: number, signal: AbortSignal, dispatcher: Dispatcher): Promise<SearchResult[]> {
  const { status, text } = await callBackend(
    {
      url: endpoint(base, 'html/'),
      method: 'POST',
      headers: {
        'user-agent': BROWSER_USER_AGENT,
        accept: 'text/html',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ q: query }).toString(),
    },
    signal,
    dispatcher,
  );
  const document = parseDocument(text);
  // The challenge page comes with HTTP 202, a success status, and no results: without this check it would read as "nothing found".
  if (status === 202 || document.querySelector(CHALLENGE) !== null) {
    throw new ToolError('the search backend refused the query (rate limited)');
  }
  const hits: SearchResult[] = [];
  for (const block of document.querySelectorAll('.result, .web-result')) {
    if (block.classList.contains('result--ad')) continue;
    const link = block.querySelector('a.result__a');
    if (link === null) continue; // the "No results." block is a .result without a link
    hits.push({
      title: link.textContent ?? '',
      url: targetUrl(link.getAttribute('href') ?? ''),
      snippet: block.querySelector('.result__snippet')?.textContent ?? '',
    });
  }
  if (hits.length === 0 && !isResultPage(document)) throw unreadable();
  return keepResults(hits, count);
}

/**
 * A page with neither hits nor the result list nor the "No results." notice
 * is not a result page at all (an error page, a changed layout): saying
 * "nothing found" would mislead the model.
 */
function isResultPage(document: HtmlNode): boolean {
  return document.querySelector('#links, .results, .no-results') !== null;
}

/**
 * Where a result link leads. Links may be direct, or go through DuckDuckGo's
 * click redirect `//duckduckgo.com/l/?uddg=<encoded target>&rut=…`, whose
 * target is the real page; its ad redirect (`/y.js`) leads to no result.
 * Relative links are DuckDuckGo's own, so they resolve against its site,
 * not against a configured mirror.
 */
function targetUrl(href: string): string {
  let url: URL;
  try {
    url = new URL(href, 'https://duckduckgo.com/');
  } catch {
    return '';
  }
  const own = url.hostname === 'duckduckgo.com' || url.hostname.endsWith('.duckduckgo.com');
  if (own && url.pathname === '/l/') return url.searchParams.get('uddg') ?? '';
  if (own && url.pathname === '/y.js') return '';
  return url.href;
}
