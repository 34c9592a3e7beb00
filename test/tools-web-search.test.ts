import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { webSearchSchema } from '../src/tools/config.ts';
import { ToolError, type ToolOutcome } from '../src/tools/types.ts';
import { createWebSearchTool, isPaidSearch, type WebSearchTool } from '../src/tools/web-search.ts';

// Fake search backends: real HTTP servers on 127.0.0.1 that answer the way
// SearXNG, the Brave Search API and DuckDuckGo's HTML endpoint do, so the tool
// is tested through its own connection pool, timeouts and parsers.

interface Seen {
  method: string;
  url: URL;
  headers: IncomingHttpHeaders;
  body: string;
  /** Resolves when the connection of this request closed or its answer ended. */
  closed: Promise<void>;
}

type Handler = (seen: Seen, res: ServerResponse) => void | Promise<void>;

interface Fake {
  base: string;
  port: number;
  seen: Seen[];
  close(): Promise<void>;
}

const fakes: Fake[] = [];
const tools: WebSearchTool[] = [];

afterEach(async () => {
  await Promise.all(tools.splice(0).map((tool) => tool.close()));
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});

async function fakeBackend(handler: Handler): Promise<Fake> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const request: Seen = {
        method: req.method ?? '',
        url: new URL(req.url ?? '/', 'http://fake'),
        headers: req.headers,
        body,
        closed: new Promise((resolve) => res.on('close', () => resolve())),
      };
      seen.push(request);
      void handler(request, res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const fake: Fake = {
    base: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  fakes.push(fake);
  return fake;
}

function json(res: ServerResponse, value: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(value));
}

function html(res: ServerResponse, page: string, status = 200): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=UTF-8' });
  res.end(page);
}

const BRAVE_KEY = 'BSA-test-key-4f1c9e';

function makeTool(settings: Record<string, unknown>, apiKey?: string): WebSearchTool {
  const tool = createWebSearchTool({ ...webSearchSchema.parse(settings), apiKey });
  tools.push(tool);
  return tool;
}

function context(signal = new AbortController().signal) {
  return { signal, now: () => Date.now() };
}

/** Validates the arguments as the model's would be, then runs the tool. */
function search(tool: WebSearchTool, args: unknown, signal?: AbortSignal): Promise<ToolOutcome> {
  return tool.run(tool.input.parse(args), context(signal));
}

async function searchError(tool: WebSearchTool, args: unknown): Promise<ToolError> {
  const err: unknown = await search(tool, args).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ToolError);
  return err as ToolError;
}

function searxngHits(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    url: `https://example.org/page-${i}`,
    title: `Page ${i}`,
    content: `About page ${i}.`,
    engine: 'bing',
    engines: ['bing'],
    positions: [i + 1],
    score: 1,
    category: 'general',
  }));
}

function searxngAnswer(query: string, results: unknown[]) {
  return {
    query,
    number_of_results: 0,
    results,
    answers: [],
    corrections: [],
    infoboxes: [],
    suggestions: [],
    unresponsive_engines: [],
  };
}

