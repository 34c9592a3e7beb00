/** One web search hit as the model sees it: plain text, an http(s) URL. */
export interface SearchResult {
  title: string;
  url: string;
  snippet: string;
}
