import { Agent, errors } from 'undici';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import type { WebSearchConfig } from './config.ts';
import { BRAVE_BASE_URL, searchBrave } from './search/brave.ts';
import { DUCKDUCKGO_BASE_URL, searchDuckDuckGo } from './search/duckduckgo.ts';
import { searchSearxng } from './search/searxng.ts';
import type { SearchResult } from './search/types.ts';
import { ToolError } from './types.ts';
import type { Tool, ToolRunContext } from './types.ts';

/** The `tools.web_search` section plus the key read from the environment variable it names. */
export type WebSearchSettings = WebSearchConfig & { apiKey: string | undefined };

export interface WebSearchInput {
  query: string;
  max_results?: number;
}

export interface WebSearchTool extends Tool<WebSearchInput> {
  /** Closes the tool's connections; call once at shutdown, after the last search. */
  close(): Promise<void>;
}

type Backend = (query: string, count: number, signal: AbortSignal, dispatcher: Dispatcher) => Promise<SearchResult[]>;

/** Brave bills each query, so the caller makes it a plan feature (`advanced_web_search`); the other backends cost nothing per query. */
export function isPaidSearch(config: Pick<WebSearchConfig, 'backend'>): boolean {
  return config.backend === 'brave';
}

const input = z.strictObject({
  query: z.string().trim().min(1).max(400).describe('What to search for, as you would type it into a search engine.'),
  max_results: z.number().int().min(1).max(10).optional().describe('How many results to return (1 to 10).'),
});

/**
 * The `web_search` tool: one query to the configured backend, its hits as
 * `{results: [{title, url, snippet}]}` and as sources for citations. It owns
 * its connection pool, bounded by the configured timeout at every stage.
 * Throws at once (a configuration error, before the server starts) when
 * the backend lacks what it needs: SearXNG a base_url, Brave a key.
 */
export function createWebSearchTool(config: WebSearchSettings): WebSearchTool {
  const backend = pickBackend(config);
  const timeoutMs = config.timeout_ms;
  const agent = new Agent({
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 30_000,
    // Searches go to one host; a few connections serve a busy server, more would only get it throttled.
    connections: 8,
  });

  return {
    name: 'web_search',
    description:
      'Search the web. Returns up to ' +
      `${config.max_results} results unless max_results asks for another number (at most 10), each with a title, a url ` +
      'and a short snippet of the page. Use it for recent events and for facts you are not sure of, then cite the urls ' +
      'of the results you rely on. An empty list means nothing was found: try other words.',
    input,
    timeoutMs,
    async run(args: WebSearchInput, context: ToolRunContext) {
      const count = args.max_results ?? config.max_results;
      const timer = AbortSignal.timeout(timeoutMs);
      let results: SearchResult[];
      try {
        results = await backend(args.query, count, AbortSignal.any([context.signal, timer]), agent);
      } catch (err) {
        throw explain(err, context.signal, timer, timeoutMs);
      }
      return {
        result: { results },
        sources: results.map(({ url, title }) => ({ url, title })),
      };
    },
    close: () => agent.close(),
  };
}

function pickBackend(config: WebSearchSettings): Backend {
  switch (config.backend) {
    case 'searxng': {
      const base = config.base_url;
      if (base === undefined) throw new Error('tools.web_search: the searxng backend needs base_url, the address of the SearXNG instance');
      return (query, count, signal, dispatcher) => searchSearxng(base, query, count, signal, dispatcher);
    }
    case 'brave': {
      const key = config.apiKey;
      if (key === undefined || key === '') {
        const where = config.api_key_env === undefined ? 'set api_key_env to the name of the environment variable holding it' : `${config.api_key_env} is not set`;
        throw new Error(`tools.web_search: the brave backend needs an API key (${where})`);
      }
      const base = config.base_url ?? BRAVE_BASE_URL;
      return (query, count, signal, dispatcher) => searchBrave(base, key, query, count, signal, dispatcher);
    }
    case 'duckduckgo': {
      const base = config.base_url ?? DUCKDUCKGO_BASE_URL;
      return (query, count, signal, dispatcher) => searchDuckDuckGo(base, query, count, signal, dispatcher);
    }
  }
}

/**
 * What a failed search tells the model. When the caller stopped the call
 * (the client left, shutdown) its own reason goes on, so it is not mistaken
 * for a tool failure. The undici errors stay as `cause` for the log only:
 * they may name the backend's address.
 */
function explain(err: unknown, callerSignal: AbortSignal, timer: AbortSignal, timeoutMs: number): unknown {
  if (callerSignal.aborted) return callerSignal.reason ?? err;
  if (err instanceof ToolError) return err;
  if (
    timer.aborted ||
    err instanceof errors.ConnectTimeoutError ||
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError
  ) {
    return new ToolError(`the search took longer than ${timeoutMs} ms`, { cause: err });
  }
  return new ToolError('the connection to the search backend failed', { cause: err });
}