describe('SearXNG backend', () => {
  it('asks the JSON API and maps title, url and content to plain results with sources', async () => {
    const fake = await fakeBackend((seen, res) =>
      json(
        res,
        searxngAnswer(seen.url.searchParams.get('q') ?? '', [
          {
            url: 'https://www.rust-lang.org/',
            title: 'Rust  Programming\n Language',
            content: 'A language empowering everyone\tto build reliable software.',
            engine: 'duckduckgo',
            score: 3,
          },
          { url: 'https://doc.rust-lang.org/book/', title: 'The Book', engine: 'google', score: 2 },
        ]),
      ),
    );
    const tool = makeTool({ backend: 'searxng', base_url: `${fake.base}/searx/` });

    const outcome = await search(tool, { query: '  rust & "async"  ' });

    expect(outcome.result).toEqual({
      results: [
        {
          title: 'Rust Programming Language',
          url: 'https://www.rust-lang.org/',
          snippet: 'A language empowering everyone to build reliable software.',
        },
        { title: 'The Book', url: 'https://doc.rust-lang.org/book/', snippet: '' },
      ],
    });
    expect(outcome.sources).toEqual([
      { url: 'https://www.rust-lang.org/', title: 'Rust Programming Language' },
      { url: 'https://doc.rust-lang.org/book/', title: 'The Book' },
    ]);
    const [request] = fake.seen;
    expect(request?.method).toBe('GET');
    expect(request?.url.pathname).toBe('/searx/search');
    expect(request?.url.searchParams.get('q')).toBe('rust & "async"');
    expect(request?.url.searchParams.get('format')).toBe('json');
    expect(request?.url.searchParams.has('language')).toBe(false);
    expect(request?.url.searchParams.has('safesearch')).toBe(false);
  });

  it('returns the configured number of results by default and the number the model asks for', async () => {
    const fake = await fakeBackend((seen, res) => json(res, searxngAnswer('q', searxngHits(12))));
    const tool = makeTool({ backend: 'searxng', base_url: fake.base, max_results: 4 });

    const byDefault = await search(tool, { query: 'pages' });
    expect((byDefault.result.results as unknown[]).length).toBe(4);
    expect(byDefault.sources).toHaveLength(4);

    const asked = await search(tool, { query: 'pages', max_results: 7 });
    expect((asked.result.results as { url: string }[]).map((r) => r.url)).toEqual(searxngHits(7).map((h) => h.url));
  });

  it('drops results that are not http(s) and keeps one result per page', async () => {
    const fake = await fakeBackend((seen, res) =>
      json(
        res,
        searxngAnswer('q', [
          { url: 'ftp://files.example.org/a.txt', title: 'FTP' },
          { url: 'javascript:alert(1)', title: 'Script' },
          { url: '/relative/path', title: 'Relative' },
          { url: 'magnet:?xt=urn:btih:abc', title: 'Magnet' },
          { title: 'No URL at all' },
          { url: 42, title: 'Numeric URL' },
          { url: 'https://a.example/x', title: 'First A' },
          { url: 'https://A.EXAMPLE/x', title: 'Same page, other spelling' },
          { url: 'https://a.example/x#section', title: 'Same page, a fragment' },
          { url: 'http://b.example/', title: 'B', content: null },
          { url: 'https://c.example/', title: '' },
        ]),
      ),
    );
    const tool = makeTool({ backend: 'searxng', base_url: fake.base, max_results: 10 });

    const outcome = await search(tool, { query: 'mixed' });

    expect(outcome.result.results).toEqual([
      { title: 'First A', url: 'https://a.example/x', snippet: '' },
      { title: 'B', url: 'http://b.example/', snippet: '' },
      { title: 'https://c.example/', url: 'https://c.example/', snippet: '' },
    ]);
  });

  it('caps long titles and snippets', async () => {
    const fake = await fakeBackend((seen, res) =>
      json(res, searxngAnswer('q', [{ url: 'https://long.example/', title: 'T'.repeat(500), content: 'word '.repeat(300) }])),
    );
    const tool = makeTool({ backend: 'searxng', base_url: fake.base });

    const [hit] = (await search(tool, { query: 'long' })).result.results as { title: string; snippet: string }[];

    expect(hit?.title.length).toBeLessThanOrEqual(200);
    expect(hit?.title.endsWith('…')).toBe(true);
    expect(hit?.snippet.length).toBeLessThanOrEqual(400);
    expect(hit?.snippet.startsWith('word word')).toBe(true);
  });

  it('finds nothing without failing', async () => {
    const fake = await fakeBackend((seen, res) => json(res, searxngAnswer('q', [])));
    const tool = makeTool({ backend: 'searxng', base_url: fake.base });

    expect(await search(tool, { query: 'zxqv nothing' })).toEqual({ result: { results: [] }, sources: [] });
  });

  it('reports an error status by its number only', async () => {
    const fake = await fakeBackend((seen, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('Traceback: secret internal detail at /srv/searxng');
    });
    const tool = makeTool({ backend: 'searxng', base_url: fake.base });

    const err = await searchError(tool, { query: 'boom' });

    expect(err.message).toBe('the search backend answered HTTP 500');
  });

  it('reports an instance that does not serve the JSON format (403)', async () => {
    const fake = await fakeBackend((seen, res) => html(res, '<html><body>403 Forbidden</body></html>', 403));
    const tool = makeTool({ backend: 'searxng', base_url: fake.base });

    expect((await searchError(tool, { query: 'json off' })).message).toBe('the search backend answered HTTP 403');
  });

  it('reports an answer that is not the JSON it expects', async () => {
    const answers = ['<!DOCTYPE html><html><body>results</body></html>', '{"results": "none"}', '[1, 2, 3]', '{"results": [ {"url": "https://cut.exa'];
    const fake = await fakeBackend((seen, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answers[fake.seen.length - 1]);
    });
    const tool = makeTool({ backend: 'searxng', base_url: fake.base });

    for (const _ of answers) {
      expect((await searchError(tool, { query: 'odd' })).message).toBe('the search backend sent an answer that could not be read');
    }
  });

  it('stops reading an oversized answer', async () => {
    const total = 64 * 1024 * 1024;
    let written = 0;
    const fake = await fakeBackend(async (seen, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"results": [');
      const chunk = Buffer.alloc(64 * 1024, ' ');
      while (written < total && !res.destroyed) {
        written += chunk.length;
        if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
      }
      if (!res.destroyed) res.end(']}');
    });
    const tool = makeTool({ backend: 'searxng', base_url: fake.base });

    const err = await searchError(tool, { query: 'huge' });

    expect(err.message).toBe('the search backend sent an answer that could not be read');
    await fake.seen[0]?.closed;
    expect(written).toBeLessThan(total);
  });
});

