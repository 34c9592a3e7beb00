import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationItems } from '../src/db/schema.ts';
import { IMAGE_TOKENS } from '../src/tokens.ts';
import { adminHeaders, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { startFakeAnthropic } from './helpers/fake-anthropic.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { startServer, writeConfigFile, type TestServer } from './helpers/harness.ts';

/**
 * `input_image` parts: read from data URLs, from http(s) URLs on the server
 * (through the address guard) and from uploaded files; sent to each upstream
 * in its own shape; routed to models that can see; refused with a code and
 * the field's path when they cannot be used.
 */

/** A real 1×1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
const PNG_URL = `data:image/png;base64,${PNG.toString('base64')}`;
const MAX_BYTES = 4096;
/** A PNG signature followed by padding: an image by its bytes, and larger than the limit. */
const BIG_PNG = Buffer.concat([PNG, Buffer.alloc(MAX_BYTES)]);

let openai: FakeUpstream;
let anthropic: FakeUpstream;
let s: TestServer;
let images: Server;
let imageOrigin: string;
const imageHits: { path: string; agent: string | undefined }[] = [];

const model = (id: string, provider: string, price: number, country: string, capabilities: string[]) => ({
  id,
  provider,
  upstream_model: `${id}-upstream`,
  categories: ['fast', 'general'],
  context_window: 32768,
  max_output_tokens: 1024,
  price: { input: price, output: price },
  capabilities,
  country,
});

beforeAll(async () => {
  images = createServer((req, res) => {
    imageHits.push({ path: req.url ?? '', agent: req.headers['user-agent'] });
    if (req.url === '/cat.png') res.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
    else if (req.url === '/big.png') res.writeHead(200, { 'content-type': 'image/png' }).end(BIG_PNG);
    else if (req.url === '/page.html') res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>not an image</body></html>');
    else if (req.url === '/to-metadata') res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
    else if (req.url === '/moved') res.writeHead(302, { location: '/cat.png' }).end();
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
  imageOrigin = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  [openai, anthropic] = await Promise.all([startFakeUpstream(), startFakeAnthropic()]);
  s = await startServer(
    writeConfigFile({
      providers: [
        { id: 'local', type: 'openai-compatible', base_url: openai.url },
        { id: 'claude', type: 'anthropic', base_url: anthropic.url },
      ],
      // Cheapest first: a model that cannot see, then one that can; in France only Claude, in Italy only a text model.
      models: [
        model('text-only', 'local', 0.01, 'DE', []),
        model('seeing', 'local', 0.5, 'DE', ['vision']),
        model('claude-vision', 'claude', 0.6, 'FR', ['vision']),
        model('italian-text', 'local', 0.9, 'IT', []),
      ],
      // The test's image server is on loopback: let it through, as an operator would an intranet host.
      images: { max_bytes: MAX_BYTES, timeout_ms: 5000, allowed_private_hosts: ['127.0.0.1'] },
    }),
    // Uploads answer at once: the images here have no text to wait for.
    { env: { EUGPT_KEY_CACHE_TTL_MS: '0' }, files: { readyWaitMs: 0 } },
  );
});
afterAll(async () => {
  await s?.close();
  await Promise.all([openai?.close(), anthropic?.close()]);
  await new Promise((resolve) => images?.close(resolve));
});

const withImage = (image: Record<string, unknown>, text = 'What is in this picture?') => ({
  input: [{ role: 'user', content: [{ type: 'input_text', text }, { type: 'input_image', ...image }] }],
  stream: false,
});

const post = (payload: object, key = s.tenant.key) => s.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(key), payload });

/** The content of the last user message the fake upstream received. */
const lastUserContent = (up: FakeUpstream) => {
  const body = up.requests.at(-1)!.body;
  return body.messages.filter((m) => m.role === 'user').at(-1)!.content as unknown;
};

async function tenantIn(country: string): Promise<Tenant> {
  const t = await createTenant(s.app);
  const res = await s.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { residency: [country] } });
  expect(res.statusCode).toBe(200);
  return t;
}

async function upload(data: Buffer, name: string, key = s.tenant.key): Promise<string> {
  const fd = new FormData();
  fd.append('purpose', 'vision');
  fd.append('file', new Blob([data]), name);
  const req = new Request('http://x/', { method: 'POST', body: fd });
  const res = await s.app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...bearer(key), 'content-type': req.headers.get('content-type')! },
    payload: Buffer.from(await req.arrayBuffer()),
  });
  expect(res.statusCode).toBe(200);
  return res.json<{ id: string }>().id;
}

