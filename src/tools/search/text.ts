import { parseHTML } from 'linkedom';
import type { SearchResult } from './types.ts';

/** Longest title and snippet handed to the model: enough to judge a hit, too little to flood the context. */
export const TITLE_MAX_CHARS = 200;
export const SNIPPET_MAX_CHARS = 400;
/** Longer URLs are tracking junk or abuse, not pages worth citing. */
const URL_MAX_CHARS = 2048;

/** The few DOM members the backends use; linkedom's own typings lean on the DOM library, which this project does not load. */
export interface HtmlNode {
  readonly textContent: string | null;
  readonly classList: { contains(name: string): boolean };
  getAttribute(name: string): string | null;
  querySelector(selector: string): HtmlNode | null;
  querySelectorAll(selector: string): Iterable<HtmlNode>;
}

/** Parses a whole HTML page. */
export function parseDocument(html: string): HtmlNode {
  const window = parseHTML(html) as unknown as { document: HtmlNode };
  return window.document;
}

/** The text of an HTML fragment, tags dropped and entities decoded, e.g. a description with `<strong>` and `&amp;`. */
export function htmlText(fragment: string): string {
  const document = parseDocument(`<!DOCTYPE html><html><head></head><body>${fragment}</body></html>`);
  return document.querySelector('body')?.textContent ?? '';
}

/** Runs of whitespace (new lines, tabs, no-break spaces) become one space. */
export function collapse(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** At most `max` characters, an ellipsis marking the cut; never splits a surrogate pair. */
export function cap(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, max - 1);
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut.trimEnd()}…`;
}

/** The normalised URL when it is an absolute http(s) URL of sane length, else undefined. */
export function webUrl(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  return url.href.length <= URL_MAX_CHARS ? url.href : undefined;
}

/**
 * The common cleanup every backend's hits go through, in the backend's order:
 * only http(s) URLs, whitespace collapsed, lengths capped, one hit per page
 * (a fragment does not make another page) and at most `count` of them.
 * A hit without a title is named by its URL so a citation always has a label.
 */
export function keepResults(candidates: Iterable<SearchResult>, count: number): SearchResult[] {
  const kept: SearchResult[] = [];
  const seen = new Set<string>();
  for (const candidate of candidates) {
    if (kept.length >= count) break;
    const url = webUrl(candidate.url);
    if (url === undefined) continue;
    const page = url.split('#', 1)[0] ?? url;
    if (seen.has(page)) continue;
    seen.add(page);
    kept.push({
      title: cap(collapse(candidate.title), TITLE_MAX_CHARS) || cap(url, TITLE_MAX_CHARS),
      url,
      snippet: cap(collapse(candidate.snippet), SNIPPET_MAX_CHARS),
    });
  }
  return kept;
}