/** A Brave web search answer, shaped as the API sends it. */
function braveAnswer(results: unknown[]) {
  return {
    type: 'search',
    query: { original: 'q', more_results_available: true },
    mixed: { type: 'mixed', main: results.map((_, index) => ({ type: 'web', index, all: false })) },
    web: { type: 'search', family_friendly: true, results },
  };
}

describe('Brave backend', () => {
  it('sends the key header and the count, and turns the HTML descriptions into plain text', async () => {
    const fake = await fakeBackend((seen, res) => {
      if (seen.headers['x-subscription-token'] !== BRAVE_KEY) return json(res, { type: 'ErrorResponse', error: { code: 'SUBSCRIPTION_TOKEN_INVALID' } }, 422);
      json(
        res,
        braveAnswer([
          {
            type: 'search_result',
            title: 'Fish &amp; Chips — a <strong>history</strong>',
            url: 'https://food.example/fish-and-chips',
            is_source_local: false,
            description: 'The <strong>history</strong> of fish &amp; chips, Britain&#x27;s &quot;national dish&quot;&nbsp;since 1860.',
            profile: { name: 'Food', url: 'https://food.example' },
            age: 'March 3, 2024',
          },
          {
            type: 'search_result',
            title: 'Chips',
            url: 'https://chips.example/',
            description: '<strong>Chips</strong> &lt;3',
          },
          { type: 'search_result', title: 'Fourth', url: 'https://fourth.example/', description: 'beyond the count' },
        ]),
      );
    });
    const tool = makeTool({ backend: 'brave', base_url: fake.base, api_key_env: 'BRAVE_API_KEY' }, BRAVE_KEY);

    const outcome = await search(tool, { query: 'fish & chips history', max_results: 2 });

    expect(outcome.result.results).toEqual([
      {
        title: 'Fish & Chips — a history',
        url: 'https://food.example/fish-and-chips',
        snippet: 'The history of fish & chips, Britain\'s "national dish" since 1860.',
      },
      { title: 'Chips', url: 'https://chips.example/', snippet: 'Chips <3' },
    ]);
    expect(outcome.sources).toEqual([
      { url: 'https://food.example/fish-and-chips', title: 'Fish & Chips — a history' },
      { url: 'https://chips.example/', title: 'Chips' },
    ]);
    const [request] = fake.seen;
    expect(request?.method).toBe('GET');
    expect(request?.url.pathname).toBe('/res/v1/web/search');
    expect(request?.url.searchParams.get('q')).toBe('fish & chips history');
    expect(request?.url.searchParams.get('count')).toBe('2');
    expect(request?.headers.accept).toBe('application/json');
    expect(request?.headers['x-subscription-token']).toBe(BRAVE_KEY);
  });

  it('reads an answer without web results as an empty list', async () => {
    const fake = await fakeBackend((seen, res) => json(res, { type: 'search', query: { original: 'q' }, mixed: { type: 'mixed', main: [] } }));
    const tool = makeTool({ backend: 'brave', base_url: fake.base, api_key_env: 'BRAVE_API_KEY' }, BRAVE_KEY);

    expect(await search(tool, { query: 'zxqv nothing' })).toEqual({ result: { results: [] }, sources: [] });
  });

  it.each([429, 401, 500])('reports HTTP %i without the key or the address', async (status) => {
    const fake = await fakeBackend((seen, res) =>
      json(res, { type: 'ErrorResponse', error: { status, detail: `token ${BRAVE_KEY} rejected`, code: 'RATE_LIMITED' } }, status),
    );
    const tool = makeTool({ backend: 'brave', base_url: fake.base, api_key_env: 'BRAVE_API_KEY' }, BRAVE_KEY);

    const err = await searchError(tool, { query: 'limits' });

    expect(err.message).toBe(`the search backend answered HTTP ${status}`);
    expect(err.message).not.toContain(BRAVE_KEY);
    expect(err.message).not.toContain(String(fake.port));
  });

  it('reports an answer that is not JSON', async () => {
    const fake = await fakeBackend((seen, res) => html(res, '<html><body>Service temporarily unavailable</body></html>'));
    const tool = makeTool({ backend: 'brave', base_url: fake.base, api_key_env: 'BRAVE_API_KEY' }, BRAVE_KEY);

    expect((await searchError(tool, { query: 'odd' })).message).toBe('the search backend sent an answer that could not be read');
  });
});