describe('images in the input', () => {
  it('sends a data URL image to a model that can see, and keeps only a reference to it', async () => {
    const res = await post(withImage({ image_url: PNG_URL, detail: 'low' }));
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-eugpt-model']).toBe('seeing');
    expect(lastUserContent(openai)).toEqual([
      { type: 'text', text: 'What is in this picture?' },
      { type: 'image_url', image_url: { url: PNG_URL, detail: 'low' } },
    ]);

    // Stored: type, size and digest, not the bytes; counted with the fixed estimate for its detail.
    const doc = res.json<{ id: string; conversation_id: string }>();
    const [item] = await s.database.db.select().from(conversationItems).where(eq(conversationItems.conversationId, doc.conversation_id)).limit(1);
    const image = (item!.content as Record<string, unknown>[])[1]!;
    expect(image).toMatchObject({ type: 'input_image', detail: 'low', media_type: 'image/png', bytes: PNG.length });
    expect(image.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(item!.content)).not.toContain(PNG.toString('base64'));
    expect(item!.tokens).toBeGreaterThan(IMAGE_TOKENS.low);
    const listed = await s.app.inject({ method: 'GET', url: `/v1/responses/${doc.id}/input_items`, headers: bearer(s.tenant.key) });
    expect(listed.json<{ data: { content: unknown[] }[] }>().data[0]!.content[1]).toEqual({ type: 'input_image', detail: 'low' });

    // The next turn still goes to a model that can see; the image, whose bytes were not kept, is a note there.
    const next = await post({ input: 'And its colour?', previous_response_id: doc.id, stream: false });
    expect(next.statusCode).toBe(200);
    expect(next.headers['x-eugpt-model']).toBe('seeing');
    const firstTurn = openai.requests.at(-1)!.body.messages[0]!.content as unknown as { type: string; text?: string }[];
    expect(firstTurn).toHaveLength(2);
    expect(firstTurn[1]).toEqual({ type: 'text', text: '[an image (image/png) was here; it cannot be shown]' });
  });

  it('fetches an http(s) image on the server and sends its bytes, again in later turns', async () => {
    imageHits.length = 0;
    const url = `${imageOrigin}/moved`;
    const res = await post(withImage({ image_url: url, detail: 'high' }));
    expect(res.statusCode).toBe(200);
    expect(lastUserContent(openai)).toEqual([
      { type: 'text', text: 'What is in this picture?' },
      { type: 'image_url', image_url: { url: PNG_URL, detail: 'high' } },
    ]);
    // The upstream never sees the user's URL; the server followed the redirect itself.
    expect(JSON.stringify(openai.requests.at(-1)!.body)).not.toContain(imageOrigin);
    expect(imageHits.map((h) => h.path)).toEqual(['/moved', '/cat.png']);
    expect(imageHits[0]!.agent).toMatch(/^eugpt-images/);

    const doc = res.json<{ conversation_id: string }>();
    const next = await post({ input: 'Describe it again.', conversation_id: doc.conversation_id, stream: false });
    expect(next.statusCode).toBe(200);
    const firstTurn = openai.requests.at(-1)!.body.messages[0]!.content as unknown as { type: string }[];
    expect(firstTurn[1]).toEqual({ type: 'image_url', image_url: { url: PNG_URL, detail: 'high' } });
    expect(imageHits).toHaveLength(4);
  });

  it('reads an uploaded image by file_id; another user’s file is a 404 and a document is not an image', async () => {
    const id = await upload(PNG, 'cat.png');
    const res = await post(withImage({ file_id: id }));
    expect(res.statusCode).toBe(200);
    expect(lastUserContent(openai)).toEqual([
      { type: 'text', text: 'What is in this picture?' },
      { type: 'image_url', image_url: { url: PNG_URL, detail: 'auto' } },
    ]);

    const other = await createTenant(s.app);
    const theirs = await post(withImage({ file_id: id }), other.key);
    expect(theirs.statusCode).toBe(404);
    expect(theirs.json().error.code).toBe('file_not_found');

    const text = await upload(Buffer.from('just some notes'), 'notes.txt');
    const notImage = await post(withImage({ file_id: text }));
    expect(notImage.statusCode).toBe(400);
    expect(notImage.json().error).toMatchObject({ code: 'unsupported_image_type', param: 'input[0].content[1].file_id' });
  });

  it('sends images to Anthropic as base64 image blocks', async () => {
    const t = await tenantIn('FR');
    const res = await post(withImage({ image_url: PNG_URL }), t.key);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-eugpt-model']).toBe('claude-vision');
    expect(lastUserContent(anthropic)).toEqual([
      { type: 'text', text: 'What is in this picture?' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG.toString('base64') } },
    ]);
  });

  it('refuses images when no model the caller may use can see', async () => {
    const t = await tenantIn('IT');
    const before = openai.requests.length;
    const res = await post(withImage({ image_url: PNG_URL }), t.key);
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'unsupported_capability', param: 'input' });
    expect(res.json().error.message).toContain('vision');
    expect(openai.requests.length).toBe(before);
  });

  it('works through the official OpenAI SDK', async () => {
    const client = new OpenAI({ apiKey: s.tenant.key, baseURL: `${s.origin}/v1`, maxRetries: 0 });
    const res = await client.responses.create({
      model: 'auto',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'What is this?' }, { type: 'input_image', image_url: PNG_URL, detail: 'auto' }] }],
      stream: false,
    });
    expect(res.status).toBe('completed');
    expect(res.model).toBe('seeing');
    expect(lastUserContent(openai)).toEqual([
      { type: 'text', text: 'What is this?' },
      { type: 'image_url', image_url: { url: PNG_URL, detail: 'auto' } },
    ]);
  });
});

