import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressPolicy, blockedReason } from '../src/tools/address-policy.ts';
import { webFetchSchema } from '../src/tools/config.ts';
import { ToolError } from '../src/tools/types.ts';
import type { ToolOutcome } from '../src/tools/types.ts';
import { createWebFetchTool } from '../src/tools/web-fetch.ts';
import type { WebFetchTool } from '../src/tools/web-fetch.ts';

describe('address policy', () => {
  const blocked = [
    '127.0.0.1',
    '127.255.255.254',
    '0.0.0.0',
    '0.1.2.3',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '100.64.0.1',
    '100.127.255.255',
    '169.254.169.254',
    '169.254.0.1',
    '224.0.0.1',
    '239.255.255.250',
    '255.255.255.255',
    '240.0.0.1',
    '192.0.0.192',
    '192.0.2.1',
    '198.18.0.1',
    '198.19.255.255',
    '203.0.113.9',
    '::1',
    '::',
    'fc00::1',
    'fd12:3456::1',
    'fd00:ec2::254',
    'fe80::1',
    'fe80::1%eth0',
    'fec0::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:10.0.0.1',
    '::ffff:169.254.169.254',
    '::7f00:1',
    '::10.0.0.1',
    '64:ff9b::a00:1',
    '64:ff9b::7f00:1',
    '64:ff9b::a9fe:a9fe',
    '64:ff9b:1::808:808',
    '2002:7f00:1::',
    '2002:a9fe:a9fe::1',
    '2002:a00:1::',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    '2001:db8::1',
    '100::1',
    '[::1]',
    'localhost',
    '127.1',
    '',
  ];
  it.each(blocked)('blocks %j', (address) => {
    expect(blockedReason(address)).toBeDefined();
    expect(new AddressPolicy().allows(address)).toBe(false);
  });

  const allowed = [
    '8.8.8.8',
    '1.1.1.1',
    '93.184.215.14',
    '172.32.0.1',
    '172.15.255.255',
    '100.128.0.1',
    '169.253.255.255',
    '192.169.0.1',
    '2606:4700:4700::1111',
    '2a00:1450:4001:80b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ];
  it.each(allowed)('allows %j', (address) => {
    expect(blockedReason(address)).toBeUndefined();
    expect(new AddressPolicy().allows(address)).toBe(true);
  });

  it('lets the operator allowlist through: names without case, addresses, CIDRs, and IPv4 behind its mapped form', () => {
    const policy = new AddressPolicy(['Wiki.Corp', '10.20.0.0/16', '192.168.1.5', 'fd12::/16', '[fe80::7]']);
    const cases: [string, string | undefined, boolean][] = [
      ['10.0.0.1', 'wiki.corp', true],
      ['10.0.0.1', 'WIKI.CORP.', true],
      ['10.0.0.1', 'other.corp', false],
      ['10.0.0.1', undefined, false],
      ['10.20.3.4', 'any.host', true],
      ['10.21.0.1', 'any.host', false],
      ['::ffff:10.20.0.9', 'any.host', true],
      ['192.168.1.5', undefined, true],
      ['192.168.1.6', undefined, false],
      ['fd12::1', undefined, true],
      ['fd13::1', undefined, false],
      ['fe80::7', undefined, true],
      ['169.254.169.254', 'metadata.internal', false],
      ['8.8.8.8', 'anything', true],
    ];
    for (const [address, host, expected] of cases) expect([address, host, policy.allows(address, host)]).toEqual([address, host, expected]);
  });

  it('an allowlisted mapped CIDR covers the IPv4 range it maps', () => {
    const policy = new AddressPolicy(['::ffff:10.30.0.0/112']);
    expect(policy.allows('10.30.1.2')).toBe(true);
    expect(policy.allows('10.31.0.1')).toBe(false);
  });
});

/** What the test server saw: the path and Host of each request, and how each huge download ended. */
interface Seen {
  path: string;
  host: string;
}

describe('web_fetch', () => {
  let server: Server;
  let port: number;
  const seen: Seen[] = [];
  const tools: WebFetchTool[] = [];
  /** Settles when the server saw the connection of the last /huge answer close: how much it sent, and whether all of it. */
  let hugeClosed: Promise<{ sent: number; finished: boolean }> | undefined;
  const HUGE = 50 * 1024 * 1024;

  const ARTICLE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>How Owls Hunt at Night</title><style>body { color: red }</style></head>
<body>
  <header class="site-header"><a href="/">Bird Notes</a> <form action="/search"><input name="q"><button>Search the site</button></form></header>
  <nav class="menu"><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li><li><a href="/shop">Shop for binoculars</a></li></ul></nav>
  <main>
    <article>
      <h1>How Owls Hunt at Night</h1>
      <p>Owls hunt mostly by ear. Their facial disc gathers sound like a dish, and their ears sit at different heights, so they can place a mouse under snow by the sound alone. ${'Barn owls can catch prey in complete darkness. '.repeat(8)}</p>
      <p>Their <a href="/owls/eyes">large eyes</a> help in low light, but hearing does most of the work. ${'Silent flight comes from the soft fringes on their feathers. '.repeat(8)}</p>
      <h2>Silent wings</h2>
      <p>The leading edge of each flight feather is serrated, which breaks up the turbulence that would make noise. ${'This lets the owl hear its prey while it flies. '.repeat(8)}</p>
      <img src="data:image/png;base64,${'A'.repeat(400)}" alt="">
      <img src="/img/owl.jpg" alt="A barn owl in flight">
    </article>
  </main>
  <aside class="sidebar">Subscribe to our newsletter for weekly bird facts!</aside>
  <footer class="site-footer">Copyright 2024 Bird Notes. All rights reserved. <a href="/privacy">Privacy policy</a></footer>
  <script>window.tracking = "should never show";</script>
</body>
</html>`;

  function route(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    seen.push({ path, host: req.headers.host ?? '' });
    const send = (status: number, type: string | undefined, body: string | Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(status, { ...(type ? { 'content-type': type } : {}), ...extra });
      res.end(body);
    };
    const loop = /^\/loop\/(\d+)$/.exec(path);
    if (loop) return send(302, undefined, '', { location: `/loop/${Number(loop[1]) + 1}` });
    switch (path) {
      case '/article':
        return send(200, 'text/html; charset=utf-8', ARTICLE);
      case '/old':
        return send(301, 'text/html', '<a href="/article">moved</a>', { location: '/article#top' });
      case '/plain':
        return send(200, 'text/plain', 'Line one.\nLine two, with ünïcode.\n');
      case '/csv':
        return send(200, 'text/csv; charset=utf-8', 'a,b\n1,2\n');
      case '/data':
        return send(200, 'application/json', '{"name":"owl","legs":2,"tags":["bird","night"]}');
      case '/to-loopback':
        return send(302, undefined, '', { location: `http://127.0.0.1:${port}/article` });
      case '/to-metadata':
        return send(307, undefined, '', { location: 'http://169.254.169.254/latest/meta-data/' });
      case '/to-file':
        return send(302, undefined, '', { location: 'file:///etc/passwd' });
      case '/missing':
        return send(404, 'text/html', '<h1>Not found</h1>');
      case '/image':
        return send(200, 'image/png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      case '/latin1':
        return send(200, 'text/html; charset=iso-8859-1', Buffer.from('<html><head><title>Caf\u00e9</title></head><body><p>Cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade.</p></body></html>', 'latin1'));
      case '/meta-charset':
        return send(200, 'text/html', Buffer.from('<html><head><meta charset="windows-1252"><title>Men\u00fc</title></head><body><p>Gr\u00fc\u00dfe aus K\u00f6ln \u0080 5</p></body></html>', 'latin1'));
      case '/long-text':
        return send(200, 'text/plain; charset=utf-8', 'word '.repeat(2000));
      case '/gzip':
        return send(200, 'text/plain; charset=utf-8', gzipSync('packed text '.repeat(100)), { 'content-encoding': 'gzip' });
      case '/untyped':
        return send(200, undefined, 'just some text without a type');
      case '/hang':
        return; // accept the request and never answer
      case '/huge':
        return serveHuge(res);
      default:
        return send(404, 'text/plain', 'no such page');
    }
  }

  /** 50 MB of text in 64 KiB writes, each waiting for the socket to drain, as a real server streams a large file. */
  function serveHuge(res: ServerResponse): void {
    let sent = 0;
    hugeClosed = new Promise((resolve) => res.on('close', () => resolve({ sent, finished: res.writableFinished })));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(HUGE) });
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const pump = () => {
      while (sent < HUGE && !res.destroyed) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      if (!res.destroyed) res.end();
    };
    pump();
  }

  const names: Record<string, { address: string; family: 4 | 6 }[]> = {
    'pages.test': [{ address: '127.0.0.1', family: 4 }],
    'intranet.test': [{ address: '10.0.0.1', family: 4 }],
    'mapped.test': [{ address: '::ffff:127.0.0.1', family: 6 }],
    'mixed.test': [
      { address: '93.184.215.14', family: 4 },
      { address: '192.168.0.10', family: 4 },
    ],
  };
  /** DNS for the tests: the table above; `slow-dns.test` never answers. */
  const lookup = (hostname: string) => {
    if (hostname === 'slow-dns.test') return new Promise<never>(() => undefined);
    const found = names[hostname];
    return found ? Promise.resolve(found) : Promise.reject(Object.assign(new Error(`unknown ${hostname}`), { code: 'ENOTFOUND' }));
  };

  function tool(overrides: Record<string, unknown> = {}): WebFetchTool {
    const config = webFetchSchema.parse({ allowed_private_hosts: ['pages.test'], timeout_ms: 10_000, ...overrides });
    const made = createWebFetchTool(config, { lookup });
    tools.push(made);
    return made;
  }

  const context = () => ({ signal: new AbortController().signal, now: Date.now });
  const page = (base = '') => `http://pages.test:${port}${base}`;

  async function fetched(t: WebFetchTool, url: string): Promise<ToolOutcome & { result: { url: string; title: string; content: string; truncated?: boolean } }> {
    return (await t.run({ url }, context())) as ToolOutcome & { result: { url: string; title: string; content: string; truncated?: boolean } };
  }

  async function refusal(t: WebFetchTool, url: string): Promise<string> {
    const err: unknown = await t.run({ url }, context()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ToolError);
    return (err as ToolError).message;
  }

  beforeAll(async () => {
    server = createServer(route);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await Promise.all(tools.map((t) => t.close()));
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('extracts an article to Markdown with its title, without the menu, sidebar, footer or script', async () => {
    const t = tool();
    const { result, sources } = await fetched(t, page('/article'));
    expect(result.url).toBe(page('/article'));
    expect(result.title).toBe('How Owls Hunt at Night');
    expect(result.truncated).toBeUndefined();
    expect(sources).toEqual([{ url: page('/article'), title: 'How Owls Hunt at Night' }]);
    expect(result.content).toContain('Owls hunt mostly by ear.');
    expect(result.content).toContain('## Silent wings');
    expect(result.content).toContain(`[large eyes](${page('/owls/eyes')})`);
    expect(result.content).toContain(`![A barn owl in flight](${page('/img/owl.jpg')})`);
    for (const boilerplate of ['About us', 'Shop for binoculars', 'Subscribe to our newsletter', 'All rights reserved', 'Search the site', 'tracking', 'color: red', 'data:image']) {
      expect(result.content).not.toContain(boilerplate);
    }
    const hit = seen.find((s) => s.path === '/article');
    expect(hit?.host).toBe(`pages.test:${port}`);
  });

  it('follows a relative redirect and reports the final URL', async () => {
    const { result } = await fetched(tool(), page('/old'));
    expect(result.url).toBe(page('/article'));
    expect(result.title).toBe('How Owls Hunt at Night');
  });

  it('returns plain text and CSV as they are, titled by their file name', async () => {
    const t = tool();
    const plain = await fetched(t, page('/plain'));
    expect(plain.result).toEqual({ url: page('/plain'), title: 'plain', content: 'Line one.\nLine two, with ünïcode.' });
    expect((await fetched(t, page('/csv'))).result.content).toBe('a,b\n1,2');
  });

  it('pretty-prints JSON in a fenced block', async () => {
    const { result } = await fetched(tool(), page('/data'));
    expect(result.content).toBe('```json\n{\n  "name": "owl",\n  "legs": 2,\n  "tags": [\n    "bird",\n    "night"\n  ]\n}\n```');
  });

  it('reads a gzip-compressed page', async () => {
    const { result } = await fetched(tool(), page('/gzip'));
    expect(result.content).toBe('packed text '.repeat(100).trim());
  });

  it('reads a page without a content type that looks like text', async () => {
    const { result } = await fetched(tool(), page('/untyped'));
    expect(result.content).toBe('just some text without a type');
  });

  it('refuses a redirect to the loopback address itself, which is not allowlisted, before connecting', async () => {
    const before = seen.length;
    expect(await refusal(tool(), page('/to-loopback'))).toBe('the page redirected to a private address, which may not be fetched');
    // The server saw the redirecting request and nothing addressed to 127.0.0.1.
    expect(seen.slice(before)).toEqual([{ path: '/to-loopback', host: `pages.test:${port}` }]);
  });

  it('refuses a redirect to the cloud metadata address by policy, not by a failed connection', async () => {
    // A refused or timed-out connection would read differently; this message only comes from the policy check.
    expect(await refusal(tool(), page('/to-metadata'))).toBe('the page redirected to a private address, which may not be fetched');
  });

  it('refuses names that resolve to private addresses, also in IPv4-mapped form or among public ones', async () => {
    const t = tool();
    expect(await refusal(t, 'http://intranet.test/wiki')).toBe('the address of intranet.test is private and may not be fetched');
    expect(await refusal(t, `http://mapped.test:${port}/article`)).toBe('the address of mapped.test is private and may not be fetched');
    expect(await refusal(t, 'https://mixed.test/')).toBe('the address of mixed.test is private and may not be fetched');
  });

  it('refuses IP literals on private ranges, however they are written', async () => {
    const t = tool();
    expect(await refusal(t, `http://[::1]:${port}/article`)).toBe('the address of [::1] is private and may not be fetched');
    expect(await refusal(t, `http://127.0.0.1:${port}/article`)).toBe('the address of 127.0.0.1 is private and may not be fetched');
    expect(await refusal(t, 'http://169.254.169.254/latest/meta-data/')).toBe('the address of 169.254.169.254 is private and may not be fetched');
    // Other spellings of an IPv4 address are normalised by the URL parser before anything is judged.
    expect(await refusal(t, `http://2130706433:${port}/article`)).toBe('the address of 127.0.0.1 is private and may not be fetched');
    expect(await refusal(t, `http://0x7f.1:${port}/article`)).toBe('the address of 127.0.0.1 is private and may not be fetched');
    expect(await refusal(t, `http://[::ffff:7f00:1]:${port}/article`)).toBe('the address of [::ffff:7f00:1] is private and may not be fetched');
    expect(seen.some((s) => s.host.startsWith('127.0.0.1') || s.host.startsWith('['))).toBe(false);
  });

  it('lets an allowlisted address through', async () => {
    const t = tool({ allowed_private_hosts: ['127.0.0.0/8'] });
    expect((await fetched(t, `http://127.0.0.1:${port}/plain`)).result.content).toContain('Line one.');
  });

  it('stops after max_redirects redirects', async () => {
    const before = seen.length;
    expect(await refusal(tool({ max_redirects: 3 }), page('/loop/0'))).toBe('too many redirects (more than 3)');
    expect(seen.slice(before).map((s) => s.path)).toEqual(['/loop/0', '/loop/1', '/loop/2', '/loop/3']);
  });

  it('refuses URLs that are not http or https, in the request or in a redirect', async () => {
    const t = tool();
    expect(await refusal(t, 'file:///etc/passwd')).toBe('only http and https URLs can be fetched, not file:');
    expect(await refusal(t, 'ftp://pages.test/pub/file.txt')).toBe('only http and https URLs can be fetched, not ftp:');
    expect(await refusal(t, 'javascript:alert(1)')).toBe('only http and https URLs can be fetched, not javascript:');
    expect(await refusal(t, 'not a url')).toBe('not a valid URL: give an absolute http:// or https:// URL');
    expect(await refusal(t, `http://user:secret@pages.test:${port}/plain`)).toBe('URLs with a user name or password are not fetched');
    expect(await refusal(t, page('/to-file'))).toBe('the page redirected to a file: URL; only http and https are fetched');
  });

  it('reads at most max_bytes of a 50 MB page and closes the connection instead of downloading the rest', async () => {
    const t = tool({ max_bytes: 256 * 1024 });
    const { result } = await fetched(t, page('/huge'));
    expect(result.truncated).toBe(true);
    expect(result.content).toMatch(/^a+\n\n\[only the first 262144 bytes of the page were read; the text was cut at 20000 characters\]$/);
    const closed = await hugeClosed!;
    expect(closed.finished).toBe(false);
    // Socket buffers on both sides may hold a few megabytes; the point is that the 50 MB were never all sent.
    expect(closed.sent).toBeLessThan(HUGE / 4);
  });

  it('gives up on a server that never answers after timeout_ms', async () => {
    const t = tool({ timeout_ms: 300 });
    const started = Date.now();
    expect(await refusal(t, page('/hang'))).toBe('timed out after 300 ms');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('gives up on a name that never resolves after timeout_ms', async () => {
    const t = tool({ timeout_ms: 300 });
    expect(await refusal(t, 'http://slow-dns.test/')).toBe('timed out after 300 ms');
  });

  it('stops when the caller aborts, with the caller’s reason', async () => {
    const t = tool();
    const controller = new AbortController();
    const reason = new Error('client left');
    const running = t.run({ url: page('/hang') }, { signal: controller.signal, now: Date.now });
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
  });

  it('refuses content types it does not read, and reports HTTP errors', async () => {
    const t = tool();
    expect(await refusal(t, page('/image'))).toBe('content type image/png is not supported: web_fetch reads HTML, plain text, Markdown, CSV and JSON');
    expect(await refusal(t, page('/missing'))).toBe('the page answered HTTP 404');
    expect(await refusal(t, 'http://nowhere.test/')).toBe('could not resolve nowhere.test');
  });

  it('decodes by the charset of the header or of a meta tag', async () => {
    const t = tool();
    const latin1 = await fetched(t, page('/latin1'));
    expect(latin1.result.title).toBe('Café');
    expect(latin1.result.content).toBe('Crème brûlée, naïve façade.');
    const meta = await fetched(t, page('/meta-charset'));
    expect(meta.result.title).toBe('Menü');
    expect(meta.result.content).toBe('Grüße aus Köln € 5');
  });

  it('refuses to fetch once closed', async () => {
    const t = tool();
    await t.close();
    expect(await refusal(t, page('/plain'))).toBe('web_fetch is shutting down');
  });

  it('cuts the content at max_chars and says so', async () => {
    const { result } = await fetched(tool({ max_chars: 500 }), page('/long-text'));
    expect(result.truncated).toBe(true);
    expect(result.content.length).toBeLessThanOrEqual(500);
    expect(result.content).toMatch(/^(word )+word\n\n\[the text was cut at 500 characters\]$/);
  });
});