/** One organic result block as html.duckduckgo.com lays it out. */
function ddgResult(href: string, titleHtml: string, snippetHtml: string): string {
  return `
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title">
      <a rel="nofollow" class="result__a" href="${href}">${titleHtml}</a>
    </h2>
    <div class="result__extras">
      <div class="result__extras__url">
        <span class="result__icon"><a rel="nofollow" href="${href}"><img class="result__icon__img" width="16" height="16" alt="" src="//external-content.duckduckgo.com/ip3/example.ico" name="i15" /></a></span>
        <a class="result__url" href="${href}">example</a>
        <span>&nbsp; &nbsp; 2025-12-30T00:00:00.0000000</span>
      </div>
    </div>
    <a class="result__snippet" href="${href}">${snippetHtml}</a>
    <div class="clear"></div>
  </div>
</div>`;
}

const DDG_AD = `
<div class="result results_links results_links_deep result--ad ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title">
      <a rel="nofollow" class="result__a" href="https://duckduckgo.com/y.js?ad_domain=shop.example&amp;ad_provider=bingv7aa&amp;ad_type=txad&amp;u3=https%3A%2F%2Fwww.bing.com%2Faclick%3Fld%3Dabc">Cheap Rust Books - Buy Now</a>
    </h2>
    <div class="result__badge-wrap"><button class="badge--ad">Ad</button></div>
    <a class="result__snippet" href="https://duckduckgo.com/y.js?ad_domain=shop.example">Free shipping on all orders.</a>
  </div>
</div>
<div class="result results_links results_links_deep result--ad result--ad--small">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a" href="https://shop.example/rust-books">Rust Books on Sale</a></h2>
    <div class="result__badge-wrap"><button class="badge--ad">Ad</button></div>
    <a class="result__snippet" href="https://shop.example/rust-books">An ad that links straight to the shop.</a>
  </div>
</div>`;

function ddgPage(blocks: string): string {
  return `<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">
<html>
<head>
  <meta http-equiv="content-type" content="text/html; charset=UTF-8">
  <meta name="referrer" content="origin">
  <title>rust async at DuckDuckGo</title>
  <link rel="stylesheet" href="/dist/h.css" type="text/css">
</head>
<body>
  <div id="header" class="header cw"><form name="x" class="header__form" action="/html/" method="post"><input name="q" autocomplete="off" class="search__input" id="search_form_input_homepage" type="text" value="rust async" /></form></div>
  <div>
    <div class="serp__results">
      <div id="links" class="results">
${blocks}
        <div class="nav-link"><form action="/html/" method="post"><input type="submit" class="btn btn--alt" value="Next" /><input type="hidden" name="q" value="rust async" /><input type="hidden" name="s" value="10" /></form></div>
      </div>
    </div>
  </div>
</body>
</html>`;
}