describe('images that cannot be used', () => {
  const refused = async (image: Record<string, unknown>, code: string, param = 'input[0].content[1].image_url') => {
    const before = openai.requests.length;
    const res = await post(withImage(image));
    expect(res.statusCode, JSON.stringify(image).slice(0, 80)).toBe(400);
    expect(res.json().error).toMatchObject({ code, param });
    expect(openai.requests.length).toBe(before);
  };

  it('refuses private and metadata addresses, also behind a redirect', async () => {
    await refused({ image_url: 'http://10.0.0.7/x.png' }, 'image_url_blocked');
    await refused({ image_url: 'http://169.254.169.254/latest/meta-data' }, 'image_url_blocked');
    await refused({ image_url: 'http://[::1]/x.png' }, 'image_url_blocked');
    await refused({ image_url: `${imageOrigin}/to-metadata` }, 'image_url_blocked');
  });

  it('refuses images over the size limit, by URL and by data URL', async () => {
    await refused({ image_url: `${imageOrigin}/big.png` }, 'image_too_large');
    await refused({ image_url: `data:image/png;base64,${BIG_PNG.toString('base64')}` }, 'image_too_large');
  });

  it('refuses what is not an image, and malformed sources', async () => {
    await refused({ image_url: `${imageOrigin}/page.html` }, 'unsupported_image_type');
    await refused({ image_url: `${imageOrigin}/missing.png` }, 'image_fetch_failed');
    await refused({ image_url: 'data:text/plain;base64,aGVsbG8=' }, 'unsupported_image_type');
    await refused({ image_url: 'data:image/png;base64,not base64!' }, 'invalid_image_data');
    await refused({ image_url: 'data:image/png,rawbytes' }, 'invalid_image_data');
    await refused({ image_url: `data:image/png;base64,${Buffer.from('plain text, not an image').toString('base64')}` }, 'unsupported_image_type');
    await refused({ image_url: 'ftp://example.org/x.png' }, 'invalid_image_url');
    await refused({ image_url: 'https://user:pw@example.org/x.png' }, 'invalid_image_url');
    await refused({}, 'invalid_image_source', 'input[0].content[1]');
    await refused({ image_url: PNG_URL, file_id: 'f' }, 'invalid_image_source', 'input[0].content[1]');
    const assistant = await post({ input: [{ role: 'assistant', content: [{ type: 'input_image', image_url: PNG_URL }] }, { role: 'user', content: 'Hi' }], stream: false });
    expect(assistant.json().error).toMatchObject({ code: 'unsupported_content_type', param: 'input[0].content[0]' });
  });
});

describe('images in conversation items', () => {
  it('stores items added through the Conversations API by reference and checks their files', async () => {
    const created = await s.app.inject({
      method: 'POST',
      url: '/v1/conversations',
      headers: bearer(s.tenant.key),
      payload: { items: [{ role: 'user', content: [{ type: 'input_text', text: 'Look:' }, { type: 'input_image', image_url: PNG_URL }] }] },
    });
    expect(created.statusCode).toBe(200);
    const conv = created.json<{ id: string }>();
    const items = await s.app.inject({ method: 'GET', url: `/v1/conversations/${conv.id}/items`, headers: bearer(s.tenant.key) });
    expect(items.json<{ data: { content: unknown[] }[] }>().data[0]!.content[1]).toEqual({ type: 'input_image', detail: 'auto' });
    const [row] = await s.database.db.select().from(conversationItems).where(eq(conversationItems.conversationId, conv.id));
    expect(row!.content).toEqual([
      { type: 'input_text', text: 'Look:' },
      { type: 'input_image', detail: 'auto', media_type: 'image/png', bytes: PNG.length, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
    ]);

    const other = await createTenant(s.app);
    const mine = await upload(PNG, 'mine.png');
    const stolen = await s.app.inject({
      method: 'POST',
      url: '/v1/conversations',
      headers: bearer(other.key),
      payload: { items: [{ role: 'user', content: [{ type: 'input_image', file_id: mine }] }] },
    });
    expect(stolen.statusCode).toBe(404);
    expect(stolen.json().error.code).toBe('file_not_found');
  });

  it('continues a conversation with images on a model that cannot see, with notes in their place', async () => {
    const t = await tenantIn('IT');
    const id = await upload(PNG, 'seen.png', t.key);
    const created = await s.app.inject({
      method: 'POST',
      url: '/v1/conversations',
      headers: bearer(t.key),
      payload: { items: [{ role: 'user', content: [{ type: 'input_text', text: 'Keep this:' }, { type: 'input_image', file_id: id }] }] },
    });
    expect(created.statusCode).toBe(200);
    const res = await post({ input: 'What did I show you?', conversation: created.json<{ id: string }>().id, stream: false }, t.key);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-eugpt-model']).toBe('italian-text');
    expect(openai.requests.at(-1)!.body.messages[0]).toEqual({ role: 'user', content: 'Keep this:\n[an image (image/png) was here; it cannot be shown]' });
  });
});