const DDG_CHALLENGE = `<!DOCTYPE html>
<html lang="en-US">
<head><meta charset="utf-8"><title>DuckDuckGo</title></head>
<body>
  <form id="challenge-form" action="//duckduckgo.com/anomaly.js?sv=html&amp;cc=botnet&amp;ti=1&amp;gk=d4cd0dabcf4caa22ad92fab40844c786&amp;p=1&amp;q=rust%20async" method="POST">
    <div class="anomaly-modal__modal" data-testid="anomaly-modal">
      <div class="anomaly-modal__title">Unfortunately, bots use DuckDuckGo too.</div>
      <div class="anomaly-modal__description">Please complete the following challenge to confirm this search was made by a human.</div>
      <div class="anomaly-modal__instructions">Select all squares containing a duck:</div>
      <div class="anomaly-modal__puzzle">
        <img class="anomaly-modal__image" src="/assets/anomaly/images/challenge/1.jpg" alt="">
        <img class="anomaly-modal__image" src="/assets/anomaly/images/challenge/2.jpg" alt="">
      </div>
      <button class="btn anomaly-modal__submit" type="submit">Submit</button>
    </div>
  </form>
</body>
</html>`;

describe('DuckDuckGo backend', () => {
  it('posts the form like a browser, skips ads, unwraps redirect links and decodes entities', async () => {
    const redirect = `//duckduckgo.com/l/?uddg=${encodeURIComponent('https://tokio.rs/tokio/tutorial?lang=en&v=1')}&amp;rut=8f3c0a1b2c`;
    const page = ddgPage(
      [
        DDG_AD,
        ddgResult(
          'https://doc.rust-lang.org/book/ch17-00-async-await.html',
          '\n        Fundamentals of Asynchronous Programming: Async, Await ... - Learn Rust\n      ',
          'The <b>Rust</b> Programming Language &amp; <b>async</b>: Futures, &#x27;Streams&#x27;\n      and more.',
        ),
        ddgResult(redirect, 'Tokio &mdash; Tutorial', 'Tokio is an <b>async</b> runtime for &lt;Rust&gt;.'),
        ddgResult('https://doc.rust-lang.org/book/ch17-00-async-await.html', 'Duplicate', 'The same page again.'),
        ddgResult('//duckduckgo.com/l/?uddg=javascript%3Aalert(1)&amp;rut=1', 'Bad', 'Not a web page.'),
      ].join('\n'),
    );
    const fake = await fakeBackend((seen, res) => html(res, page));
    const tool = makeTool({ backend: 'duckduckgo', base_url: fake.base });

    const outcome = await search(tool, { query: 'rust async & tokio' });

    expect(outcome.result.results).toEqual([
      {
        title: 'Fundamentals of Asynchronous Programming: Async, Await ... - Learn Rust',
        url: 'https://doc.rust-lang.org/book/ch17-00-async-await.html',
        snippet: "The Rust Programming Language & async: Futures, 'Streams' and more.",
      },
      { title: 'Tokio — Tutorial', url: 'https://tokio.rs/tokio/tutorial?lang=en&v=1', snippet: 'Tokio is an async runtime for <Rust>.' },
    ]);
    expect(outcome.sources).toEqual([
      { url: 'https://doc.rust-lang.org/book/ch17-00-async-await.html', title: 'Fundamentals of Asynchronous Programming: Async, Await ... - Learn Rust' },
      { url: 'https://tokio.rs/tokio/tutorial?lang=en&v=1', title: 'Tokio — Tutorial' },
    ]);
    const [request] = fake.seen;
    expect(request?.method).toBe('POST');
    expect(request?.url.pathname).toBe('/html/');
    expect(new URLSearchParams(request?.body).get('q')).toBe('rust async & tokio');
    expect(request?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(request?.headers.accept).toBe('text/html');
    expect(request?.headers['user-agent']).toMatch(/^Mozilla\/5\.0 .*Chrome\//);
  });

  it('honours the number of results asked for', async () => {
    const blocks = Array.from({ length: 10 }, (_, i) => ddgResult(`https://site${i}.example/`, `Site ${i}`, `Snippet ${i}`));
    const fake = await fakeBackend((seen, res) => html(res, ddgPage(blocks.join('\n'))));
    const tool = makeTool({ backend: 'duckduckgo', base_url: fake.base });

    const outcome = await search(tool, { query: 'sites', max_results: 3 });

    expect((outcome.result.results as { url: string }[]).map((r) => r.url)).toEqual([
      'https://site0.example/',
      'https://site1.example/',
      'https://site2.example/',
    ]);
  });

  it('reads the "No results." page as an empty list', async () => {
    const fake = await fakeBackend((seen, res) =>
      html(res, ddgPage('<div class="result results_links results_links_deep result--no-result"><div class="no-results">No  results.</div></div>')),
    );
    const tool = makeTool({ backend: 'duckduckgo', base_url: fake.base });

    expect(await search(tool, { query: 'zxqv nothing' })).toEqual({ result: { results: [] }, sources: [] });
  });

  it('reports the bot challenge page as a refusal', async () => {
    const statuses = [202, 200];
    const fake = await fakeBackend((seen, res) => html(res, DDG_CHALLENGE, statuses[fake.seen.length - 1]));
    const tool = makeTool({ backend: 'duckduckgo', base_url: fake.base });

    for (const _ of statuses) {
      expect((await searchError(tool, { query: 'rust async' })).message).toBe('the search backend refused the query (rate limited)');
    }
  });

  it('reports a page that is not a result page', async () => {
    const fake = await fakeBackend((seen, res) => html(res, '<!DOCTYPE html><html><head><title>Error</title></head><body><p>Something went wrong.</p></body></html>'));
    const tool = makeTool({ backend: 'duckduckgo', base_url: fake.base });

    expect((await searchError(tool, { query: 'rust' })).message).toBe('the search backend sent an answer that could not be read');
  });
});

describe('web_search bounds and failures', () => {
  it('gives up on a backend that never answers once the timeout passes', async () => {
    const fake = await fakeBackend(() => undefined);
    const tool = makeTool({ backend: 'searxng', base_url: fake.base, timeout_ms: 300 });

    const err = await searchError(tool, { query: 'slow' });

    expect(err.message).toBe('the search took longer than 300 ms');
    await fake.seen[0]?.closed; // the connection was closed, not left hanging
  });

  it('stops at once when the caller aborts, with the caller reason rather than a tool error', async () => {
    const fake = await fakeBackend(() => undefined);
    const tool = makeTool({ backend: 'duckduckgo', base_url: fake.base, timeout_ms: 60_000 });
    const caller = new AbortController();
    const reason = new Error('client went away');

    const pending = search(tool, { query: 'abandoned' }, caller.signal);
    await expect.poll(() => fake.seen.length).toBe(1);
    caller.abort(reason);

    await expect(pending).rejects.toBe(reason);
    await fake.seen[0]?.closed;
  });

  it('reports a backend that cannot be reached, without its address', async () => {
    const gone = await fakeBackend(() => undefined);
    await gone.close();
    const tool = makeTool({ backend: 'brave', base_url: gone.base, api_key_env: 'BRAVE_API_KEY' }, BRAVE_KEY);

    const err = await searchError(tool, { query: 'anyone there' });

    expect(err.message).toBe('the connection to the search backend failed');
    expect(err.message).not.toContain(String(gone.port));
  });
});

describe('web_search setup', () => {
  it('validates the arguments the model sends', () => {
    const tool = makeTool({ backend: 'duckduckgo' });

    expect(tool.name).toBe('web_search');
    expect(tool.input.safeParse({ query: '' }).success).toBe(false);
    expect(tool.input.safeParse({ query: '   \n ' }).success).toBe(false);
    expect(tool.input.safeParse({}).success).toBe(false);
    expect(tool.input.safeParse({ query: 'x'.repeat(401) }).success).toBe(false);
    expect(tool.input.safeParse({ query: 'rust', max_results: 0 }).success).toBe(false);
    expect(tool.input.safeParse({ query: 'rust', max_results: 11 }).success).toBe(false);
    expect(tool.input.safeParse({ query: 'rust', max_results: 2.5 }).success).toBe(false);
    expect(tool.input.safeParse({ query: 'rust', site: 'example.org' }).success).toBe(false);
    expect(tool.input.parse({ query: '  rust  ', max_results: 10 })).toEqual({ query: 'rust', max_results: 10 });
  });

  it('refuses a backend configured without what it needs', () => {
    expect(() => makeTool({ backend: 'searxng' })).toThrow(/searxng backend needs base_url/);
    expect(() => makeTool({ backend: 'brave', api_key_env: 'BRAVE_API_KEY' }, undefined)).toThrow(/BRAVE_API_KEY is not set/);
    expect(() => makeTool({ backend: 'brave' }, '')).toThrow(/needs an API key/);
  });

  it('counts only Brave as paid search', () => {
    expect(isPaidSearch({ backend: 'brave' })).toBe(true);
    expect(isPaidSearch({ backend: 'searxng' })).toBe(false);
    expect(isPaidSearch({ backend: 'duckduckgo' })).toBe(false);
  });
});
